"""A confidence cascade on infer/arith-route-small (inference track, API v2).

The edge answers each query with its own small model. When the model's top
answer has probability below ``tau``, the edge sends the query's tokens up and
the cloud's large model answers instead (one int32 token down).

The harness builds this class twice, once per side, from that side's view: the
edge's holds the edge model's params (``view.params["edge"]``), the cloud's the
cloud model's (``view.params["cloud"]``). Each function below runs on one side
only; what passes between them is what the channel delivers, and it is billed.
Setup is the default: each side keeps its own params, nothing is exchanged.

    lsbench check --method=examples/infer_cascade_minimal.py
    lsbench run --task=infer/arith-route-small --method=examples/infer_cascade_minimal.py
"""
import jax
import jax.numpy as jnp

from lsbench import api


class MinimalCascade(api.InferMethod):
    manifest = api.Manifest(name="minimal-cascade", tracks=("infer",), applies_to=("arith",),
                            description="the edge answers; below confidence tau the cloud does")
    default_hparams = {"tau": 0.8}
    sweep = ({"tau": 0.5}, {"tau": 0.8}, {"tau": 0.95})

    def _answer(self, role, params, x):
        """Logits over the answer digits at the query's last position ('=')."""
        return self.view.models[role].apply(params, x)[:, -1, :self.view.answer_tokens]

    # ---- edge: the batch's carry holds the queries and the current answers ------
    def edge_start(self, edge_state, batch):
        return {"x": batch["x"], "pred": jnp.zeros(batch["x"].shape[:1], jnp.int32)}

    def edge_query(self, edge_state, carry, rng):
        probs = jax.nn.softmax(self._answer("edge", edge_state["edge"], carry["x"]), -1)
        send = probs.max(-1) < self.hp["tau"]            # unsure rows ask the cloud
        carry = dict(carry, pred=jnp.argmax(probs, -1).astype(jnp.int32))
        # Only the rows with send set are carried (4 bytes per token); every row is
        # done after this turn (the sent ones once their reply has arrived).
        return api.Query(carry, uplink={"x": carry["x"]}, send=send, done=jnp.ones_like(send))

    # ---- cloud: answers the rows that arrived (the others are zeros, never delivered)
    def cloud_reply(self, cloud_state, cloud_carry, uplink, rng):
        pred = jnp.argmax(self._answer("cloud", cloud_state["cloud"], uplink["x"]), -1)
        return cloud_carry, {"pred": pred.astype(jnp.int32)}

    # ---- edge: take the cloud's answer where one came ----------------------------
    def edge_receive(self, edge_state, carry, inbox, rng):
        return dict(carry, pred=jnp.where(inbox.got, inbox.msg["pred"], carry["pred"]))

    def finalize(self, edge_state, carry):
        return {"pred": carry["pred"]}
