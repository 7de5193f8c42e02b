"""Centralized reference: all training data pooled in one place (``pooled``:
the harness makes a single client of every client's data), training the edge
model and the cloud model side by side. Not a collaboration method; its bytes
only reflect moving the two models to and from the pooled trainer.
``train_cloud=False`` trains the edge model alone (no ``cloud_accuracy``): the
pooled client runs one epoch of all data per round, which is costly for a
large cloud CNN on the larger tasks."""
from __future__ import annotations

import jax

from lsbench import api
from baselines._train_common import make_optimizer, opt_step, supervised_loss



class Centralized(api.TrainMethod):
    manifest = api.Manifest(name="centralized", tracks=("train",), reference="centralized",
                            description="pooled-data training of the edge and the cloud model")
    default_hparams = {"lr": 0.003, "optimizer": "adam", "train_cloud": True}
    sweep = ({"lr": 0.001}, {"lr": 0.003}, {"lr": 0.01})
    pooled = True

    @property
    def roles(self):
        return ("edge", "cloud") if self.hp.get("train_cloud", True) else ("edge",)

    # cloud
    def cloud_setup(self, rng):
        return {r: self.view.models[r].init(rng) for r in self.roles}

    # edge
    def edge_setup(self, rng):
        return self.view.models["edge"].init(rng)

    def cloud_downlink(self, cloud, tier, ids):
        return cloud

    def client_init(self, edge_state, down, rng):
        tx = make_optimizer(self.hp)
        return {"params": down, "opt": {r: tx.init(down[r]) for r in self.roles}}

    def client_step(self, cs, batch, rng):
        tx, params, opt, total = make_optimizer(self.hp), {}, {}, 0.0
        for r in self.roles:
            params[r], opt[r], loss = opt_step(tx, cs["params"][r], cs["opt"][r], batch,
                                               supervised_loss(self.view.models[r].apply))
            total = total + loss
        return {"params": params, "opt": opt}, total / len(self.roles)

    def client_final(self, cs, edge_state, rng):
        return cs["params"]["edge"], cs["params"]

    def cloud_update(self, cloud, rnd, rng):
        return jax.tree_util.tree_map(lambda a: a[0], rnd.messages)  # the single pooled client

    def predict_edge(self, edge_state, x):
        return self.view.models["edge"].apply(edge_state, x)

    def predict_global_edge(self, cloud, x):
        return self.view.models["edge"].apply(cloud["edge"], x)

    def predict_cloud(self, cloud, x):
        if "cloud" not in self.roles:
            return None
        return self.view.models["cloud"].apply(cloud["cloud"], x)
