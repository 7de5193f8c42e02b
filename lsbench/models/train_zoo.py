"""Training-track model zoo: small edge MLPs and larger cloud CNNs, as ModelDefs.

Each model is a Flax body (features) plus a linear head, exposed as plain
functions over a params pytree ``{'body': ..., 'head': ...}``. Methods can cut
it at its named stages (``stages = ("input", "features", "logits")``,
``run(params, x, start, stop)``) or slice widths (``info['width']``).
"""
from __future__ import annotations

import itertools
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


def _segments(size: int, taps: int, stride: int, pad: int, out: int) -> list:
    """Along one spatial dimension: the outputs grouped into runs that see the same
    range of real (not padding) kernel taps, as ``(o_first, o_last, t_first, t_last)``."""
    segs = []
    for o in range(out):
        t0, t1 = max(0, pad - o * stride), min(taps - 1, size - 1 + pad - o * stride)
        if segs and segs[-1][2:] == (t0, t1) and segs[-1][1] == o - 1:
            segs[-1] = (segs[-1][0], o, t0, t1)
        else:
            segs.append((o, o, t0, t1))
    return segs


def tap_conv(x, w, b, stride: int, pad: int):
    """A channels-last convolution (``x`` [N, *spatial, C_in], ``w`` [*taps, C_in,
    C_out], symmetric zero padding ``pad``) without a convolution op: the outputs
    are split into regions that see the same real (not padding) kernel taps (the
    interior, the border strips, the corners); each region is one im2col matmul
    over its real taps only, and the regions are concatenated back. The same
    function as ``lax.conv_general_dilated`` (float tolerance). XLA:CPU runs
    convolutions several times slower inside loop bodies (jax-ml/jax#12868,
    ``bench_conv_loops.py``); matmuls are not slowed. Its matmuls multiply no
    padding zeros, so the FLOP meter bills it exactly what it bills the
    convolution (2 x real multiply-adds; ``tests/test_speed_conv.py``)."""
    dims = x.ndim - 2
    taps, sizes = w.shape[:dims], x.shape[1:1 + dims]
    out = [(sizes[d] + 2 * pad - taps[d]) // stride + 1 for d in range(dims)]
    segs = [_segments(sizes[d], taps[d], stride, pad, out[d]) for d in range(dims)]
    w2 = lambda ranges: w[tuple(slice(t0, t1 + 1) for t0, t1 in ranges)].reshape(-1, w.shape[-1])  # noqa: E731

    def region(combo):
        """Outputs of one combination of per-dimension segments: [N, *lengths, C_out]."""
        cols = []
        for tap in itertools.product(*(range(t0, t1 + 1) for _, _, t0, t1 in combo)):
            sl = [slice(None)]
            for (o0, o1, _, _), t in zip(combo, tap):
                start = o0 * stride + t - pad
                sl.append(slice(start, start + (o1 - o0) * stride + 1, stride))
            cols.append(x[tuple(sl)])
        patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, -1)
        return patches @ w2([(t0, t1) for _, _, t0, t1 in combo])

    def build(d, prefix):
        parts = [build(d + 1, prefix + (sg,)) if d + 1 < dims else region(prefix + (sg,)) for sg in segs[d]]
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1 + d)
    return build(0, ()) + b


class TapConv(nn.Module):
    """``nn.Conv``'s parameters (same names, shapes and initialisers: the same
    initial weights), computed with :func:`tap_conv`."""
    features: int
    kernel: int
    stride: int
    dims: int
    pad: int = 1

    @nn.compact
    def __call__(self, x):
        w = self.param("kernel", nn.initializers.lecun_normal(),
                       (self.kernel,) * self.dims + (x.shape[-1], self.features))
        b = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return tap_conv(x, w, b, self.stride, self.pad)


# How the zoo CNNs compute their convolutions: "taps" (tap_conv: fast inside the
# training loops on CPU) or "xla" (lax.conv). Same parameters, same function,
# same billed FLOPs.
CONV_IMPL = "taps"


class CNNBody(nn.Module):
    """Strided conv stack (1-D for sequences, 2-D for images) then flatten.
    ``convs`` are (channels, kernel, stride) triples; ``impl``: see ``CONV_IMPL``."""
    convs: Sequence[tuple]
    dims: int  # 1 or 2 spatial dims
    dense: int = 0
    impl: str = CONV_IMPL

    @nn.compact
    def __call__(self, x):
        x = x.astype(jnp.float32)
        if x.ndim == self.dims + 1:  # no channel axis
            x = x[..., None]
        for i, (ch, k, s) in enumerate(self.convs):
            if self.impl == "taps":
                conv = TapConv(ch, k, s, self.dims, name=f"Conv_{i}")
            else:
                conv = nn.Conv(ch, (k,) * self.dims, strides=(s,) * self.dims, padding=[(1, 1)] * self.dims)
            x = nn.relu(conv(x))
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
        dense: int = 0, width: float = 1.0, impl: str | None = None) -> api.ModelDef:
    """Strided ReLU CNN over 1-D sequences (input (L,)) or images (H, W[, C]).
    ``impl``: "taps" or "xla" (default ``CONV_IMPL``); not part of the name."""
    dims = 1 if len(input_shape) == 1 else 2
    chs = tuple(max(1, int(round(c * width))) for c in channels)
    convs = tuple(zip(chs, kernels, strides))
    return _modeldef(f"cnn{dims}d-{'x'.join(map(str, chs))}", CNNBody(convs, dims, dense, impl or CONV_IMPL), classes,
                     input_shape, {"family": "cnn", "channels": chs, "width": width, "dense": dense})


def linear(classes: int, input_shape) -> api.ModelDef:
    """Multinomial logistic regression (an MLP with no hidden layer)."""
    m = mlp(classes, input_shape, hidden=())
    return api.ModelDef("linear", m.init, m.apply, stages=m.stages, run=m.run,
                        info=dict(m.info, family="linear"))
