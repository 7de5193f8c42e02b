"""Low-rank (truncated SVD) factorisation of dense layers for shipping.

A dense kernel W [K, N] becomes A = U_r sqrt(S_r) [K, r] and B = sqrt(S_r) V_r^T
[r, N] (the best rank-r approximation in Frobenius norm); other layers
(convolutions) ship as they are. Wire bytes of a factored layer: 4 r (K + N)
plus the bias. The edge multiplies A B back per batch (``decode``), which is
r K N multiply-adds per batch, not per example.
"""
from __future__ import annotations

import math

import jax.numpy as jnp


def factor(w, rank: int):
    u, s, vt = jnp.linalg.svd(w.astype(jnp.float32), full_matrices=False)
    r = min(int(rank), s.shape[0])
    root = jnp.sqrt(s[:r])
    return u[:, :r] * root, root[:, None] * vt[:r]


def factored(shape, rank: int) -> bool:
    """Whether a kernel of ``shape`` is factored: dense, and rank r saves bytes."""
    return len(shape) == 2 and rank * (shape[0] + shape[1]) < shape[0] * shape[1]


def encode(params, rank: int) -> dict:
    out = {}
    for name, layer in params.items():
        w = layer["kernel"]
        if factored(w.shape, rank):
            a, b = factor(w, rank)
            out[name] = {"a": a, "b": b, "bias": layer["bias"]}
        else:
            out[name] = {"kernel": w, "bias": layer["bias"]}
    return out


def decode(enc) -> dict:
    return {n: {"kernel": l["a"] @ l["b"], "bias": l["bias"]} if "a" in l else dict(l)
            for n, l in enc.items()}


def wire_bytes(shapes: dict, rank: int) -> int:
    """Analytic bytes of ``encode``'s output; ``shapes``: {name: kernel shape}."""
    total = 0
    for shape in shapes.values():
        body = rank * (shape[0] + shape[1]) if factored(shape, rank) else math.prod(shape)
        total += 4 * (body + shape[-1])
    return total
