"""Convolutions as matmuls inside compiled loops (XLA:CPU).

XLA:CPU runs ``conv_general_dilated`` (and its gradients, and 2x2 max-pool
gradients) several times slower inside a loop body than at top level
(jax-ml/jax#12868; ``benchmarks/bench_conv_loops.py``). In-program training on
the cloud (``distill.train``: a ``lax.scan`` over every step) is such a loop.
``rewrite(fn)`` is ``fn`` with every plain 2-D convolution (NHWC x HWIO, no
dilation, one group) computed as im2col patches times the reshaped kernel, and
every 2x2/2 max-pool as a reshape and max. It is the same function to float
tolerance (tested); differentiating the rewritten function gives gradients
with no convolution op either. Anything else is bound unchanged.

The FLOP meter counts what the program computes: the patches matmul includes
the taps that land on padding, which the convolution convention does not bill,
so a rewritten program is billed slightly more (never less).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.extend import core

_CALLS = ("pjit", "jit", "closed_call")


def _plain_conv(p) -> bool:
    dn = p["dimension_numbers"]
    return (tuple(dn.lhs_spec) == (0, 3, 1, 2) and tuple(dn.rhs_spec) == (3, 2, 0, 1)
            and tuple(dn.out_spec) == (0, 3, 1, 2) and p["feature_group_count"] == 1
            and p["batch_group_count"] == 1 and all(d == 1 for d in p["lhs_dilation"])
            and all(d == 1 for d in p["rhs_dilation"]) and p.get("preferred_element_type") is None)


def conv(x, w, strides, padding):
    """NHWC x HWIO convolution (explicit ``padding`` pairs) as im2col patches @ kernel."""
    kh, kw = w.shape[:2]
    (pt, pb), (pl, pr) = padding
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    sh, sw = strides
    ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    cols = [xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
            for i in range(kh) for j in range(kw)]
    return jnp.concatenate(cols, -1) @ w.reshape(-1, w.shape[-1])


def _plain_pool(p, x) -> bool:
    return (tuple(p["window_dimensions"]) == (1, 2, 2, 1) and tuple(p["window_strides"]) == (1, 2, 2, 1)
            and all(tuple(a) == (0, 0) for a in p["padding"]) and x.ndim == 4
            and x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0
            and all(d == 1 for d in p["base_dilation"]) and all(d == 1 for d in p["window_dilation"]))


def _eval(jaxpr, consts, args):
    env = {}

    def read(v):
        return v.val if isinstance(v, core.Literal) else env[v]
    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        name, p = eqn.primitive.name, eqn.params
        if name == "conv_general_dilated" and _plain_conv(p):
            outs = [conv(ins[0], ins[1], p["window_strides"], p["padding"]).astype(eqn.outvars[0].aval.dtype)]
        elif name == "reduce_window_max" and _plain_pool(p, ins[0]):
            b, h, w, c = ins[0].shape
            outs = [ins[0].reshape(b, h // 2, 2, w // 2, 2, c).max((2, 4))]
        elif name in _CALLS and "jaxpr" in p:
            outs = _eval(p["jaxpr"].jaxpr, p["jaxpr"].consts, ins)
        else:
            ans = eqn.primitive.bind(*ins, **eqn.primitive.get_bind_params(p))
            outs = ans if eqn.primitive.multiple_results else [ans]
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def rewrite(fn):
    """``fn`` (pytrees in, pytree out) with its plain convolutions and 2x2 max-pools
    as matmuls and reshapes (traced once per call; no effect on other ops)."""
    def wrapped(*args):
        flat, tree = jax.tree_util.tree_flatten(args)
        closed, shape = jax.make_jaxpr(lambda *f: fn(*jax.tree_util.tree_unflatten(tree, f)),
                                       return_shape=True)(*flat)
        out = _eval(closed.jaxpr, closed.consts, flat)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shape), out)
    return wrapped
