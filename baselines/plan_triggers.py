"""Planning baselines that decide when to ask the cloud for an action buffer.

- ``periodic``: a call every k steps, answered with the next k actions.
- ``ask-uncertain``: ask when the edge's max probability falls below tau, or
  (``on_surprise``) when its last step did not land where it expected (a stale
  plan). Its operating point (tau) is picked on the validation episodes.
- ``swiftsage``: ask on an invalid top action, a revisited state, or no
  heuristic progress for m steps, with a cooldown after each answer; the
  answer is an action buffer (Lin et al. 2023, SwiftSage).
- ``router-learned``: a logistic classifier on edge signals (max prob, margin,
  entropy, invalid top action) that predicts when the edge's action differs
  from the expert's. The calibration split is the cloud's, so the router is
  fit there: the edge sends its policy up in ``edge_setup`` (billed setup
  bytes up), ``cloud_setup`` computes the features on the split and fits the
  router (metered cloud setup FLOPs) and sends it down as the package (billed
  setup bytes down); ``edge_install`` keeps it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from baselines.plan_reference import Buffered
from lsbench import api
from lsbench.models import policies


class Periodic(Buffered):
    manifest = api.Manifest(name="periodic", tracks=("plan",),
                            description="a call every k steps, answered with the next k actions")
    default_hparams = {"k": 4}
    sweep = ({"k": 2}, {"k": 4}, {"k": 8}, {"k": 16})

    def trigger(self, es, carry, obs, logits, rng):
        return carry["t"] % self.k == 0


class AskUncertain(Buffered):
    manifest = api.Manifest(name="ask-uncertain", tracks=("plan",), version="2",
                            description="ask for k actions when the edge's max probability < tau or "
                                        "its last step went somewhere unexpected (a stale plan)")
    default_hparams = {"k": 8, "tau": 0.9, "on_surprise": True}
    sweep = ({"tau": 0.5}, {"tau": 0.7}, {"tau": 0.8}, {"tau": 0.9}, {"tau": 0.97}, {"tau": 0.995})

    def trigger(self, es, carry, obs, logits, rng):
        unsure = jax.nn.softmax(logits).max() < self.hp["tau"]
        return unsure | (carry["surprise"] & bool(self.hp["on_surprise"]))


class SwiftSage(Buffered):
    manifest = api.Manifest(name="swiftsage", tracks=("plan",), paper="arXiv:2305.17390",
                            description="ask on an invalid move, a revisited state or m steps without "
                                        "heuristic progress (cooldown c); answer: k-action buffer")
    default_hparams = {"k": 8, "m": 6, "cooldown": 2}
    sweep = ({"k": 4}, {"k": 8}, {"k": 16}, {"k": 8, "m": 12, "cooldown": 6})

    def trigger(self, es, carry, obs, logits, rng):
        stuck = self.top_invalid(obs, logits) | self.revisit(carry, obs) | (carry["stall"] >= self.hp["m"])
        return stuck & (carry["cool"] == 0)


def router_features(logits, invalid):
    p = jax.nn.softmax(logits)
    top2 = jax.lax.top_k(p, 2)[0]
    ent = -jnp.sum(p * jnp.log(p + 1e-9))
    return jnp.stack([top2[0], top2[0] - top2[1], ent, invalid.astype(jnp.float32), jnp.float32(1)])


class RouterLearned(Buffered):
    manifest = api.Manifest(name="router-learned", tracks=("plan",),
                            description="logistic router on edge signals, fit on the calibration split "
                                        "to predict edge errors; asks for k actions when p(error) > thr")
    default_hparams = {"k": 4, "threshold": 0.3, "fit_steps": 500}
    sweep = ({"threshold": 0.15}, {"threshold": 0.3}, {"threshold": 0.5}, {"threshold": 0.7})

    def edge_setup(self, rng):
        """(edge) Keeps its policy and sends it up: the cloud fits the router on it."""
        es, _ = super().edge_setup(rng)
        return es, {"policy": es["policy"]}

    def cloud_setup(self, uplink, rng):
        """(cloud) Fits the router on its calibration split with the delivered policy;
        the router (w, mu, sd) is the package for the edge."""
        cs, _ = super().cloud_setup(uplink, rng)
        policy, cal = uplink["policy"], self.view.calib
        model, valid = self.view.models["edge"], self.view.env.valid
        # A policy with memory is evaluated with its memory at each state (calib["mem"]).
        mem = cal["mem"] if "mem" in cal else jnp.zeros((cal["expert"].shape[0], 0), jnp.float32)

        def feats(obs, m):
            lg = policies.policy_step(model, policy, m, obs)[0]
            return router_features(lg, ~valid(obs, jnp.argmax(lg))), jnp.argmax(lg)

        f, a = jax.vmap(feats)(cal["obs"], mem)
        wrong = (a != cal["expert"]).astype(jnp.float32)
        mu, sd = f.mean(0), f.std(0) + 1e-6
        mu, sd = mu.at[-1].set(0.0), sd.at[-1].set(1.0)
        z = (f - mu) / sd

        def step(w, _):
            g = jax.grad(lambda w: jnp.mean(jnp.logaddexp(0.0, z @ w) - wrong * (z @ w)))(w)
            return w - 0.5 * g, None

        w, _ = jax.lax.scan(step, jnp.zeros(f.shape[1]), None, length=self.hp["fit_steps"])
        return cs, {"w": w, "mu": mu, "sd": sd}

    def edge_install(self, es, package, rng):
        return {**es, **package}

    def trigger(self, es, carry, obs, logits, rng):
        f = router_features(logits, self.top_invalid(obs, logits))
        p_wrong = jax.nn.sigmoid(((f - es["mu"]) / es["sd"]) @ es["w"])
        return p_wrong > self.hp["threshold"]
