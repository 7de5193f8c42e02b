"""FedAvg in one short file: a complete training-track method on plugin API v2.

Try it:
    lsbench run --task=train/digits --method=examples/train_fedavg_minimal.py --workdir=runs/ex
    lsbench check --method=examples/train_fedavg_minimal.py

How the harness uses this class (you write pure functions; it does the rest):
  * It builds the class once per *side*: ``Cls(cloud_view, hp)`` for the cloud and
    ``Cls(edge_view, hp)`` once per capacity tier for the edges. ``self.view`` is that
    side's read-only view of the task (``api.TrainView``): model architectures
    (``view.models``), protocol sizes (``view.batch_size``, ``view.local_epochs``, ...),
    and the edge's tier (``view.tier``). No side sees the other's data or state.
  * Every function below runs on one side only (``api.SIDES["train"]``), traced alone
    into a sealed program. The only values that cross between the sides are the
    messages you return, and the harness's channel meters them (bytes, exactly).
  * Setup (``cloud_setup``, ``edge_setup``) and every round are metered: FLOPs per
    side from the programs themselves, bytes from the channel. You never report costs.
  * Keep the constructor free of array work (it is refused); do it in setup.

One round: cloud_downlink -> channel -> for each sampled client (vmapped): client_init,
client_step per local batch (a lax.scan), client_final -> channel -> cloud_update.
"""
import jax
import jax.numpy as jnp

from lsbench import api


def xent(logits, y, mask):
    """Mean cross-entropy over the real rows of a batch (``mask``: padding is False)."""
    logp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]
    return jnp.sum(nll * mask) / jnp.maximum(mask.sum(), 1)


class MinimalFedAvg(api.TrainMethod):
    # What the method is; applies_to=() means every training task.
    manifest = api.Manifest(name="fedavg-minimal", tracks=("train",),
                            description="FedAvg in one short file (examples/)",
                            paper="McMahan et al., AISTATS 2017")
    # Hyper-parameters: static Python values, read as self.hp[...]; override with --hparams.
    default_hparams = {"lr": 0.1}

    @property
    def model(self):
        # The task's edge model (an api.ModelDef: init(rng) -> params, apply(params, x) -> logits).
        # Every tier trains the same full-width model here; see baselines/heterofl.py for tiers.
        return self.view.models["edge"]

    # ---------------------------------------------------------------- setup
    def cloud_setup(self, rng):
        """(cloud) The cloud state before round 1: the global model."""
        return self.model.init(rng)

    def edge_setup(self, rng):
        """(edge) One client's persistent state: its personal model (its last local one)."""
        return self.model.init(rng)

    # ---------------------------------------------------------------- a round
    def cloud_downlink(self, cloud, tier, client_ids):
        """(cloud) What the tier's sampled clients receive: the global model, broadcast
        (billed once per receiving client)."""
        return cloud

    def client_init(self, edge_state, down, rng):
        """(edge) The local training carry: start from the delivered global model."""
        return down

    def client_step(self, params, batch, rng):
        """(edge) One SGD step on ``batch = {'x', 'y', 'mask'}``; returns (carry, loss)."""
        loss, grads = jax.value_and_grad(
            lambda p: xent(self.model.apply(p, batch["x"]), batch["y"], batch["mask"]))(params)
        return jax.tree_util.tree_map(lambda p, g: p - self.hp["lr"] * g, params, grads), loss

    def client_final(self, params, edge_state, rng):
        """(edge) (new persistent edge state, uplink): keep the local model, send it up."""
        return params, params

    def cloud_update(self, cloud, rnd: api.Round, rng):
        """(cloud) Average the delivered models, weighted by the example counts the
        clients reported. ``rnd.messages`` stacks every client's uplink along axis 0
        (all tiers here share one model; tiers with different shapes arrive as a
        {tier: stacked} mapping)."""
        w = rnd.examples / rnd.examples.sum()
        return jax.tree_util.tree_map(lambda u: jnp.tensordot(w, u, axes=1), rnd.messages)

    # ---------------------------------------------------------------- evaluation (not metered)
    def predict_edge(self, params, x):
        """(edge) A client's own model: edge_personal_accuracy."""
        return self.model.apply(params, x)

    def predict_global_edge(self, cloud, x):
        """(cloud) The global model: edge_accuracy."""
        return self.model.apply(cloud, x)
