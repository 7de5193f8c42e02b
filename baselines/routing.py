"""Query routing and cascades for infer/arith-route (RouteLLM, Hybrid LLM, FrugalGPT).

The edge holds its own model (``view.params['edge']``), the cloud its own
(``view.params['cloud']``) and the calibration split. A query goes up as its
tokens (int32 each, only for the rows that call the cloud); the cloud answers
with one int32 token.

Two protocols:
- the confidence cascade (and edge-only) runs the edge model in turn 0 and
  sends the rows it is unsure about (one turn);
- a router that decides on the query alone (random, learned, oracle, and
  cloud-only) sends its rows in turn 0 without running the edge model; the
  rows it keeps stay active and the edge model answers them in turn 1, so
  its FLOPs are billed to those rows only (the turn-1 carry has a key the
  turn-0 carry lacks, which gives turn 1 its own sealed program).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lsbench import api


def _answer(model: api.ModelDef, params, x, k):
    """Answer logits over the first k tokens at the last query position."""
    return model.apply(params, x)[:, -1, :k]


class _Arith(api.InferMethod):
    """Shared pieces: the edge/cloud models' answers, the cloud's reply, finalize."""

    def _k(self):
        return self.view.answer_tokens

    def _edge_answer(self, es, x):
        logits = _answer(self.view.models["edge"], es["edge"], x, self._k())
        return jnp.argmax(logits, -1).astype(jnp.int32), jax.nn.softmax(logits, -1).max(-1)

    def edge_start(self, es, batch):
        carry = {"x": batch["x"], "pred": jnp.zeros((batch["x"].shape[0],), jnp.int32)}
        for k in ("edge_correct", "cloud_correct"):  # in the batch only for the oracle reference
            if k in batch:
                carry[k] = jnp.asarray(batch[k], bool)
        return carry

    def cloud_reply(self, cs, cc, up, rng):
        pred = jnp.argmax(_answer(self.view.models["cloud"], cs["cloud"], up["x"], self._k()), -1)
        return cc, {"pred": pred.astype(jnp.int32)}

    def edge_receive(self, es, carry, inbox, rng):
        return dict(carry, pred=jnp.where(inbox.got, inbox.msg["pred"], carry["pred"]))

    def finalize(self, es, carry):
        return {"pred": carry["pred"]}


class Cascade(_Arith):
    manifest = api.Manifest(name="cascade", tracks=("infer",), applies_to=("arith",),
                            description="Confidence cascade: the edge answers; if its max "
                                        "probability is below tau the cloud answers.",
                            paper="Chen, Zaharia, Zou 2023, FrugalGPT")
    default_hparams = {"tau": 0.8}
    sweep = tuple({"tau": t} for t in (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.01))

    def edge_query(self, es, carry, rng):
        pred, conf = self._edge_answer(es, carry["x"])
        send = conf < self.hp["tau"]
        return api.Query(dict(carry, pred=pred), {"x": carry["x"]}, send, jnp.ones_like(send))


class EdgeOnly(Cascade):
    manifest = api.Manifest(name="edge-only", tracks=("infer",), applies_to=("arith",),
                            reference="edge-only", description="The edge model answers every query.")
    default_hparams = {}
    sweep = ()

    def edge_query(self, es, carry, rng):
        pred, _ = self._edge_answer(es, carry["x"])
        send = jnp.zeros(pred.shape, bool)
        return api.Query(dict(carry, pred=pred), {"x": carry["x"]}, send, ~send)


class _QueryRouter(_Arith):
    """Routes on the query alone (turn 0), then the edge model answers the rows kept (turn 1)."""

    def route(self, es, carry, rng):
        """bool[B]: which rows call the cloud."""
        raise NotImplementedError

    def edge_query(self, es, carry, rng):
        if "routed" not in carry:  # turn 0: no edge model
            send = self.route(es, carry, rng)
            return api.Query(dict(carry, routed=send), {"x": carry["x"]}, send, send)
        pred, _ = self._edge_answer(es, carry["x"])  # turn 1: only the kept rows are active
        keep = ~carry["routed"]
        carry = dict(carry, pred=jnp.where(keep, pred, carry["pred"]))
        return api.Query(carry, {"x": carry["x"]}, jnp.zeros_like(keep), jnp.ones_like(keep))


class CloudOnly(_QueryRouter):
    manifest = api.Manifest(name="cloud-only", tracks=("infer",), applies_to=("arith",),
                            reference="cloud-only",
                            description="Every query goes to the cloud model (the edge model never runs).")

    def edge_setup(self, rng):
        return {}, {}  # the edge model is never used

    def route(self, es, carry, rng):
        return jnp.ones(carry["x"].shape[:1], bool)

    def edge_query(self, es, carry, rng):  # one turn: every row is sent and done
        send = self.route(es, carry, rng)
        return api.Query(carry, {"x": carry["x"]}, send, send)


class RouterRandom(_QueryRouter):
    manifest = api.Manifest(name="router-random", tracks=("infer",), applies_to=("arith",),
                            description="Calls the cloud with probability p (RouteLLM random router).",
                            paper="Ong et al. 2024, RouteLLM")
    default_hparams = {"p": 0.5}
    sweep = tuple({"p": p} for p in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))

    def route(self, es, carry, rng):
        return jax.random.uniform(rng, carry["x"].shape[:1]) < self.hp["p"]


class RouterOracle(_QueryRouter):
    manifest = api.Manifest(name="router-oracle", tracks=("infer",), applies_to=("arith",),
                            reference="oracle",
                            description="Reads the task's correctness bits (oracle_keys): calls the "
                                        "cloud iff the edge is wrong and the cloud right (an upper "
                                        "bound, never ranked).")

    def route(self, es, carry, rng):
        return ~carry["edge_correct"] & carry["cloud_correct"]


def query_features(x, vocab):
    """Bag of query tokens (normalised counts) plus a bias: float[B, vocab + 1]."""
    counts = jax.nn.one_hot(x, vocab).sum(1) / x.shape[1]
    return jnp.concatenate([counts, jnp.ones((x.shape[0], 1))], 1)


class RouterLearned(_QueryRouter):
    manifest = api.Manifest(name="router-learned", tracks=("infer",), applies_to=("arith",),
                            description="Logistic regression on query token counts predicting "
                                        "'edge wrong and cloud right', fit on the cloud's "
                                        "calibration split in setup (the edge sends its params up, "
                                        "the router comes down); calls the cloud if P > threshold.",
                            paper="Ding et al. 2024, Hybrid LLM; Ong et al. 2024, RouteLLM")
    default_hparams = {"threshold": 0.5, "steps": 300, "lr": 0.5, "l2": 1e-4}
    sweep = tuple({"threshold": t} for t in (1.01, 0.6, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05, 0.02, 0.0))

    def edge_setup(self, rng):
        # The cloud needs the edge's correctness on its calibration split: send the params (billed).
        return dict(self.view.params), {"edge": self.view.params["edge"]}

    def cloud_setup(self, uplink, rng):
        k, V = self._k(), self.view.vocab
        x, y = jnp.asarray(self.view.calib["x"]), jnp.asarray(self.view.calib["y"])
        models, cloud = self.view.models, self.view.params["cloud"]
        edge_ok = jnp.argmax(_answer(models["edge"], uplink["edge"], x, k), -1) == y
        cloud_ok = jnp.argmax(_answer(models["cloud"], cloud, x, k), -1) == y
        target = (~edge_ok & cloud_ok).astype(jnp.float32)
        f = query_features(x, V)

        def loss(w):
            z = f @ w
            return jnp.mean(jnp.logaddexp(0.0, z) - target * z) + self.hp["l2"] * jnp.sum(w * w)

        def step(w, _):
            return w - self.hp["lr"] * jax.grad(loss)(w), None
        w, _ = jax.lax.scan(step, jnp.zeros((V + 1,)), None, length=self.hp["steps"])
        return {"cloud": cloud}, {"router": w}

    def edge_install(self, es, package, rng):
        return dict(es, router=package["router"])

    def route(self, es, carry, rng):
        p = jax.nn.sigmoid(query_features(carry["x"], self.view.vocab) @ es["router"])
        return p > self.hp["threshold"]

