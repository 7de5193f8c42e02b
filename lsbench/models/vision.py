"""Vision reference models for the inference track (``shapes`` tasks).

Three Flax CNNs on uint8 32x32x3 images, each a list of named *stages*
(``ModelDef.stages``) so a model can be cut anywhere: ``ModelDef.run(params,
x, start, stop)`` runs the stages after ``start`` up to and including ``stop``
(``"input"`` is the raw uint8 image, ``"logits"`` the output).

- ``edge_cnn``: small (2 convs, ~1 MFLOP): the device's own model.
- ``cloud_cnn``: larger (3 convs + MLP head, ~4.6 MFLOP) with split points
  conv1 (32x32x16), pool1 (16x16x16), pool2 (8x8x32), pool3 (4x4x32).
- ``multi_exit``: convs to pool2 (8x8x16) on the edge with an early exit
  there (``exit1``), then conv + MLP to the final exit in the cloud;
  ``exit_model(multi_exit())`` is the early-exit branch as a model of its own
  (stages ``input .. pool2, logits``; same params).

``stage_table(model)`` gives each stage's output shape and matmul FLOPs
(1 multiply-add = 2 FLOPs; the FLOP meter's convention: conv taps that land
on padding are not counted), for methods that model latency per split.
``stage_params(model, params, stop)`` is the subset of the params that runs
the stages up to ``stop`` (what a split or early-exit method ships to the edge).
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsbench import api

IMAGE = (32, 32, 3)


def to_float(x):
    """uint8 pixels -> float32 in [-0.5, 0.5]; float inputs pass through."""
    if jnp.issubdtype(x.dtype, jnp.integer):
        return x.astype(jnp.float32) / 255.0 - 0.5
    return x


def _pool(h):
    return nn.max_pool(h, (2, 2), (2, 2))


def _flat(h):
    return h.reshape((h.shape[0], -1))


class Staged(nn.Module):
    """A CNN of named stages. ``convs``: (stage name, channels, pool after);
    ``hidden``: optional MLP width before the logits; ``exit_at``: a stage
    with an early-exit head (2x2 max-pool, flatten, dense)."""
    convs: Sequence[tuple]
    hidden: int = 0
    classes: int = 10
    exit_at: str = ""

    def setup(self):
        self.conv = {name: nn.Conv(ch, (3, 3), padding="SAME", name=name)
                     for name, ch, _ in self.convs if ch}
        self.fc = nn.Dense(self.hidden, name="fc") if self.hidden else None
        self.out = nn.Dense(self.classes, name="out")
        self.exit = nn.Dense(self.classes, name="exit1") if self.exit_at else None

    def names(self) -> tuple:
        return stage_names(self)

    def _stage(self, i, h):
        names = self.names()
        name = names[i]
        if i <= len(self.convs):
            _, ch, pool = self.convs[i - 1]
            if i == 1:
                h = to_float(h)
            if ch:
                h = nn.relu(self.conv[name](h))
            return _pool(h) if pool else h
        if name == "fc":
            return nn.relu(self.fc(_flat(h)))
        return self.out(_flat(h))

    def __call__(self, x, start="input", stop="logits"):
        names = self.names()
        if start not in names or stop not in names or names.index(stop) < names.index(start):
            raise ValueError(f"cannot run stages {start}->{stop}; stages are {names}")
        h = x
        for i in range(names.index(start) + 1, names.index(stop) + 1):
            h = self._stage(i, h)
        return h

    def early_exit(self, h):
        return self.exit(_flat(_pool(h)))

    def init_all(self, x):
        h = self(x, "input", self.exit_at) if self.exit_at else None
        if h is not None:
            self.early_exit(h)
        return self(x)


def stage_names(m: Staged) -> tuple:
    return ("input",) + tuple(n for n, _, _ in m.convs) + (("fc",) if m.hidden else ()) + ("logits",)


def _def(name: str, module: Staged, info: dict) -> api.ModelDef:
    x0 = jnp.zeros((1,) + IMAGE, jnp.uint8)

    def init(rng):
        return module.init(rng, x0, method=Staged.init_all)["params"]

    def run(p, x, start="input", stop="logits"):
        return module.apply({"params": p}, x, start, stop)

    # info: documented facts (the cache recipe hashes its int/str/tuple entries);
    # ``module`` is the Flax module itself.
    return api.ModelDef(name=name, init=init, apply=lambda p, x: run(p, x),
                        stages=stage_names(module), run=run, info=dict(info, module=module))


def exit_model(me: api.ModelDef) -> api.ModelDef:
    """The early-exit branch of a multi-exit model as a model of its own: stages
    ``input`` .. ``exit_at`` then ``logits`` (the exit head); it runs on the same
    params (only the prefix stages and ``exit1`` are read)."""
    at, module = me.info["exit_at"], me.info["module"]
    names = me.stages[: me.stages.index(at) + 1] + ("logits",)

    def run(p, x, start="input", stop="logits"):
        if start not in names or stop not in names or names.index(stop) < names.index(start):
            raise ValueError(f"cannot run stages {start}->{stop}; stages are {names}")
        if start == "logits":
            return x
        h = me.run(p, x, start, at if stop == "logits" else stop)
        return module.apply({"params": p}, h, method=Staged.early_exit) if stop == "logits" else h

    return api.ModelDef(name=f"{me.name}/exit1", init=me.init, apply=lambda p, x: run(p, x),
                        stages=names, run=run, info=dict(me.info, exit_of=me.name))


def stage_params(model: api.ModelDef, params, stop: str) -> dict:
    """The params that run ``model`` from ``input`` up to ``stop`` (a stage name;
    for an ``exit_model``, ``logits`` includes the exit head ``exit1``)."""
    names = model.stages
    keep = set(names[1: names.index(stop) + 1])
    if "exit_of" in model.info and stop == "logits":
        keep = set(names[1:-1]) | {"exit1"}
    keep = {"out" if k == "logits" else k for k in keep}
    return {k: v for k, v in params.items() if k in keep}


def edge_cnn(classes: int = 10, widths=(8, 16)) -> api.ModelDef:
    m = Staged(convs=(("pool1", widths[0], True), ("pool2", widths[1], True)), classes=classes)
    return _def("edge-cnn", m, {"default_split": "pool2", "widths": tuple(widths)})


def cloud_cnn(classes: int = 10, widths=(16, 32, 32), hidden: int = 128) -> api.ModelDef:
    m = Staged(convs=(("conv1", widths[0], False), ("pool1", 0, True), ("pool2", widths[1], True),
                      ("pool3", widths[2], True)), hidden=hidden, classes=classes)
    return _def("cloud-cnn", m, {"default_split": "pool3", "widths": tuple(widths), "hidden": hidden,
                                 "split_points": ("input", "conv1", "pool1", "pool2", "pool3")})


def multi_exit(classes: int = 10, widths=(16, 16, 32), hidden: int = 128) -> api.ModelDef:
    m = Staged(convs=(("pool1", widths[0], True), ("pool2", widths[1], True), ("pool3", widths[2], True)),
               hidden=hidden, classes=classes, exit_at="pool2")
    return _def("multi-exit", m, {"default_split": "pool2", "exit_at": "pool2", "widths": tuple(widths),
                                  "hidden": hidden})


def stage_table(model: api.ModelDef) -> dict:
    """{stage: {"shape": output shape per example, "flops": matmul FLOPs of the
    stage per example}}; ``flops`` counts convs and dense layers only."""
    m, run = model.info["module"], model.run
    p = jax.eval_shape(model.init, jax.ShapeDtypeStruct((2,), jnp.uint32))  # abstract: no array work
    names = model.stages
    x = jax.ShapeDtypeStruct((1,) + IMAGE, jnp.uint8)
    shapes = {"input": IMAGE}
    for a, b in zip(names, names[1:]):
        x = jax.eval_shape(lambda p, h: run(p, h, a, b), p, x)
        shapes[b] = tuple(x.shape[1:])
    out = {"input": {"shape": IMAGE, "flops": 0}}
    for i, name in enumerate(names[1:], 1):
        prev = shapes[names[i - 1]]
        if name in p and "kernel" in p[name] and len(p[name]["kernel"].shape) == 4:
            kh, kw, cin, cout = p[name]["kernel"].shape
            f = 2 * cin * cout * _same_taps(prev[0], kh) * _same_taps(prev[1], kw)
        elif name == "fc":
            f = 2 * math.prod(prev) * m.hidden
        elif name == "logits":
            f = 2 * math.prod(prev) * m.classes
        else:
            f = 0
        out[name] = {"shape": shapes[name], "flops": int(f)}
    return out


def _same_taps(n: int, k: int) -> int:
    """(output position, tap) pairs of a stride-1 SAME conv along a dimension of
    size n that land on a real input element (taps on padding are free)."""
    lo = (k - 1) // 2
    return sum(1 for o in range(n) for j in range(k) if 0 <= o + j - lo < n)


def prefix_flops(model: api.ModelDef, stop: str) -> int:
    t, names = stage_table(model), model.stages
    return sum(t[n]["flops"] for n in names[: names.index(stop) + 1])


def xent(logits, y):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))


def fit(loss_fn, params, x, y, *, epochs: int, batch: int, lr: float, seed: int, desc: str = "",
        stats: dict | None = None):
    """Adam on ``loss_fn(params, xb, yb)`` over seeded permutations (the tail that
    does not fill a batch is dropped), one jitted step per batch. (A ``lax.scan``
    over an epoch ran 6-8x slower on CPU: XLA's convolutions inside a loop body
    take a slow path.) Shows progress; ``stats`` gets ``steps`` and ``flops`` (the
    FLOP meter's count of one step, times the steps)."""
    from lsbench.harness import progress
    from lsbench.metering.flops import count_jaxpr
    steps = len(y) // batch
    tx = optax.adam(optax.cosine_decay_schedule(lr, epochs * steps))
    opt = tx.init(params)

    def step(p, o, xb, yb):
        loss, g = jax.value_and_grad(loss_fn)(p, xb, yb)
        upd, o = tx.update(g, o, p)
        return optax.apply_updates(p, upd), o, loss

    if stats is not None:
        one = count_jaxpr(jax.make_jaxpr(step)(params, opt, x[:batch], y[:batch]))
        stats.update(steps=epochs * steps, flops=int(one.matmul) * epochs * steps)
    jstep = jax.jit(step)
    rng = np.random.default_rng(seed)
    with progress.Bar(epochs * steps, desc=f"training {desc or 'model'}", unit="step") as bar:
        for e in range(epochs):
            idx = rng.permutation(len(y))[: steps * batch].reshape(steps, batch)
            for i, b in enumerate(idx):
                params, opt, loss = jstep(params, opt, x[b], y[b])
                bar.update(1, **({"epoch": e + 1, "loss": float(loss)} if i == steps - 1 else {}))
    return params


def train_classifier(model: api.ModelDef, x, y, *, epochs=8, batch=128, lr=2e-3, seed=0,
                     exit_weight=0.5, stats: dict | None = None):
    """Trains a model (and its early exit, weighted ``exit_weight``) from scratch."""
    run, at = model.run, model.info.get("exit_at")
    ex = exit_model(model).run if at else None

    def loss(p, xb, yb):
        if ex is None:
            return xent(run(p, xb), yb)
        h = run(p, xb, "input", at)
        return xent(run(p, h, at, "logits"), yb) + exit_weight * xent(ex(p, h, at, "logits"), yb)
    params = model.init(jax.random.PRNGKey(seed))
    return fit(loss, params, x, y, epochs=epochs, batch=batch, lr=lr, seed=seed, desc=model.name,
               stats=stats)


def predict(fn, params, x, batch: int = 1000):
    """argmax of ``fn(params, xb)`` over x in batches (numpy int32)."""
    f = jax.jit(fn)
    return np.concatenate([np.asarray(jnp.argmax(f(params, jnp.asarray(x[i:i + batch])), -1))
                           for i in range(0, len(x), batch)]).astype(np.int32)
