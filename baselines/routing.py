"""Query routing and cascades for infer/arith-route (RouteLLM, Hybrid LLM, FrugalGPT).

Protocol (two turns): the edge runs its model on the query (``edge_start``),
decides per row whether to call the cloud; turn 0 sends the query tokens
(int32) of those rows; the cloud answers with one int32 token; turn 1 takes
the cloud's answer. A router that sees only the query (random, learned,
oracle) and the confidence cascade differ only in ``route``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lsbench import api
from lsbench.models import transformer as T


def _answer(model: api.ModelDef, params, x, k):
    """Answer logits over the first k tokens at the last query position."""
    return T.apply(T.config_of(model), params, x)[:, -1, :k]


class _Router(api.InferMethod):
    """Shared two-turn protocol; subclasses define ``route``."""

    def _k(self):
        return self.ctx.extras["answer_tokens"]

    def prepare(self, calib, rng):
        return self.ctx.params["edge"], self.ctx.params["cloud"]

    def route(self, es, carry, rng):
        """bool[B]: which rows call the cloud (decided on the first turn)."""
        raise NotImplementedError

    def edge_start(self, es, batch):
        probs = jax.nn.softmax(_answer(self.ctx.models["edge"], es, batch["x"], self._k()), -1)
        B = batch["x"].shape[0]
        carry = {"x": batch["x"], "pred": jnp.argmax(probs, -1).astype(jnp.int32),
                 "conf": probs.max(-1), "asked": jnp.zeros((B,), bool)}
        for k in ("edge_correct", "cloud_correct"):  # present only for the oracle
            if k in batch:
                carry[k] = jnp.asarray(batch[k], bool)
        return carry

    def downlink_like(self, batch_size):
        return {"pred": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}

    def edge_turn(self, es, carry, inbox, rng):
        pred = jnp.where(inbox.got, inbox.msg["pred"], carry["pred"])
        first = ~carry["asked"].any()  # the same for every row: turn 0
        send = first & self.route(es, carry, rng)
        carry = dict(carry, pred=pred, asked=carry["asked"] | send)
        return carry, api.Rows({"x": carry["x"]}, send), send, ~send

    def cloud_turn(self, cs, carry, up, rng):
        x = up.data["x"]
        pred = jnp.argmax(_answer(self.ctx.models["cloud"], cs, x, self._k()), -1)
        return carry, {"pred": pred.astype(jnp.int32)}

    def finalize(self, es, carry):
        return {"pred": carry["pred"]}


class EdgeOnly(_Router):
    manifest = api.Manifest(name="edge-only", tracks=("infer",), reference="edge-only",
                            description="The edge model answers every query.")

    def route(self, es, carry, rng):
        return jnp.zeros_like(carry["asked"])


class CloudOnly(_Router):
    manifest = api.Manifest(name="cloud-only", tracks=("infer",), reference="cloud-only",
                            description="Every query goes to the cloud model.")

    def route(self, es, carry, rng):
        return jnp.ones_like(carry["asked"])


class RouterRandom(_Router):
    manifest = api.Manifest(name="router-random", tracks=("infer",),
                            description="Calls the cloud with probability p (RouteLLM random router).",
                            paper="Ong et al. 2024, RouteLLM")
    default_hparams = {"p": 0.5}
    sweep = tuple({"p": p} for p in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))

    def route(self, es, carry, rng):
        return jax.random.uniform(rng, carry["asked"].shape) < self.hp["p"]


class RouterOracle(_Router):
    manifest = api.Manifest(name="router-oracle", tracks=("infer",), reference="oracle",
                            description="Uses the labels: calls the cloud iff the edge is wrong and "
                                        "the cloud right (an upper bound, never ranked).")

    def route(self, es, carry, rng):
        return ~carry["edge_correct"] & carry["cloud_correct"]


class Cascade(_Router):
    manifest = api.Manifest(name="cascade", tracks=("infer",),
                            description="Confidence cascade: the edge answers; if its max "
                                        "probability is below tau the cloud answers.",
                            paper="Chen, Zaharia, Zou 2023, FrugalGPT")
    default_hparams = {"tau": 0.8}
    sweep = tuple({"tau": t} for t in (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.01))

    def route(self, es, carry, rng):
        return carry["conf"] < self.hp["tau"]


def query_features(x, vocab):
    """Bag of query tokens (normalised counts) plus a bias: float[B, vocab + 1]."""
    counts = jax.nn.one_hot(x, vocab).sum(1) / x.shape[1]
    return jnp.concatenate([counts, jnp.ones((x.shape[0], 1))], 1)


class RouterLearned(_Router):
    manifest = api.Manifest(name="router-learned", tracks=("infer",),
                            description="Logistic regression on query token counts predicting "
                                        "'edge wrong and cloud right', fit in prepare on the "
                                        "calibration split; calls the cloud if P > threshold.",
                            paper="Ding et al. 2024, Hybrid LLM; Ong et al. 2024, RouteLLM")
    default_hparams = {"threshold": 0.5, "steps": 300, "lr": 0.5, "l2": 1e-4}
    sweep = tuple({"threshold": t} for t in (1.01, 0.6, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05, 0.02, 0.0))

    def prepare(self, calib, rng):
        k, V = self._k(), self.ctx.extras["vocab"]
        x, y = calib["x"], calib["y"]
        edge_ok = jnp.argmax(_answer(self.ctx.models["edge"], self.ctx.params["edge"], x, k), -1) == y
        cloud_ok = jnp.argmax(_answer(self.ctx.models["cloud"], self.ctx.params["cloud"], x, k), -1) == y
        target = (~edge_ok & cloud_ok).astype(jnp.float32)
        f = query_features(x, V)

        def loss(w):
            z = f @ w
            return jnp.mean(jnp.logaddexp(0.0, z) - target * z) + self.hp["l2"] * jnp.sum(w * w)

        def step(w, _):
            return w - self.hp["lr"] * jax.grad(loss)(w), None
        w, _ = jax.lax.scan(step, jnp.zeros((V + 1,)), None, length=self.hp["steps"])
        return {"params": self.ctx.params["edge"], "router": w}, self.ctx.params["cloud"]

    def edge_start(self, es, batch):
        carry = super().edge_start(es["params"], batch)
        p = jax.nn.sigmoid(query_features(batch["x"], self.ctx.extras["vocab"]) @ es["router"])
        return dict(carry, p_cloud=p)

    def route(self, es, carry, rng):
        return carry["p_cloud"] > self.hp["threshold"]
