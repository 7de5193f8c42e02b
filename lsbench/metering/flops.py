"""FLOP meter: counts FLOPs by walking a function's jaxpr.

Rules (1 multiply-add = 2 FLOPs):
- ``dot_general``: 2 x output elements x contracted size (exact).
- ``conv_general_dilated``: 2 x output elements x kernel window x input features per group (exact).
- element-wise and reductions: 1 FLOP per output element (reductions: per input element);
  pure data movement (reshape, slice, gather, convert, ...) is free.
- ``scan``: body x length. ``cond``/``switch``: the most expensive branch.
  pjit, remat, custom_jvp/custom_vjp and any other primitive holding a sub-jaxpr: recursed into.
- ``while``: refused (its trip count is unknown); use ``lax.scan`` or ``fori_loop`` with static bounds.

``matmul`` (dot + conv) is the primary figure; ``total`` (all ops) the secondary one.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from jax.extend import core as jcore


class FlopError(ValueError):
    """A function cannot be metered (e.g. an unbounded while_loop)."""


@dataclasses.dataclass(frozen=True)
class FlopCount:
    matmul: int = 0
    total: int = 0

    def __add__(self, o: "FlopCount") -> "FlopCount":
        return FlopCount(self.matmul + o.matmul, self.total + o.total)

    def __mul__(self, k: int) -> "FlopCount":
        return FlopCount(self.matmul * int(k), self.total * int(k))

    __rmul__ = __mul__


# Primitives that only move, reinterpret or create data.
FREE = frozenset("""
reshape broadcast_in_dim transpose squeeze expand_dims slice dynamic_slice dynamic_update_slice
concatenate pad gather scatter rev convert_element_type bitcast_convert_type iota copy copy_p
stop_gradient select_and_gather_add sharding_constraint device_put random_seed random_wrap
random_unwrap random_bits threefry2x32 split squeeze optimization_barrier name pvary
""".split())
REDUCTIONS = frozenset("reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or argmax argmin "
                       "cumsum cumprod cummax cummin cumlogsumexp reduce_precision".split())


def _size(aval) -> int:
    return int(math.prod(getattr(aval, "shape", ())))


def _dot_flops(eqn) -> int:
    (lc, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    k = math.prod(lhs[d] for d in lc)
    return 2 * _size(eqn.outvars[0].aval) * int(k)


def _conv_flops(eqn) -> int:
    rhs = eqn.invars[1].aval.shape
    spec = eqn.params["dimension_numbers"].rhs_spec  # (out_feature, in_feature, *spatial)
    window = math.prod(rhs[d] for d in spec[2:])
    return 2 * _size(eqn.outvars[0].aval) * int(window) * int(rhs[spec[1]])


def _sub(v):
    if isinstance(v, jcore.ClosedJaxpr):
        return v.jaxpr
    if isinstance(v, jcore.Jaxpr):
        return v
    return None


def count_jaxpr(jaxpr) -> FlopCount:
    """FLOPs of a (Closed)Jaxpr."""
    jaxpr = _sub(jaxpr) or jaxpr
    total = FlopCount()
    for eqn in jaxpr.eqns:
        total = total + _count_eqn(eqn)
    return total


def _count_eqn(eqn) -> FlopCount:
    name = eqn.primitive.name
    p = eqn.params
    if name == "dot_general":
        f = _dot_flops(eqn)
        return FlopCount(f, f)
    if name == "conv_general_dilated":
        f = _conv_flops(eqn)
        return FlopCount(f, f)
    if name == "scan":
        return count_jaxpr(p["jaxpr"]) * p["length"]
    if name == "cond":
        counts = [count_jaxpr(b) for b in p["branches"]]
        return FlopCount(max(c.matmul for c in counts), max(c.total for c in counts))
    if name == "while":
        raise FlopError("cannot meter a while_loop with an unknown trip count; "
                        "use lax.scan or fori_loop with static bounds")
    subs = [s for v in p.values() for s in (v if isinstance(v, (tuple, list)) else (v,))
            if _sub(s) is not None]
    if subs:  # pjit, remat, custom_jvp/vjp, shard_map, closed_call, ...
        out = FlopCount()
        for s in subs:
            out = out + count_jaxpr(s)
        return out
    if name in FREE:
        return FlopCount()
    if name in REDUCTIONS:
        return FlopCount(0, sum(_size(v.aval) for v in eqn.invars))
    return FlopCount(0, sum(_size(v.aval) for v in eqn.outvars))


def count(fn, *args) -> FlopCount:
    """FLOPs of one call ``fn(*args)`` (args may be arrays or ShapeDtypeStructs)."""
    return count_jaxpr(jax.make_jaxpr(fn)(*args))


def _signature(args):
    leaves, tree = jax.tree_util.tree_flatten(args)
    sig = []
    for leaf in leaves:
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            sig.append((tuple(leaf.shape), str(leaf.dtype)))
        else:  # static Python values are part of the signature
            sig.append(("py", repr(leaf)))
    return tree, tuple(sig)


class FlopMeter:
    """Counts each metered function once per input signature, then serves the cache."""

    def __init__(self):
        self._cache: dict = {}

    def count(self, name: str, fn, *args) -> FlopCount:
        key = (name,) + _signature(args)
        if key not in self._cache:
            try:
                self._cache[key] = count(fn, *args)
            except FlopError as e:
                raise FlopError(f"{name}: {e}") from None
        return self._cache[key]

    def __len__(self):
        return len(self._cache)
