"""FedDF: ensemble distillation for model fusion (Lin, Kong, Stich & Jaggi, NeurIPS 2020).

Clients train like FedAvg, each from the cloud's prototype of its own
architecture (tier ``t`` uses ``view.models['edge/<t>']``, so prototypes may be
heterogeneous), and send their weights back. The cloud first averages each
prototype over its clients (example-weighted), then builds the teacher: the
mean logits of *all* received client models on a window of the unlabelled
public split. It distils the teacher into every prototype (Adam,
``distill_steps`` steps, T = ``T``) and, as the large-small variant, into the
cloud's large model (``view.models['cloud']``, ``cloud_steps`` steps), which
is reported as ``cloud_accuracy``. All distillation FLOPs are cloud FLOPs.
The public split stays on the cloud (the edges never need it).

Deviation: a fixed step budget replaces the paper's early stopping on a
validation split. Wire per client per round: its prototype down and up (4P_t).
"""
import jax
import jax.numpy as jnp

from baselines import _distill as kd
from baselines._train_common import (LocalSGDClient, make_optimizer, soft_xent, tier_groups, tier_model,
                                     weighted_average)
from lsbench import api

tmap = jax.tree_util.tree_map


def _size(model):
    """Parameter count of a ModelDef (abstract: no array work)."""
    shapes = jax.eval_shape(model.init, jax.ShapeDtypeStruct((2,), jnp.uint32))
    return sum(a.size for a in jax.tree_util.tree_leaves(shapes))


class FedDF(LocalSGDClient, api.TrainMethod):
    manifest = api.Manifest(
        name="feddf", tracks=("train",), description="FedAvg per prototype + server ensemble distillation",
        paper="Lin, Kong, Stich & Jaggi, Ensemble Distillation for Robust Model Fusion in Federated "
              "Learning, NeurIPS 2020")
    default_hparams = {"lr": 0.05, "momentum": 0.9, "n_pub": 2000, "distill_steps": 50,
                       "cloud_steps": 50, "distill_batch": 64, "distill_lr": 1e-3, "T": 1.0}
    sweep = ({"distill_steps": 0}, {"cloud_steps": 300})

    def __init__(self, view, hp):
        super().__init__(view, hp)
        kd.need_public(view, "feddf")
        self.tiers = tuple(view.tiers) or ("edge",)
        self.models = {t: tier_model(view, t) for t in self.tiers}
        self.tx = make_optimizer(self.hp)
        self.tx_kd = make_optimizer({"lr": self.hp["distill_lr"], "optimizer": "adam"})

    @classmethod
    def effective_hparams(cls, hp, spec):
        return kd.cap_n_pub(hp, spec)

    @property
    def n_pub(self):
        return int(min(self.hp["n_pub"], len(self.view.public)))

    # cloud
    def cloud_setup(self, rng):
        ks = jax.random.split(rng, len(self.tiers) + 1)
        return {"proto": {t: self.models[t].init(k) for t, k in zip(self.tiers, ks)},
                "cloud": self.view.models["cloud"].init(ks[-1]), "r": jnp.int32(0)}

    # edge
    def edge_setup(self, rng):
        return tier_model(self.view).init(rng)

    # cloud
    def cloud_downlink(self, cloud, tier, ids):
        return cloud["proto"][tier]

    def cloud_update(self, cloud, rnd: api.Round, rng):
        xpub = kd.public_x(self.view, "feddf")
        xw = xpub[kd.public_window(cloud["r"], self.n_pub, xpub.shape[0])]
        groups = tier_groups(rnd, self.tiers)
        # teacher: mean logits of every received client model on the public window
        if len(groups) and groups[0][1] is rnd.messages:   # one stack: every tier has the same shapes
            logits = [jax.vmap(lambda p: kd.predict_rows(self.models[self.tiers[0]].apply, p, xw))(rnd.messages)]
        else:
            logits = [jax.vmap(lambda p: kd.predict_rows(self.models[t].apply, p, xw))(up)
                      for t, up, _ in groups]
        teacher = jnp.concatenate(logits).mean(0)
        T, B = float(self.hp["T"]), int(self.hp["distill_batch"])
        keys = jax.random.split(rng, len(self.tiers) + 1)
        proto = dict(cloud["proto"])
        ups = {t: (up, w) for t, up, w in groups}
        for t, k in zip(self.tiers, keys):
            if t not in ups:
                continue
            avg = weighted_average(*ups[t])
            apply = self.models[t].apply
            proto[t] = kd.fit(self.tx_kd, avg, lambda p, i, m: soft_xent(apply(p, xw[i]), teacher[i], T=T),
                              self.n_pub, int(self.hp["distill_steps"]), B, k)
        capply = self.view.models["cloud"].apply
        big = kd.fit(self.tx_kd, cloud["cloud"], lambda p, i, m: soft_xent(capply(p, xw[i]), teacher[i], T=T),
                     self.n_pub, int(self.hp["cloud_steps"]), B, keys[-1])
        return {"proto": proto, "cloud": big, "r": cloud["r"] + 1}

    # evaluation
    def predict_edge(self, params, x):
        return tier_model(self.view).apply(params, x)

    def predict_global_edge(self, cloud, x):
        t = max(self.tiers, key=lambda t: _size(self.models[t]))
        return self.models[t].apply(cloud["proto"][t], x)

    def predict_cloud(self, cloud, x):
        return self.view.models["cloud"].apply(cloud["cloud"], x)
