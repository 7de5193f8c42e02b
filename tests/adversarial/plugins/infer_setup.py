"""Hostile inference plugins, route 4: work outside the meter. A router fitted on
the cloud's calibration split in a constructor (formerly free in ``prepare``)
is refused; fitted in ``cloud_setup`` it is metered and billed (router-learned
itself). Refused as well: eager JAX work (``jax.ensure_compile_time_eval``) in the
cloud's constructor with the router left on the class, and the same inside
``cloud_setup``'s trace (both would run outside the meter)."""
import jax
import jax.numpy as jnp
import numpy as np

from baselines.routing import RouterLearned, query_features
from lsbench import api


def _numpy_fit(f, target, steps=300, lr=0.5):
    w = np.zeros(f.shape[1], np.float32)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(f @ w)))
        w -= lr * f.T @ (p - target) / len(target)
    return w.astype(np.float32)


def _cloud_target(view):
    """'The cloud is right' on the calibration split, computed eagerly (outside any trace)."""
    x, y = jnp.asarray(view.calib["x"]), np.asarray(view.calib["y"])
    logits = view.models["cloud"].apply(view.params["cloud"], x)[:, -1, :view.answer_tokens]
    return (np.asarray(jnp.argmax(logits, -1)) == y).astype(np.float32), np.asarray(
        query_features(x, view.vocab))


class _RouterNoSetup(RouterLearned):
    """A query router with no setup exchange: the edge uses ``type(self).w``."""
    manifest = api.Manifest(name="router-no-setup", tracks=("infer",), applies_to=("arith",))
    w = None

    def edge_setup(self, rng):
        return dict(self.view.params), {}

    def cloud_setup(self, uplink, rng):
        return dict(self.view.params), {}

    def edge_install(self, es, package, rng):
        return es

    def route(self, es, carry, rng):
        p = jax.nn.sigmoid(query_features(carry["x"], self.view.vocab) @ jnp.asarray(type(self).w))
        return p < self.hp["threshold"]  # call the cloud where it is likely right... and the edge not


class RouterFitInCtor(_RouterNoSetup):
    """The cloud object fits the router with JAX in its constructor."""
    manifest = api.Manifest(name="router-fit-in-ctor", tracks=("infer",), applies_to=("arith",))

    def __init__(self, view, hp):
        super().__init__(view, hp)
        if view.side == "cloud":
            f = query_features(jnp.asarray(view.calib["x"]), view.vocab)
            type(self).w = jnp.linalg.lstsq(f, jnp.asarray(view.calib["y"], jnp.float32))[0]


class RouterNumpyCtor(_RouterNoSetup):
    """The cloud object fits the router in NumPy in its constructor and keeps it on self."""
    manifest = api.Manifest(name="router-numpy-ctor", tracks=("infer",), applies_to=("arith",))

    def __init__(self, view, hp):
        super().__init__(view, hp)
        if view.side == "cloud":
            f = np.eye(view.vocab, dtype=np.float32)[np.asarray(view.calib["x"])].sum(1)
            self.w = _numpy_fit(np.concatenate([f / f.sum(1, keepdims=True), np.ones((len(f), 1))], 1),
                                (np.asarray(view.calib["y"]) >= 5).astype(np.float32))


class RouterEagerCtorOnClass(_RouterNoSetup):
    """The cloud object runs its model eagerly on the calibration split in its constructor
    (no trace, so no JAX work is seen) and leaves the fitted router on the class."""
    manifest = api.Manifest(name="router-eager-ctor-on-class", tracks=("infer",), applies_to=("arith",))

    def __init__(self, view, hp):
        super().__init__(view, hp)
        if view.side == "cloud":
            with jax.ensure_compile_time_eval():
                target, f = _cloud_target(view)
            type(self).w = _numpy_fit(f, target)


class RouterFitAtTraceTime(RouterLearned):
    """router-learned whose cloud_setup fits eagerly while traced: the package is billed,
    the fit's FLOPs are not in the program."""
    manifest = api.Manifest(name="router-fit-at-trace-time", tracks=("infer",), applies_to=("arith",))

    def cloud_setup(self, uplink, rng):
        with jax.ensure_compile_time_eval():
            target, f = _cloud_target(self.view)
        return dict(self.view.params), {"router": jnp.asarray(_numpy_fit(f, target))}
