"""FedDF: ensemble distillation for model fusion (Lin, Kong, Stich & Jaggi, NeurIPS 2020).

Clients train like FedAvg, each from the cloud's prototype of its own
architecture (tier ``t`` uses ``ctx.models['edge/<t>']``, so prototypes may be
heterogeneous), and send their weights back. The cloud first averages each
prototype over its clients (example-weighted), then builds the teacher: the
mean logits of *all* received client models on a window of the unlabelled
public split. It distils the teacher into every prototype (Adam,
``distill_steps`` steps, T = ``T``) and, as the large-small variant, into the
cloud's large model (``ctx.models['cloud']``, ``cloud_steps`` steps), which
is reported as ``cloud_accuracy``. All distillation FLOPs are cloud FLOPs.

Deviation: a fixed step budget replaces the paper's early stopping on a
validation split. Wire per client per round: its prototype down and up (4P_t).
"""
import jax
import jax.numpy as jnp

from baselines import _distill as kd
from baselines._train_common import LocalSGDClient, make_optimizer, soft_xent, weighted_average
from lsbench import api

tmap = jax.tree_util.tree_map


class FedDF(LocalSGDClient, api.TrainMethod):
    manifest = api.Manifest(
        name="feddf", tracks=("train",), description="FedAvg per prototype + server ensemble distillation",
        paper="Lin, Kong, Stich & Jaggi, Ensemble Distillation for Robust Model Fusion in Federated "
              "Learning, NeurIPS 2020")
    default_hparams = {"lr": 0.05, "momentum": 0.9, "n_pub": 2000, "distill_steps": 50,
                       "cloud_steps": 50, "distill_batch": 64, "distill_lr": 1e-3, "T": 1.0}
    sweep = ({"distill_steps": 0}, {"cloud_steps": 300})

    def __init__(self, ctx, hp):
        super().__init__(ctx, hp)
        self.xpub = kd.need_public(ctx, "feddf")
        self.n_pub = int(min(self.hp["n_pub"], self.xpub.shape[0]))
        self.tiers = tuple(ctx.extras.get("tiers", ())) or ("edge",)
        self.models = {t: kd.model_for(ctx, t) for t in self.tiers}
        self.tx = make_optimizer(self.hp)
        self.tx_kd = make_optimizer({"lr": self.hp["distill_lr"], "optimizer": "adam"})

    def _model_of(self, params):
        shapes = tmap(jnp.shape, params)
        for m in self.models.values():
            if tmap(jnp.shape, jax.eval_shape(m.init, jax.random.PRNGKey(0))) == shapes:
                return m
        return self.ctx.models["edge"]

    def init(self, rng):
        ks = jax.random.split(rng, len(self.tiers) + 1)
        return {"proto": {t: self.models[t].init(k) for t, k in zip(self.tiers, ks)},
                "cloud": self.ctx.models["cloud"].init(ks[-1]), "r": jnp.int32(0)}

    def init_edge(self, tier, rng):
        return self.models[tier].init(rng)

    def cloud_downlink(self, cloud, tier, ids):
        return cloud["proto"][tier]

    def cloud_update(self, cloud, uplinks, weights, ids, rng):
        xw = self.xpub[kd.public_window(cloud["r"], self.n_pub, self.xpub.shape[0])]
        # teacher: mean logits of every received client model on the public window
        logits = [jax.vmap(lambda p: kd.predict_rows(self.models[t].apply, p, xw))(up)
                  for t, up in uplinks.items()]
        teacher = jnp.concatenate(logits).mean(0)
        T, B = float(self.hp["T"]), int(self.hp["distill_batch"])
        keys = jax.random.split(rng, len(self.tiers) + 1)
        proto = dict(cloud["proto"])
        for t, k in zip(self.tiers, keys):
            if t not in uplinks:
                continue
            avg = weighted_average(uplinks[t], weights[t])
            apply = self.models[t].apply
            proto[t] = kd.fit(self.tx_kd, avg, lambda p, i, m: soft_xent(apply(p, xw[i]), teacher[i], T=T),
                              self.n_pub, int(self.hp["distill_steps"]), B, k)
        capply = self.ctx.models["cloud"].apply
        big = kd.fit(self.tx_kd, cloud["cloud"], lambda p, i, m: soft_xent(capply(p, xw[i]), teacher[i], T=T),
                     self.n_pub, int(self.hp["cloud_steps"]), B, keys[-1])
        return {"proto": proto, "cloud": big, "r": cloud["r"] + 1}

    def predict_edge(self, params, x):
        return self._model_of(params).apply(params, x)

    def predict_global_edge(self, cloud, x):
        t = max(self.tiers, key=lambda t: sum(a.size for a in jax.tree_util.tree_leaves(
            jax.eval_shape(self.models[t].init, jax.random.PRNGKey(0)))))
        return self.models[t].apply(cloud["proto"][t], x)

    def predict_cloud(self, cloud, x):
        return self.ctx.models["cloud"].apply(cloud["cloud"], x)
