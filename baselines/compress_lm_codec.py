"""Weight-only quantisation of a Transformer for shipping (``compress/arith``):
any nested Flax tree, every 2-D ``kernel`` (the Dense layers: qkv, out,
mlp_in, mlp_out, head) quantised per output channel; embeddings, LayerNorms
and biases stay float32.

Wire form: ``{"dense": {layer path: {q, scale[, bias][, idx, hi]}}, "rest":
{leaf path: float32}}``. ``q``: int8 [cin - k, cout] (4 bits: packed two per
byte, ``quant.pack4``); ``scale``: float32 per output channel. With ``k`` > 0
outlier input features (LLM.int8-style, Dettmers et al. 2022), the k rows of
the kernel that multiply the input features of largest calibration magnitude
go as float16 (``hi`` [k, cout]) with their row indices (``idx``: uint8 when
cin <= 256, else uint16); the int8 grid then covers only the other rows. A
traced program needs static shapes, so the outlier set is the top k per layer
(a per-layer threshold at the k-th largest max |x|) rather than a fixed
magnitude threshold; ``k`` is swept and chosen on validation.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from lsbench.models import quant

SEP = "/"


def dense_inputs(apply_fn, x) -> dict:
    """{layer path: its input activations} of every ``nn.Dense`` call in ``apply_fn(x)``."""
    got = {}

    def grab(f, args, kwargs, ctx):
        if isinstance(ctx.module, nn.Dense) and ctx.method_name == "__call__":
            got[SEP.join(ctx.module.path)] = args[0]
        return f(*args, **kwargs)

    with nn.intercept_methods(grab):
        apply_fn(x)
    return got


def _layers(params):
    flat = traverse_util.flatten_dict(params, sep=SEP)
    dense = {p[: -len("/kernel")]: v for p, v in flat.items() if p.endswith("/kernel")}
    dense = {p: v for p, v in dense.items() if v.ndim == 2}
    rest = {p: v for p, v in flat.items()
            if not any(p in (f"{d}/kernel", f"{d}/bias") for d in dense)}
    return flat, dense, rest


def _idx_dtype(cin: int):
    return jnp.uint8 if cin <= 256 else jnp.uint16


def encode(params, bits: int, k: int = 0, inputs=None, calibrate=False):
    """The wire form of ``params`` (see the module doc). ``inputs`` ({layer path:
    calibration inputs [..., cin]}) is needed for ``k`` > 0 (outlier features) and
    for ``calibrate`` (energy-weighted clipping and bias correction, ``quant.calibrate``)."""
    flat, dense, rest = _layers(params)
    out = {}
    for name, w in dense.items():
        cin, cout = w.shape
        w, b = jnp.asarray(w, jnp.float32), flat.get(f"{name}/bias")
        x = None if inputs is None else inputs[name].reshape(-1, cin).astype(jnp.float32)
        kk = min(int(k), cin)
        layer = {}
        if kk:
            mag = jnp.max(jnp.abs(x), 0)
            idx = jnp.sort(jax.lax.top_k(mag, kk)[1])
            hot = jnp.zeros((cin,), bool).at[idx].set(True)
            keep = jnp.nonzero(~hot, size=cin - kk)[0]
            layer.update(idx=idx.astype(_idx_dtype(cin)), hi=w[idx].astype(jnp.float16))
            w, x = w[keep], x[:, keep]
        if calibrate:
            q, s, b2 = quant.calibrate(w, jnp.zeros((cout,)) if b is None else b, x, bits)
            b = None if b is None else b2
        else:
            q, s = quant.quantize(w, bits)
        layer.update(q=quant.pack4(q) if bits <= 4 else q, scale=s)
        if b is not None:
            layer["bias"] = b.astype(jnp.float32)
        out[name] = layer
    return {"dense": out, "rest": {p: jnp.asarray(v, jnp.float32) for p, v in rest.items()}}


def decode(enc, shapes, bits: int, k: int = 0):
    """float32 parameters (the nested tree of ``shapes``) from ``encode``'s output."""
    _, dense, _ = _layers(shapes)
    flat = dict(enc["rest"])
    for name, layer in enc["dense"].items():
        cin, cout = dense[name].shape
        kk = min(int(k), cin)
        shape = (cin - kk, cout)
        q = quant.unpack4(layer["q"], shape) if bits <= 4 else layer["q"]
        w = quant.dequantize(q, layer["scale"])
        if kk:
            idx = layer["idx"].astype(jnp.int32)
            keep = jnp.nonzero(~jnp.zeros((cin,), bool).at[idx].set(True), size=cin - kk)[0]
            w = jnp.zeros((cin, cout), jnp.float32).at[keep].set(w).at[idx].set(
                layer["hi"].astype(jnp.float32))
        flat[f"{name}/kernel"] = w
        if "bias" in layer:
            flat[f"{name}/bias"] = layer["bias"]
    return traverse_util.unflatten_dict(flat, sep=SEP)


def wire_bytes(shapes, bits: int, k: int = 0) -> int:
    """Analytic bytes of ``encode``'s output for a tree of ``shapes``: per Dense layer
    the int8 (or packed int4) grid, 4 B scale (+ 4 B bias) per output channel, and per
    outlier row 2 B per weight plus its index; everything else 4 B per element."""
    flat, dense, rest = _layers(shapes)
    total = sum(4 * math.prod(v.shape) for v in rest.values())
    for name, w in dense.items():
        cin, cout = w.shape
        kk = min(int(k), cin)
        n = (cin - kk) * cout
        total += (math.ceil(n / 2) if bits <= 4 else n) + 4 * cout
        total += 4 * cout if f"{name}/bias" in flat else 0
        total += kk * (2 * cout + jnp.dtype(_idx_dtype(cin)).itemsize)
    return total
