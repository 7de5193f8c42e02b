"""Weight quantisation for shipping a model to the edge (``compress/*`` tasks).

Symmetric per-output-channel quantisation of every ``kernel`` leaf of a Flax
parameter tree (the last axis is the output channel); biases stay float32.
What goes on the wire, per quantised layer: ``q`` (int8 values; for 4 bits,
two values packed per uint8 byte), ``scale`` (float32 per output channel) and
``bias``. The channel bills arrays at their dtype's size, so int8 costs 1 byte
per weight and packed int4 half a byte: the packing is what makes 4 bits pay 4 bits.

Calibration (``calibrate``): per output channel, the clipping ratio is chosen
from a grid to minimise the quantisation error weighted by the layer's input
energy on calibration data (E[x_k^2] per input row k, the diagonal of X^T X),
and biases are corrected for the mean output shift E[x] (W - W_q) (bias
correction, Nagel et al. 2019). All functions are jittable.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

CLIP_GRID = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5)


def qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def quantize(w, bits: int, clip=None):
    """(int8 q, float32 scale[cout]) for a kernel ``w`` [..., cout]; ``clip``
    (float[cout] or None) scales each channel's max |w| before rounding."""
    w2 = w.reshape(-1, w.shape[-1]).astype(jnp.float32)
    amax = jnp.max(jnp.abs(w2), 0)
    if clip is not None:
        amax = amax * clip
    scale = jnp.maximum(amax, 1e-12) / qmax(bits)
    q = jnp.clip(jnp.round(w2 / scale), -qmax(bits), qmax(bits)).astype(jnp.int8)
    return q.reshape(w.shape), scale


def dequantize(q, scale):
    return q.astype(jnp.float32) * scale


def pack4(q):
    """int8 values in [-7, 7] (any shape) -> uint8[ceil(n / 2)], two per byte."""
    u = (q.reshape(-1).astype(jnp.int32) + 8).astype(jnp.uint8)
    if u.shape[0] % 2:
        u = jnp.concatenate([u, jnp.zeros((1,), jnp.uint8)])
    return u[0::2] | (u[1::2] << 4)


def unpack4(b, shape):
    """Inverse of ``pack4``: int8 values of ``shape``."""
    n = math.prod(shape)
    lo, hi = b & 15, b >> 4
    u = jnp.stack([lo, hi], -1).reshape(-1)[:n]
    return (u.astype(jnp.int32) - 8).astype(jnp.int8).reshape(shape)


def _input_energy(x, kshape):
    """E[x^2] and E[x] per kernel input row (kernel [..., cin, cout] flattened to
    rows); for a conv, per input channel, broadcast over the taps (padding ignored)."""
    cin = kshape[-2]
    x = x.reshape(-1, x.shape[-1]).astype(jnp.float32)  # [N * positions, cin]
    taps = math.prod(kshape[:-1]) // cin
    e2, e1 = jnp.mean(x * x, 0), jnp.mean(x, 0)
    return jnp.tile(e2, taps), jnp.tile(e1, taps)


def calibrate(w, b, x, bits: int, grid=CLIP_GRID):
    """Calibrated (q, scale, corrected bias) of one layer with kernel ``w``
    [..., cin, cout], bias ``b`` and calibration inputs ``x`` [..., cin]."""
    w2 = w.reshape(-1, w.shape[-1]).astype(jnp.float32)
    e2, e1 = _input_energy(x, w.shape)

    def err(c):
        q, s = quantize(w2, bits, jnp.full((w2.shape[-1],), c))
        d = w2 - dequantize(q, s)
        return jnp.sum(e2[:, None] * d * d, 0)

    errs = jnp.stack([err(c) for c in grid])              # [grid, cout]
    clip = jnp.asarray(grid)[jnp.argmin(errs, 0)]
    q, scale = quantize(w2, bits, clip)
    b2 = b + e1 @ (w2 - dequantize(q, scale))             # bias correction
    return q.reshape(w.shape), scale, b2


def layer_inputs(model, params, x):
    """{layer name: its input activations on ``x``} for a staged vision model
    (``ModelDef.stages``; a layer is named after its stage, ``out`` for ``logits``)."""
    from lsbench.models import vision
    names, out, h = model.stages, {}, x
    for a, s in zip(names, names[1:]):
        layer = "out" if s == "logits" else s
        if layer in params:
            inp = vision.to_float(h) if a == "input" else h
            out[layer] = inp if params[layer]["kernel"].ndim == 4 else inp.reshape(inp.shape[0], -1)
        h = model.run(params, h, a, s)
    return out


def encode(params, bits: int, inputs=None):
    """The wire form of a parameter tree: every layer with a ``kernel`` becomes
    ``{q, scale, bias}`` (q packed two per byte for bits <= 4); ``inputs``
    ({layer: calibration inputs}, see ``layer_inputs``) turns on calibration."""
    out = {}
    for name, layer in params.items():
        w, b = layer["kernel"], layer["bias"]
        if inputs is not None and name in inputs:
            q, s, b = calibrate(w, b, inputs[name], bits)
        else:
            q, s = quantize(w, bits)
            q = q.reshape(w.shape)
        out[name] = {"q": pack4(q) if bits <= 4 else q, "scale": s, "bias": b.astype(jnp.float32)}
    return out


def decode(enc, shapes, bits: int):
    """float32 parameters from ``encode``'s output; ``shapes``: the model's
    parameter tree (abstract is enough) giving each kernel's shape."""
    out = {}
    for name, layer in enc.items():
        kshape = tuple(shapes[name]["kernel"].shape)
        q = unpack4(layer["q"], kshape) if bits <= 4 else layer["q"]
        w = dequantize(q.reshape(-1, kshape[-1]), layer["scale"]).reshape(kshape)
        out[name] = {"kernel": w, "bias": layer["bias"]}
    return out


def wire_bytes(kshapes: dict, bits: int) -> int:
    """Analytic bytes of ``encode``'s output for kernels of ``kshapes`` ({name: shape})."""
    total = 0
    for shape in kshapes.values():
        n, cout = math.prod(shape), shape[-1]
        total += (math.ceil(n / 2) if bits <= 4 else n) + 4 * cout + 4 * cout
    return total
