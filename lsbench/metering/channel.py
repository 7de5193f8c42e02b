"""The harness-owned channel: every edge<->cloud message passes through here.

``Channel(codec).transmit(msg, send)`` is jittable. It encodes the message with
the codec, bills the exact bytes of the encoded arrays (side information
included), and returns ``(delivered, nbytes)``: the decoded message the
receiver gets, and an int32 byte count. Leaves inside :class:`api.Rows` are
coded per row and billed only for rows whose mask (and ``send``) is set;
rows that are not sent arrive as zeros, so nothing leaks.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from lsbench.api import Rows
from lsbench.metering.codecs import get_codec


def _is_rows(x):
    return isinstance(x, Rows)


def _nbytes(tree, skip_lead=False) -> int:
    total = 0
    for a in jax.tree_util.tree_leaves(tree):
        shape = a.shape[1:] if skip_lead else a.shape
        total += math.prod(shape) * jnp.dtype(a.dtype).itemsize
    return total


class Channel:
    def __init__(self, codec="raw"):
        self.codec = get_codec(codec)

    def _leaf(self, x):
        x = jnp.asarray(x)
        enc = self.codec.encode(x)
        return self.codec.decode(enc, x), _nbytes(jax.eval_shape(self.codec.encode, x))

    def _rows(self, rows: Rows, send):
        mask = jnp.asarray(rows.mask, bool) & send
        n = mask.shape[0]
        per_row = 0
        out = []
        leaves, tdef = jax.tree_util.tree_flatten(rows.data)
        for x in leaves:
            x = jnp.asarray(x)
            if x.shape[:1] != (n,):
                raise ValueError(f"Rows leaf of shape {x.shape} does not lead with {n} rows")
            enc = jax.vmap(self.codec.encode)(x)
            dec = jax.vmap(self.codec.decode)(enc, x)
            per_row += _nbytes(jax.eval_shape(jax.vmap(self.codec.encode), x), skip_lead=True)
            keep = mask.reshape((n,) + (1,) * (x.ndim - 1))
            out.append(jnp.where(keep, dec, jnp.zeros_like(dec)))
        return Rows(jax.tree_util.tree_unflatten(tdef, out), mask), per_row * mask.astype(jnp.int32)

    def transmit_rows(self, rows: Rows, send=True):
        """Per-example transport: returns (delivered Rows, int32[n] bytes per row)."""
        return self._rows(rows, jnp.asarray(send, bool))

    def transmit(self, msg, send=True):
        """Returns (delivered message, int32 bytes). ``send`` gates the whole message."""
        send = jnp.asarray(send, bool)
        leaves, tdef = jax.tree_util.tree_flatten(msg, is_leaf=_is_rows)
        fixed, rows_bytes, out = 0, jnp.int32(0), []
        for leaf in leaves:
            if _is_rows(leaf):
                d, b = self._rows(leaf, send)
                rows_bytes = rows_bytes + b.sum()
            else:
                d, b = self._leaf(leaf)
                d = jnp.where(send, d, jnp.zeros_like(d))
                fixed += b
            out.append(d)
        nbytes = jnp.where(send, jnp.int32(fixed) + rows_bytes, 0).astype(jnp.int32)
        return jax.tree_util.tree_unflatten(tdef, out), nbytes


def static_bytes(msg, codec="raw") -> int:
    """Bytes of a message with every row sent (for reports and tests)."""
    full = jax.tree_util.tree_map(
        lambda r: Rows(r.data, jnp.ones(jnp.shape(r.mask), bool)) if _is_rows(r) else r,
        msg, is_leaf=_is_rows)
    return int(Channel(codec).transmit(full, True)[1])
