"""FedAvg (McMahan et al., AISTATS 2017) and FedProx (Li et al., MLSys 2020).

Every client trains ``view.models['edge']`` (all tiers alike) from the global
weights with local SGD; the cloud averages the uplinked weights, weighted by
the example counts the clients report (``Round.examples``). Wire per client
and round: the model down, the model up (plus the harness's 8-byte report).
FedProx adds (mu / 2) ||w - w_global||^2 to the local loss. A client keeps its
last locally trained model as its personal edge model.

Stragglers (tasks with ``view.stragglers > 0``): as in the FedProx paper,
FedAvg drops clients that did not finish their local work (``drop_stragglers``)
while FedProx aggregates their partial work. The cloud compares each client's
reported step count (``Round.local_steps``) with the task's step budget
min(max_local_steps, ceil(epochs * n / batch)).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lsbench import api
from baselines._train_common import make_optimizer, opt_step, prox_term, supervised_loss, weighted_average


class FedAvg(api.TrainMethod):
    manifest = api.Manifest(
        name="fedavg", tracks=("train",), description="federated averaging of the edge model",
        paper="McMahan et al., Communication-Efficient Learning of Deep Networks from "
              "Decentralized Data, AISTATS 2017")
    default_hparams = {"lr": 0.05, "momentum": 0.9, "mu": 0.0, "drop_stragglers": True}
    sweep = ({"lr": 0.02}, {"lr": 0.05}, {"lr": 0.1})

    @property
    def model(self):
        return self.view.models["edge"]

    def _tx(self):
        return make_optimizer(self.hp)

    # cloud
    def cloud_setup(self, rng):
        return self.model.init(rng)

    # edge
    def edge_setup(self, rng):
        return self.model.init(rng)

    # cloud
    def cloud_downlink(self, cloud, tier, ids):
        return cloud

    # edge
    def client_init(self, edge_state, down, rng):
        return {"params": down, "opt": self._tx().init(down), "anchor": down}

    def client_step(self, cs, batch, rng):
        base = supervised_loss(self.model.apply)
        mu = float(self.hp.get("mu", 0.0))
        loss_fn = (lambda p, b: base(p, b) + prox_term(p, cs["anchor"], mu)) if mu > 0 else base
        params, opt, loss = opt_step(self._tx(), cs["params"], cs["opt"], batch, loss_fn)
        return {"params": params, "opt": opt, "anchor": cs["anchor"]}, loss

    def client_final(self, cs, edge_state, rng):
        return cs["params"], cs["params"]

    # cloud
    def expected_steps(self, n):
        """The task's local step budget for clients with ``n`` examples."""
        v = self.view
        steps = jnp.ceil(float(v.local_epochs) * n / int(v.batch_size))
        return jnp.maximum(jnp.minimum(steps, int(v.max_local_steps)), 1)

    def cloud_update(self, cloud, rnd: api.Round, rng):
        if not self.view.stragglers > 0:
            return weighted_average(rnd.messages, rnd.examples)
        w = jnp.asarray(rnd.examples, jnp.float32)
        if self.hp.get("drop_stragglers", False):
            w = w * (rnd.local_steps >= self.expected_steps(w))
        avg = weighted_average(rnd.messages, w)
        # keep the old model when every sampled client straggled
        return jax.tree_util.tree_map(lambda a, c: jnp.where(w.sum() > 0, a, c), avg, cloud)

    # evaluation
    def predict_edge(self, edge_state, x):
        return self.model.apply(edge_state, x)

    def predict_global_edge(self, cloud, x):
        return self.model.apply(cloud, x)


class FedProx(FedAvg):
    manifest = api.Manifest(
        name="fedprox", tracks=("train",), description="FedAvg with a proximal term mu",
        paper="Li et al., Federated Optimization in Heterogeneous Networks, MLSys 2020")
    default_hparams = {"lr": 0.05, "momentum": 0.9, "mu": 0.01, "drop_stragglers": False}
    sweep = ({"mu": 0.001}, {"mu": 0.01}, {"mu": 0.1}, {"mu": 1.0})
