"""Local-only reference: each client trains its own edge model on its own data
and never communicates (zero bytes of its own; the harness still bills each
client's 8-byte report of its example and step counts). ``edge_accuracy`` is the mean over
clients of each client's model on the global test set (no global model)."""
from __future__ import annotations

import jax.numpy as jnp

from lsbench import api
from baselines._train_common import make_optimizer, opt_step, supervised_loss


class Local(api.TrainMethod):
    manifest = api.Manifest(name="local", tracks=("train",), reference="local",
                            description="every client trains alone; no communication")
    default_hparams = {"lr": 0.05, "momentum": 0.9}
    sweep = ({"lr": 0.02}, {"lr": 0.05}, {"lr": 0.1})

    @property
    def model(self):
        return self.view.models["edge"]

    # cloud
    def cloud_setup(self, rng):
        return {"round": jnp.zeros((), jnp.int32)}

    # edge
    def edge_setup(self, rng):
        return self.model.init(rng)

    def cloud_downlink(self, cloud, tier, ids):
        return {}

    def client_init(self, edge_state, down, rng):
        return {"params": edge_state, "opt": make_optimizer(self.hp).init(edge_state)}

    def client_step(self, cs, batch, rng):
        params, opt, loss = opt_step(make_optimizer(self.hp), cs["params"], cs["opt"], batch,
                                     supervised_loss(self.model.apply))
        return {"params": params, "opt": opt}, loss

    def client_final(self, cs, edge_state, rng):
        return cs["params"], {}

    def cloud_update(self, cloud, rnd, rng):
        return {"round": cloud["round"] + 1}

    def predict_edge(self, edge_state, x):
        return self.model.apply(edge_state, x)
