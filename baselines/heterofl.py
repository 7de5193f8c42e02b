"""HeteroFL: heterogeneous clients via width-sliced sub-models (Diao, Ding & Tarokh, ICLR 2021).

The cloud holds one global model: the widest edge architecture among the
task's tiers (``view.models['edge/<tier>']``, whose widths come from
``view.tier_width``). A client of tier t gets the sub-model made of
the *first* entries of every parameter along each axis (the first ⌈r·channels⌉
of every layer), trains it locally with SGD, and sends it back. The cloud
averages every parameter entry over the clients that hold it (example-weighted);
entries no sampled client holds keep their value.

Deviation: no static BN (the zoo models have no BN) and no Scaler module.
Wire per client per round: the tier's sub-model, down and up (≈ r²·4P).
Each edge object trains its own tier's model (``view.tier``).
"""
import functools
import math

import jax
import jax.numpy as jnp

from baselines._train_common import LocalSGDClient, make_optimizer, tier_groups, tier_model
from lsbench import api
from lsbench.task import TaskError

tmap = jax.tree_util.tree_map
KEY = jax.ShapeDtypeStruct((2,), jnp.uint32)


def _shapes(model):
    return tmap(lambda a: tuple(a.shape), jax.eval_shape(model.init, KEY))


def _slice(params, shapes):
    return tmap(lambda a, s: a[tuple(slice(0, n) for n in s)], params, shapes,
                is_leaf=lambda x: isinstance(x, tuple))


class HeteroFL(LocalSGDClient, api.TrainMethod):
    manifest = api.Manifest(
        name="heterofl", tracks=("train",), description="width-sliced sub-models per capacity tier",
        paper="Diao, Ding & Tarokh, HeteroFL: Computation and Communication Efficient Federated "
              "Learning for Heterogeneous Clients, ICLR 2021")
    default_hparams = {"lr": 0.05, "momentum": 0.9}
    sweep = ({"lr": 0.02}, {"lr": 0.1})

    def __init__(self, view, hp):
        super().__init__(view, hp)
        self.tiers = tuple(view.tiers) or ("edge",)
        self.models = {t: tier_model(view, t) for t in self.tiers}
        self.tx = make_optimizer(self.hp)
        _ = self.top  # checks the tiers now (abstract shapes only, no array work)

    @functools.cached_property
    def shapes(self):
        return {t: _shapes(m) for t, m in self.models.items()}

    @functools.cached_property
    def top(self):
        is_shape = lambda x: isinstance(x, tuple)  # noqa: E731
        size = {t: sum(math.prod(s) for s in jax.tree_util.tree_leaves(sh, is_leaf=is_shape))
                for t, sh in self.shapes.items()}
        top = max(self.tiers, key=lambda t: size[t])
        gdef = jax.tree_util.tree_structure(self.shapes[top], is_leaf=is_shape)
        for t, sh in self.shapes.items():
            ok = jax.tree_util.tree_structure(sh, is_leaf=is_shape) == gdef and all(
                len(a) == len(b) and all(x <= y for x, y in zip(a, b)) for a, b in zip(
                    jax.tree_util.tree_leaves(sh, is_leaf=is_shape),
                    jax.tree_util.tree_leaves(self.shapes[top], is_leaf=is_shape)))
            if not ok:
                raise TaskError(f"heterofl: tier '{t}' model is not a width-slice of tier '{top}'; "
                                "give every tier the same architecture with smaller widths")
        return top

    # cloud
    def cloud_setup(self, rng):
        return self.models[self.top].init(rng)

    # edge
    def edge_setup(self, rng):
        return tier_model(self.view).init(rng)

    # cloud
    def cloud_downlink(self, cloud, tier, ids):
        return _slice(cloud, self.shapes[tier])

    def cloud_update(self, cloud, rnd: api.Round, rng):
        total = tmap(jnp.zeros_like, cloud)
        count = tmap(jnp.zeros_like, cloud)
        for tier, up, w in tier_groups(rnd, self.tiers):
            w = jnp.asarray(w, jnp.float32)
            part = tmap(lambda u: jnp.tensordot(w, u.astype(jnp.float32), 1), up)
            idx = tmap(lambda u: tuple(slice(0, n) for n in u.shape[1:]), up)
            total = tmap(lambda t, p, i: t.at[i].add(p), total, part, idx,
                         is_leaf=lambda x: isinstance(x, tuple))
            count = tmap(lambda c, i: c.at[i].add(w.sum()), count, idx, is_leaf=lambda x: isinstance(x, tuple))
        return tmap(lambda g, t, c: jnp.where(c > 0, t / jnp.maximum(c, 1e-12), g).astype(g.dtype),
                    cloud, total, count)

    # evaluation
    def predict_edge(self, params, x):
        return tier_model(self.view).apply(params, x)

    def predict_global_edge(self, cloud, x):
        return self.models[self.top].apply(cloud, x)
