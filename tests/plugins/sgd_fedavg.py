"""A minimal FedAvg written as an outside plugin, against lsbench.api only."""
import jax
import jax.numpy as jnp

from lsbench import api


def _xent(logits, y, mask):
    lp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(lp, y[:, None], -1)[:, 0]
    return jnp.sum(nll * mask) / jnp.maximum(mask.sum(), 1)


class TinyFedAvg(api.TrainMethod):
    manifest = api.Manifest(name="tiny-fedavg", tracks=("train",), description="FedAvg, plugin example")
    default_hparams = {"lr": 0.5}
    sweep = ({"lr": 0.1}, {"lr": 0.5})

    # cloud
    def cloud_setup(self, rng):
        return self.view.models["edge"].init(rng)

    # edge
    def edge_setup(self, rng):
        return self.view.models["edge"].init(rng)

    # cloud
    def cloud_downlink(self, cloud, tier, ids):
        return cloud

    # edge
    def client_init(self, edge_state, down, rng):
        return down

    def client_step(self, params, batch, rng):
        apply = self.view.models["edge"].apply
        loss, g = jax.value_and_grad(lambda p: _xent(apply(p, batch["x"]), batch["y"], batch["mask"]))(params)
        return jax.tree_util.tree_map(lambda p, d: p - self.hp["lr"] * d, params, g), loss

    def client_final(self, params, edge_state, rng):
        return params, params

    # cloud
    def cloud_update(self, cloud, rnd, rng):
        w = rnd.examples / rnd.examples.sum()   # every tier's clients, stacked (one edge model)
        return jax.tree_util.tree_map(lambda u: jnp.tensordot(w, u, 1), rnd.messages)

    # evaluation
    def predict_edge(self, params, x):
        return self.view.models["edge"].apply(params, x)

    def predict_global_edge(self, cloud, x):
        return self.view.models["edge"].apply(cloud, x)
