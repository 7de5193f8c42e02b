"""Training-track model zoo: small edge MLPs and larger cloud CNNs, as ModelDefs.

Each model is a Flax body (features) plus a linear head, exposed as plain
functions over a params pytree ``{'body': ..., 'head': ...}``. Methods can cut
it at its named stages (``stages = ("input", "features", "logits")``,
``run(params, x, start, stop)``) or slice widths (``info['width']``).
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lsbench import api


class MLPBody(nn.Module):
    hidden: Sequence[int]

    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], math.prod(x.shape[1:]))).astype(jnp.float32)  # ok for 0 rows
        for h in self.hidden:
            x = nn.relu(nn.Dense(h)(x))
        return x


class CNNBody(nn.Module):
    """Strided conv stack (1-D for sequences, 2-D for images) then flatten.
    ``convs`` are (channels, kernel, stride) triples."""
    convs: Sequence[tuple]
    dims: int  # 1 or 2 spatial dims
    dense: int = 0

    @nn.compact
    def __call__(self, x):
        x = x.astype(jnp.float32)
        if x.ndim == self.dims + 1:  # no channel axis
            x = x[..., None]
        for ch, k, s in self.convs:
            x = nn.relu(nn.Conv(ch, (k,) * self.dims, strides=(s,) * self.dims, padding=[(1, 1)] * self.dims)(x))
        x = x.reshape((x.shape[0], math.prod(x.shape[1:])))
        if self.dense:
            x = nn.relu(nn.Dense(self.dense)(x))
        return x


class Head(nn.Module):
    classes: int

    @nn.compact
    def __call__(self, f):
        return nn.Dense(self.classes)(f)


STAGES = ("input", "features", "logits")


def param_count(params) -> int:
    return sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(params))


def _modeldef(name, body: nn.Module, classes: int, input_shape, info) -> api.ModelDef:
    head = Head(classes)
    x0 = jnp.zeros((1,) + tuple(input_shape), jnp.float32)

    @jax.jit
    def init(rng):
        kb, kh = jax.random.split(rng)
        pb = body.init(kb, x0).get("params", {})
        f0 = jax.eval_shape(lambda p: body.apply({"params": p}, x0), pb)
        ph = head.init(kh, jnp.zeros(f0.shape, f0.dtype))["params"]
        return {"body": pb, "head": ph} if pb else {"head": ph}  # no empty subtrees

    def features(p, x):
        return body.apply({"params": p.get("body", {})}, x)

    def head_fn(p, f):
        return head.apply({"params": p["head"]}, f)

    def apply(p, x):
        return head_fn(p, features(p, x))

    def run(p, x, start="input", stop="logits"):
        """From stage ``start`` (``x`` is its activation) up to and including ``stop``."""
        if STAGES.index(start) > STAGES.index(stop):
            raise ValueError(f"stage {start} comes after {stop}")
        f = features(p, x) if start == "input" else x
        if stop == "features":
            return f
        return head_fn(p, f) if start != "logits" else x

    shapes = jax.eval_shape(init, jax.random.PRNGKey(0))
    info = dict(info, params=param_count(shapes), input_shape=tuple(input_shape), classes=classes)
    return api.ModelDef(name, init, apply, stages=STAGES, run=run, info=info)


def mlp(classes: int, input_shape, hidden=(100, 100), width: float = 1.0) -> api.ModelDef:
    """ReLU MLP; ``width`` scales every hidden layer (HeteroFL-style tiers)."""
    hs = tuple(max(1, int(round(h * width))) for h in hidden)
    return _modeldef(f"mlp{'x'.join(map(str, hs))}", MLPBody(hs), classes, input_shape,
                     {"family": "mlp", "hidden": hs, "base_hidden": tuple(hidden), "width": width})


def cnn(classes: int, input_shape, channels=(32, 32, 32), kernels=(5, 3, 3), strides=(2, 2, 2),
        dense: int = 0, width: float = 1.0) -> api.ModelDef:
    """Strided ReLU CNN over 1-D sequences (input (L,)) or images (H, W[, C])."""
    dims = 1 if len(input_shape) == 1 else 2
    chs = tuple(max(1, int(round(c * width))) for c in channels)
    convs = tuple(zip(chs, kernels, strides))
    return _modeldef(f"cnn{dims}d-{'x'.join(map(str, chs))}", CNNBody(convs, dims, dense), classes,
                     input_shape, {"family": "cnn", "channels": chs, "width": width, "dense": dense})


def linear(classes: int, input_shape) -> api.ModelDef:
    """Multinomial logistic regression (an MLP with no hidden layer)."""
    m = mlp(classes, input_shape, hidden=())
    return api.ModelDef("linear", m.init, m.apply, stages=m.stages, run=m.run,
                        info=dict(m.info, family="linear"))
