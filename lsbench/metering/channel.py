"""The harness-owned channel: every edge<->cloud message passes through here.

``Channel(codec).transmit(msg, send)`` is jittable. It encodes the message with
the codec, bills the exact bytes of the encoded arrays (side information
included), and returns ``(delivered, nbytes)``: the decoded message the
receiver gets, and an int32 byte count. Rows that are not sent arrive as zeros.

What is billed (every delivered field is):
- a plain leaf: its encoded bytes (``lsbench.metering.codecs``);
- a :class:`api.Rows` leaf in a whole message (training, planning): the encoded
  bytes of each carried row, plus its mask: ``mask_bytes(n, k)`` =
  min(ceil(n / 8) bytes of bitmap, k row ids of 2 bytes, or 4 where n > 65,536);
- per-row transport (inference, ``transmit_rows_tree``): each sent row is its
  own message, so that it was sent costs nothing; a sent row whose message
  holds L ``Rows`` leaves pays ceil(L / 8) bytes of flags when any of their
  masks is off for it (an empty or partial row still tells the cloud something).

``scramble=True`` (used by ``lsbench check``'s leak test) bills as usual but
delivers random values of the same shapes and dtypes instead of the payload;
masks and the send gate stay real.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from lsbench.api import Rows
from lsbench.metering.codecs import get_codec

SCRAMBLE_SEED = 20261203


def _is_rows(x):
    return isinstance(x, Rows)


def _nbytes(tree, skip_lead=False) -> int:
    total = 0
    for a in jax.tree_util.tree_leaves(tree):
        shape = a.shape[1:] if skip_lead else a.shape
        total += math.prod(shape) * jnp.dtype(a.dtype).itemsize
    return total


@functools.lru_cache(maxsize=4096)
def _wire_bytes(codec, shape: tuple, dtype: str, per_row: bool) -> int:
    """Encoded bytes of one array (``per_row``: of each row of it) under a codec,
    from the codec's encoded shapes alone; cached per signature."""
    x = jax.ShapeDtypeStruct(shape, jnp.dtype(dtype))
    enc = jax.eval_shape(jax.vmap(codec.encode) if per_row else codec.encode, x)
    return _nbytes(enc, skip_lead=per_row)


def wire_bytes(codec, x, per_row: bool = False) -> int:
    """Billing: the wire size of ``x`` (or of each of its rows) under ``codec``."""
    return _wire_bytes(codec, tuple(x.shape), str(jnp.dtype(x.dtype)), per_row)


def mask_bytes(n: int, k):
    """Wire bytes of a row mask over n rows with k set: a bitmap or a row-id list,
    whichever is smaller (k may be a traced count)."""
    id_bytes = 2 if n <= 65_536 else 4
    return jnp.minimum(math.ceil(n / 8), id_bytes * jnp.asarray(k, jnp.int32)).astype(jnp.int32)


def _random_like(x, salt: int):
    key = jax.random.fold_in(jax.random.PRNGKey(SCRAMBLE_SEED), salt)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return jax.random.normal(key, x.shape, jnp.float32).astype(x.dtype)
    if x.dtype == jnp.bool_:
        return jax.random.bernoulli(key, 0.5, x.shape)
    return jax.random.randint(key, x.shape, 0, 16).astype(x.dtype)


class Channel:
    def __init__(self, codec="raw", scramble: bool = False):
        self.codec = get_codec(codec)
        self.scramble = scramble
        self._salt = 0

    def _deliver(self, dec):
        if not self.scramble:
            return dec
        self._salt += 1
        return _random_like(dec, self._salt)

    def _leaf(self, x):
        x = jnp.asarray(x)
        enc = self.codec.encode(x)
        return self._deliver(self.codec.decode(enc, x)), wire_bytes(self.codec, x)

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
            dec = self._deliver(jax.vmap(self.codec.decode)(enc, x))
            per_row += wire_bytes(self.codec, x, per_row=True)
            keep = mask.reshape((n,) + (1,) * (x.ndim - 1))
            out.append(jnp.where(keep, dec, jnp.zeros_like(dec)))
        return Rows(jax.tree_util.tree_unflatten(tdef, out), mask), per_row * mask.astype(jnp.int32)

    def transmit_rows(self, rows: Rows, send=True):
        """Per-example transport of one Rows: returns (delivered Rows, int32[n]
        bytes per row). Sent rows whose mask is off pay one flag byte."""
        send = jnp.asarray(send, bool)
        got, per_row = self._rows(rows, send)
        flags = (send & ~jnp.asarray(rows.mask, bool)).astype(jnp.int32)
        return got, per_row + flags

    def transmit_rows_tree(self, msg, send):
        """Per-example transport of an uplink/downlink: one ``Rows``, a plain pytree
        (all rows carried where sent), or a pytree whose leaves are ``Rows`` with
        their own masks. Returns the delivered message in the sender's form and
        int32[B] bytes per row (flags included, see the module docstring)."""
        send = jnp.asarray(send, bool)
        leaves, tdef = jax.tree_util.tree_flatten(msg, is_leaf=_is_rows)
        if not any(_is_rows(leaf) for leaf in leaves):
            got, nbytes = self._rows(Rows(msg, send), send)
            return got.data, nbytes
        out, total, partial = [], 0, jnp.zeros(send.shape, bool)
        n_rows_leaves = 0
        for leaf in leaves:
            if _is_rows(leaf):
                n_rows_leaves += 1
                partial = partial | ~jnp.asarray(leaf.mask, bool)
                got, nbytes = self._rows(leaf, send)
                out.append(got)
            else:
                got, nbytes = self._rows(Rows(leaf, send), send)
                out.append(got.data)
            total = total + nbytes
        flags = math.ceil(n_rows_leaves / 8) * (send & partial).astype(jnp.int32)
        return jax.tree_util.tree_unflatten(tdef, out), total + flags

    def transmit(self, msg, send=True):
        """Returns (delivered message, int32 bytes). ``send`` gates the whole message."""
        send = jnp.asarray(send, bool)
        leaves, tdef = jax.tree_util.tree_flatten(msg, is_leaf=_is_rows)
        fixed, rows_bytes, out = 0, jnp.int32(0), []
        for leaf in leaves:
            if _is_rows(leaf):
                d, b = self._rows(leaf, send)
                rows_bytes = rows_bytes + b.sum() + mask_bytes(d.mask.shape[0], d.mask.sum())
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
