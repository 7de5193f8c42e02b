"""Routing over three models for infer/arith-route3: edge (on the device), mid (at an
edge server) and cloud (RouterBench's multi-model routing; FrugalGPT's cascade).

The edge holds its own model; the remote side (``view.params['mid']`` and
``['cloud']``) holds the other two and the calibration split. A query goes up
as its tokens (int32 each); the uplink's key says which remote model answers
(``{'mid': x}`` or ``{'cloud': x}``), and the answer comes down as one int32
token (plus its fp32 confidence where the edge asked for it: ``{'mid_c': x}``).

Each remote model runs in its own sealed program (the uplink's structure
differs), so a query billed for the mid model pays only the mid model's FLOPs.
Query-only routers decide on the query alone and use one turn per
destination: turn 0 mid, turn 1 cloud, turn 2 the edge model for the rows kept
(billed to those rows only). The two-step cascade runs the edge model in turn 0
(every row pays it), sends the unsure rows to the mid model, and in turn 1
sends the rows the mid model is unsure about to the cloud (they pay both).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lsbench import api
from baselines.routing import _answer, query_features

ROLES = ("edge", "mid", "cloud")


class _Arith3(api.InferMethod):
    """Shared pieces: the models' answers, the remote reply, receive, finalize."""

    def _answer(self, role, params, x):
        logits = _answer(self.view.models[role], params, x, self.view.answer_tokens)
        return jnp.argmax(logits, -1).astype(jnp.int32), jax.nn.softmax(logits, -1).max(-1)

    def edge_start(self, es, batch):
        B = batch["x"].shape[0]
        carry = {"x": batch["x"], "pred": jnp.zeros((B,), jnp.int32)}
        for r in ROLES:  # in the batch only for the oracle reference
            if f"{r}_correct" in batch:
                carry[f"{r}_correct"] = jnp.asarray(batch[f"{r}_correct"], bool)
        return carry

    def cloud_reply(self, cs, cc, up, rng):
        role = "cloud" if "cloud" in up else "mid"
        pred, conf = self._answer(role, cs[role], up.get(role, up.get("mid_c")))
        return cc, ({"pred": pred, "conf": conf} if "mid_c" in up else {"pred": pred})

    def edge_receive(self, es, carry, inbox, rng):
        out = dict(carry, pred=jnp.where(inbox.got, inbox.msg["pred"], carry["pred"]))
        if "conf" in inbox.msg:
            out["conf"] = jnp.where(inbox.got, inbox.msg["conf"], carry["conf"])
        return out

    def finalize(self, es, carry):
        return {"pred": carry["pred"]}


class _Router3(_Arith3):
    """Routes on the query alone: ``route`` -> int32[B] (0 edge, 1 mid, 2 cloud)."""

    def route(self, es, carry, rng):
        raise NotImplementedError

    def edge_query(self, es, carry, rng):
        if "route" not in carry:  # turn 0: decide, send the mid rows
            r = self.route(es, carry, rng)
            send = r == 1
            return api.Query(dict(carry, route=r), {"mid": carry["x"]}, send, send)
        if "turn1" not in carry:  # turn 1: send the cloud rows
            send = carry["route"] == 2
            return api.Query(dict(carry, turn1=jnp.zeros((), bool)), {"cloud": carry["x"]}, send, send)
        pred, _ = self._answer("edge", es["edge"], carry["x"])  # turn 2: only the kept rows are active
        keep = carry["route"] == 0
        carry = dict(carry, pred=jnp.where(keep, pred, carry["pred"]))
        return api.Query(carry, {"cloud": carry["x"]}, jnp.zeros_like(keep), jnp.ones_like(keep))


class EdgeOnly3(_Router3):
    manifest = api.Manifest(name="edge-only", tracks=("infer",), applies_to=("arith3",),
                            reference="edge-only", description="The edge model answers every query.")

    def edge_query(self, es, carry, rng):
        pred, _ = self._answer("edge", es["edge"], carry["x"])
        send = jnp.zeros(pred.shape, bool)
        return api.Query(dict(carry, pred=pred), {"cloud": carry["x"]}, send, ~send)


class CloudOnly3(_Router3):
    manifest = api.Manifest(name="cloud-only", tracks=("infer",), applies_to=("arith3",),
                            reference="cloud-only",
                            description="Every query goes to the cloud model (the edge model never runs).")

    def edge_setup(self, rng):
        return {}, {}

    def edge_query(self, es, carry, rng):
        send = jnp.ones(carry["x"].shape[:1], bool)
        return api.Query(carry, {"cloud": carry["x"]}, send, send)


