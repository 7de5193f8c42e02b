"""Parameter-efficient deltas on a frozen MLP backbone (``adapt/*`` tasks).

The backbone is a ``train_zoo.mlp`` parameter tree ``{'body': {'Dense_i':
{kernel, bias}}, 'head': {'Dense_0': ...}}``; ``apply(backbone, delta, x,
kind)`` runs it with a trainable ``delta`` of one ``kind``:

- ``full``: the delta *is* the parameter tree (full fine-tuning);
- ``lora``: per chosen dense layer, A [in, r] and B [r, out] with W + (alpha / r)
  A B (Hu et al., 2021); B starts at zero so the model starts as the backbone;
  with ``bias`` (default) the layer's bias is tuned too (a bias delta, LoRA's
  ``bias="lora_only"``: what a label-skewed client most needs);
- ``adapter``: after each hidden layer h -> h + relu(h D) U with D [h, m],
  U [m, h] (Houlsby et al., 2019); U starts at zero;
- ``prompt``: for an MLP there are no tokens, so a prompt is a learned vector
  added to the input (visual-prompting style, Bahng et al., 2022) and, as the
  "deep" (prefix-like) part, a learned shift of each hidden layer's
  pre-activations.

``init(kind, backbone, rng, **kw)`` makes the initial delta; ``size(delta)``
counts its elements.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

KINDS = ("full", "lora", "adapter", "prompt")


def layers(backbone):
    """[(path, kernel, bias)] of the dense layers in order: body then head."""
    body = backbone.get("body", {})
    names = sorted(body, key=lambda n: int(n.split("_")[-1]))
    out = [(("body", n), body[n]["kernel"], body[n]["bias"]) for n in names]
    return out + [(("head", "Dense_0"), backbone["head"]["Dense_0"]["kernel"],
                   backbone["head"]["Dense_0"]["bias"])]


def _key(path):
    return "/".join(path)


def init(kind: str, backbone, rng, rank: int = 4, where: str = "all", bottleneck: int = 8,
         bias: bool = True):
    ls = layers(backbone)
    if kind == "full":
        return jax.tree_util.tree_map(jnp.asarray, backbone)
    if kind == "lora":
        out = {}
        chosen = ls if where == "all" else ls[:-1]
        for i, (path, w, _) in enumerate(chosen):
            k = jax.random.fold_in(rng, i)
            a = jax.random.normal(k, (w.shape[0], rank), jnp.float32) / math.sqrt(w.shape[0])
            out[_key(path)] = {"a": a, "b": jnp.zeros((rank, w.shape[1]), jnp.float32)}
            if bias:
                out[_key(path)]["bias"] = jnp.zeros((w.shape[1],), jnp.float32)
        return out
    if kind == "adapter":
        out = {}
        for i, (path, w, _) in enumerate(ls[:-1]):
            k = jax.random.fold_in(rng, i)
            h = w.shape[1]
            out[_key(path)] = {"down": jax.random.normal(k, (h, bottleneck), jnp.float32) / math.sqrt(h),
                               "up": jnp.zeros((bottleneck, h), jnp.float32)}
        return out
    if kind == "prompt":
        d_in = ls[0][1].shape[0]
        return {"input": jnp.zeros((d_in,), jnp.float32),
                **{_key(p): jnp.zeros((w.shape[1],), jnp.float32) for p, w, _ in ls[:-1]}}
    raise ValueError(f"unknown delta kind '{kind}'; use one of {', '.join(KINDS)}")


def apply(backbone, delta, x, kind: str, alpha: float = 8.0):
    """Logits of the backbone with ``delta`` applied (``alpha``: the LoRA scale numerator)."""
    if kind == "full":
        backbone, delta = delta, {}
    h = x.reshape((x.shape[0], -1)).astype(jnp.float32)
    if kind == "prompt":
        h = h + delta["input"]
    ls = layers(backbone)
    for i, (path, w, b) in enumerate(ls):
        key = _key(path)
        z = h @ w + b
        if kind == "lora" and key in delta:
            a, bb = delta[key]["a"], delta[key]["b"]
            z = z + (alpha / a.shape[1]) * ((h @ a) @ bb) + delta[key].get("bias", 0.0)
        if i == len(ls) - 1:
            return z
        if kind == "prompt":
            z = z + delta[key]
        h = jax.nn.relu(z)
        if kind == "adapter":
            h = h + jax.nn.relu(h @ delta[key]["down"]) @ delta[key]["up"]


def size(delta) -> int:
    return sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(delta))
