"""Payload codecs: what a message becomes on the wire.

Each codec maps one array to an *encoded* pytree of arrays (the bytes that
travel) and back. The channel bills the encoded arrays' ``nbytes``, side
information (scales, zero-points, indices) included, and delivers the decoded
array, so the receiver sees the real quantisation error. Only floating leaves
are coded; integer and bool leaves travel raw.

| codec      | wire format per array (or per row inside ``api.Rows``)            |
|------------|-------------------------------------------------------------------|
| raw        | the array as is                                                   |
| fp32/fp16/bf16 | cast to that dtype                                            |
| int8       | uint8 codes + fp32 scale + fp32 zero-point (affine, min/max)      |
| int4       | two 4-bit codes per uint8 (ceil(n/2) bytes) + fp32 scale + zero   |
| topk:<f>   | k = ceil(f·n) fp32 values of largest magnitude + k int32 indices  |
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

FLOAT_CASTS = {"fp32": jnp.float32, "fp16": jnp.float16, "bf16": jnp.bfloat16}


class CodecError(ValueError):
    pass


def _is_float(x) -> bool:
    return jnp.issubdtype(x.dtype, jnp.floating)


def _affine(x, levels):
    flat = x.reshape(-1).astype(jnp.float32)
    lo, hi = jnp.min(flat), jnp.max(flat)
    scale = jnp.where(hi > lo, (hi - lo) / (levels - 1), 1.0)
    q = jnp.clip(jnp.round((flat - lo) / scale), 0, levels - 1).astype(jnp.uint8)
    return q, scale.astype(jnp.float32), lo.astype(jnp.float32)


class Codec:
    name = "raw"

    # Codecs are equal when of one class and name (the channel caches wire sizes by codec).
    def __eq__(self, other):
        return type(self) is type(other) and self.name == other.name

    def __hash__(self):
        return hash((type(self).__name__, self.name))

    def encode(self, x):
        return {"v": x}

    def decode(self, enc, like):
        return enc["v"]


class Cast(Codec):
    def __init__(self, name):
        self.name, self.dtype = name, FLOAT_CASTS[name]

    def encode(self, x):
        return {"v": x.astype(self.dtype) if _is_float(x) else x}

    def decode(self, enc, like):
        return enc["v"].astype(like.dtype)


class Int8(Codec):
    name = "int8"

    def encode(self, x):
        if not _is_float(x):
            return {"v": x}
        q, s, z = _affine(x, 256)
        return {"q": q, "scale": s, "zero": z}

    def decode(self, enc, like):
        if "v" in enc:
            return enc["v"]
        return (enc["q"].astype(jnp.float32) * enc["scale"] + enc["zero"]).reshape(like.shape).astype(like.dtype)


class Int4(Codec):
    name = "int4"

    def encode(self, x):
        if not _is_float(x):
            return {"v": x}
        q, s, z = _affine(x, 16)
        if q.size % 2:
            q = jnp.concatenate([q, jnp.zeros((1,), jnp.uint8)])
        packed = (q[0::2] | (q[1::2] << 4)).astype(jnp.uint8)
        return {"q": packed, "scale": s, "zero": z}

    def decode(self, enc, like):
        if "v" in enc:
            return enc["v"]
        p = enc["q"]
        q = jnp.stack([p & 15, p >> 4], axis=-1).reshape(-1)[: math.prod(like.shape)]
        return (q.astype(jnp.float32) * enc["scale"] + enc["zero"]).reshape(like.shape).astype(like.dtype)


class TopK(Codec):
    def __init__(self, frac):
        if not 0 < frac <= 1:
            raise CodecError(f"topk fraction must be in (0, 1], got {frac}")
        self.frac, self.name = frac, f"topk:{frac:g}"

    def encode(self, x):
        if not _is_float(x):
            return {"v": x}
        flat = x.reshape(-1)
        k = max(1, math.ceil(self.frac * flat.size))
        _, idx = jax.lax.top_k(jnp.abs(flat.astype(jnp.float32)), k)
        return {"values": flat[idx].astype(jnp.float32), "indices": idx.astype(jnp.int32)}

    def decode(self, enc, like):
        if "v" in enc:
            return enc["v"]
        flat = jnp.zeros((math.prod(like.shape),), jnp.float32).at[enc["indices"]].set(enc["values"])
        return flat.reshape(like.shape).astype(like.dtype)


def get_codec(name: str) -> Codec:
    if isinstance(name, Codec):
        return name
    if name in ("raw", None, ""):
        return Codec()
    if name in FLOAT_CASTS:
        return Cast(name)
    if name == "int8":
        return Int8()
    if name == "int4":
        return Int4()
    if isinstance(name, str) and name.startswith("topk:"):
        try:
            frac = float(name.split(":", 1)[1])
        except ValueError:
            raise CodecError(f"bad codec '{name}': use topk:<fraction>, e.g. topk:0.1") from None
        return TopK(frac)
    raise CodecError(f"unknown codec '{name}'; use raw, fp32, fp16, bf16, int8, int4 or topk:<fraction>")
