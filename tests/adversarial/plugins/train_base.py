"""An honest FedAvg on API v2 that the hostile training plugins subclass: each
overrides one function to try one route around the metered channel."""
import jax
import jax.numpy as jnp

from lsbench import api


def xent(logits, y, mask):
    lp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(lp, y[:, None], -1)[:, 0]
    return jnp.sum(nll * mask) / jnp.maximum(mask.sum(), 1)


class Honest(api.TrainMethod):
    manifest = api.Manifest(name="honest-fedavg", tracks=("train",))
    default_hparams = {"lr": 0.1, "data_dir": ""}

    def apply(self, p, x):
        return self.view.models["edge"].apply(p, x)

    def cloud_setup(self, rng):
        return self.view.models["edge"].init(rng)

    def edge_setup(self, rng):
        return self.view.models["edge"].init(rng)

    def cloud_downlink(self, cloud, tier, ids):
        return cloud

    def client_init(self, edge_state, down, rng):
        return down

    def client_step(self, p, batch, rng):
        loss, g = jax.value_and_grad(lambda q: xent(self.apply(q, batch["x"]), batch["y"], batch["mask"]))(p)
        return jax.tree_util.tree_map(lambda a, b: a - self.hp["lr"] * b, p, g), loss

    def client_final(self, p, edge_state, rng):
        return p, p

    def cloud_update(self, cloud, rnd, rng):
        w = rnd.examples / rnd.examples.sum()
        return jax.tree_util.tree_map(lambda u: jnp.tensordot(w, u, 1), rnd.messages)

    def predict_edge(self, p, x):
        return self.apply(p, x)

    def predict_global_edge(self, cloud, x):
        return self.apply(cloud, x)