class Random3(_Router3):
    manifest = api.Manifest(name="router3-random", tracks=("infer",), applies_to=("arith3",),
                            description="Sends a query to the mid model with probability p_mid, to the "
                                        "cloud with p_cloud, else answers on the edge.",
                            paper="Ong et al. 2024, RouteLLM (random router); Hu et al. 2024, RouterBench")
    default_hparams = {"p_mid": 0.5, "p_cloud": 0.25}
    # A path edge -> mid -> cloud through the three models.
    sweep = tuple({"p_mid": m, "p_cloud": c} for m, c in
                  ((0.0, 0.0), (0.25, 0.0), (0.5, 0.0), (0.75, 0.0), (1.0, 0.0), (0.75, 0.25),
                   (0.5, 0.5), (0.25, 0.75), (0.0, 1.0)))

    def route(self, es, carry, rng):
        u = jax.random.uniform(rng, carry["x"].shape[:1])
        pm, pc = self.hp["p_mid"], self.hp["p_cloud"]
        return jnp.where(u < pm, 1, jnp.where(u < pm + pc, 2, 0)).astype(jnp.int32)


class Oracle3(_Router3):
    manifest = api.Manifest(name="router3-oracle", tracks=("infer",), applies_to=("arith3",),
                            reference="oracle",
                            description="Reads the task's correctness bits: the cheapest model that is "
                                        "right (edge, else mid, else cloud; the edge if none is). "
                                        "An upper bound, never ranked.")

    def route(self, es, carry, rng):
        return jnp.where(carry["edge_correct"], 0, jnp.where(
            carry["mid_correct"], 1, jnp.where(carry["cloud_correct"], 2, 0))).astype(jnp.int32)


class Cascade3(_Arith3):
    manifest = api.Manifest(name="cascade3", tracks=("infer",), applies_to=("arith3",),
                            description="Two-step confidence cascade: the edge answers; below tau_mid "
                                        "the mid model answers (with its confidence); below tau_cloud "
                                        "the cloud answers.",
                            paper="Chen, Zaharia, Zou 2023, FrugalGPT")
    default_hparams = {"tau_mid": 0.8, "tau_cloud": 0.8}
    sweep = tuple({"tau_mid": t, "tau_cloud": t} for t in (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01))

    def edge_query(self, es, carry, rng):
        if "conf" not in carry:  # turn 0: the edge model on every row
            pred, conf = self._answer("edge", es["edge"], carry["x"])
            send = conf < self.hp["tau_mid"]
            return api.Query(dict(carry, pred=pred, conf=conf), {"mid_c": carry["x"]}, send, ~send)
        send = carry["conf"] < self.hp["tau_cloud"]  # turn 1: the rows the mid model answered
        return api.Query(carry, {"cloud": carry["x"]}, send, jnp.ones_like(send))


class Learned3(_Router3):
    manifest = api.Manifest(name="router3-learned", tracks=("infer",), applies_to=("arith3",),
                            description="Two logistic regressions on query token counts, fit on the "
                                        "cloud's calibration split in setup: P(edge right) and P(mid "
                                        "right). The edge answers if P(edge right) >= t, else the mid "
                                        "model if P(mid right) >= t, else the cloud. The edge's params "
                                        "go up, the two routers come down (billed).",
                            paper="Ding et al. 2024, Hybrid LLM; Hu et al. 2024, RouterBench")
    default_hparams = {"threshold": 0.7, "steps": 300, "lr": 0.5, "l2": 1e-4}
    sweep = tuple({"threshold": t} for t in (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.01))

    def edge_setup(self, rng):
        return dict(self.view.params), {"edge": self.view.params["edge"]}

    def cloud_setup(self, uplink, rng):
        V = self.view.vocab
        x, y = jnp.asarray(self.view.calib["x"]), jnp.asarray(self.view.calib["y"])
        f = query_features(x, V)
        params = {"edge": uplink["edge"], **self.view.params}

        def fit(target):
            def loss(w):
                z = f @ w
                return jnp.mean(jnp.logaddexp(0.0, z) - target * z) + self.hp["l2"] * jnp.sum(w * w)

            def step(w, _):
                return w - self.hp["lr"] * jax.grad(loss)(w), None
            return jax.lax.scan(step, jnp.zeros((V + 1,)), None, length=self.hp["steps"])[0]
        w = {r: fit((self._answer(r, params[r], x)[0] == y).astype(jnp.float32)) for r in ("edge", "mid")}
        return dict(self.view.params), {"router": jnp.stack([w["edge"], w["mid"]])}

    def edge_install(self, es, package, rng):
        return dict(es, router=package["router"])

    def route(self, es, carry, rng):
        p = jax.nn.sigmoid(query_features(carry["x"], self.view.vocab) @ es["router"].T)  # [B, 2]
        t = self.hp["threshold"]
        return jnp.where(p[:, 0] >= t, 0, jnp.where(p[:, 1] >= t, 1, 2)).astype(jnp.int32)
