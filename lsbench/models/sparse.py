"""Unstructured magnitude pruning and an honest sparse wire encoding.

``magnitude_masks(params, sparsity)``: per layer, keep the round((1 - s) n)
largest-magnitude kernel weights (biases are never pruned). The kept count is
static, so the encoded shapes are too.

Encoding of one pruned kernel with n weights and k kept (``encode``), the
smaller of:
- ``bitmask``: uint8[ceil(n / 8)] of positions + float32[k] values;
- ``index``: uint16 (int32 when n > 65,536) positions [k] + float32[k] values.
So the billed bytes are min(n / 8, 2k) + 4k: they fall with sparsity only as
fast as the position code allows (``wire_bytes`` gives the exact count).
The edge rebuilds the dense kernel with ``decode`` (a cumulative sum and a
gather; no matmul).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def kept(n: int, sparsity: float) -> int:
    return max(1, int(round((1.0 - float(sparsity)) * n)))


def magnitude_masks(params, sparsity: float) -> dict:
    """{layer: bool mask of its kernel}: the kept weights of each layer."""
    out = {}
    for name, layer in params.items():
        w = layer["kernel"].reshape(-1)
        k = kept(w.shape[0], sparsity)
        _, idx = jax.lax.top_k(jnp.abs(w), k)
        out[name] = jnp.zeros(w.shape, bool).at[idx].set(True).reshape(layer["kernel"].shape)
    return out


def apply_masks(params, masks):
    return {n: dict(l, kernel=l["kernel"] * masks[n]) for n, l in params.items()}


def scheme(n: int, k: int) -> str:
    idx_bytes = 2 if n <= 65_536 else 4
    return "bitmask" if math.ceil(n / 8) <= idx_bytes * k else "index"


def _index_dtype(n: int):
    return jnp.uint16 if n <= 65_536 else jnp.int32


def encode(params, masks, sparsity: float) -> dict:
    """The wire form: per layer {pos, values, bias} (``scheme`` decides pos)."""
    out = {}
    for name, layer in params.items():
        w, m = layer["kernel"].reshape(-1), masks[name].reshape(-1)
        n = w.shape[0]
        k = kept(n, sparsity)
        # kept positions in ascending order (exactly k are set)
        idx = jnp.sort(jnp.nonzero(m, size=k, fill_value=n - 1)[0])
        vals = w[idx].astype(jnp.float32)
        if scheme(n, k) == "bitmask":
            pos = jnp.packbits(m.astype(jnp.uint8))
        else:
            pos = idx.astype(_index_dtype(n))
        out[name] = {"pos": pos, "values": vals, "bias": layer["bias"].astype(jnp.float32)}
    return out


def decode(enc, shapes) -> dict:
    """Dense float32 parameters from ``encode``'s output (``shapes``: the model's
    parameter tree, abstract is enough)."""
    out = {}
    for name, layer in enc.items():
        kshape = tuple(shapes[name]["kernel"].shape)
        n, k = math.prod(kshape), layer["values"].shape[0]
        if scheme(n, k) == "bitmask":
            m = jnp.unpackbits(layer["pos"])[:n].astype(bool)
            slot = jnp.clip(jnp.cumsum(m) - 1, 0, k - 1)
            w = jnp.where(m, layer["values"][slot], 0.0)
        else:
            w = jnp.zeros((n,), jnp.float32).at[layer["pos"].astype(jnp.int32)].set(layer["values"])
        out[name] = {"kernel": w.reshape(kshape), "bias": layer["bias"]}
    return out


def wire_bytes(kshapes: dict, sparsity: float) -> int:
    """Analytic bytes of ``encode``'s output for kernels of ``kshapes`` ({name: shape})."""
    total = 0
    for shape in kshapes.values():
        n, cout = math.prod(shape), shape[-1]
        k = kept(n, sparsity)
        pos = math.ceil(n / 8) if scheme(n, k) == "bitmask" else k * (2 if n <= 65_536 else 4)
        total += pos + 4 * k + 4 * cout
    return total
