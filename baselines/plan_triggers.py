"""Planning baselines that decide when to ask the cloud for an action buffer.

- ``periodic``: a call every k steps, answered with the next k actions.
- ``ask-uncertain``: ask when the edge's max probability falls below tau.
- ``swiftsage``: ask on an invalid top action, a revisited state, or no
  heuristic progress for m steps, with a cooldown after each answer; the
  answer is an action buffer (Lin et al. 2023, SwiftSage).
- ``router-learned``: a logistic classifier on edge signals (max prob, margin,
  entropy, invalid top action), fit in ``init`` on the task's calibration
  split to predict when the edge's action differs from the expert's.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from baselines.plan_reference import Buffered
from lsbench import api


class Periodic(Buffered):
    manifest = api.Manifest(name="periodic", tracks=("plan",),
                            description="a call every k steps, answered with the next k actions")
    default_hparams = {"k": 4}
    sweep = ({"k": 2}, {"k": 4}, {"k": 8}, {"k": 16})

    def trigger(self, es, mem, obs, logits, rng):
        return mem["t"] % self.k == 0


class AskUncertain(Buffered):
    manifest = api.Manifest(name="ask-uncertain", tracks=("plan",),
                            description="ask for k actions when the edge's max probability < tau")
    default_hparams = {"k": 4, "tau": 0.9}
    sweep = ({"tau": 0.5}, {"tau": 0.7}, {"tau": 0.9}, {"tau": 0.97}, {"tau": 0.995})

    def trigger(self, es, mem, obs, logits, rng):
        return jax.nn.softmax(logits).max() < self.hp["tau"]


class SwiftSage(Buffered):
    manifest = api.Manifest(name="swiftsage", tracks=("plan",), paper="arXiv:2305.17390",
                            description="ask on an invalid move, a revisited state or m steps without "
                                        "heuristic progress (cooldown c); answer: k-action buffer")
    default_hparams = {"k": 8, "m": 6, "cooldown": 2}
    sweep = ({"k": 4}, {"k": 8}, {"k": 16}, {"k": 8, "m": 12, "cooldown": 6})

    def trigger(self, es, mem, obs, logits, rng):
        stuck = self.top_invalid(obs, logits) | self.revisit(mem, obs) | (mem["stall"] >= self.hp["m"])
        return stuck & (mem["cool"] == 0)


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

    def init(self, rng):
        policy, cs = super().init(rng)
        cal = self.ctx.extras["calib"]
        apply, valid = self.ctx.models["edge"].apply, self.ctx.extras["valid"]

        def feats(obs):
            lg = apply(policy, obs)
            return router_features(lg, ~valid(obs, jnp.argmax(lg))), jnp.argmax(lg)

        f, a = jax.vmap(feats)(cal["obs"])
        wrong = (a != cal["expert"]).astype(jnp.float32)
        mu, sd = f.mean(0), f.std(0) + 1e-6
        mu, sd = mu.at[-1].set(0.0), sd.at[-1].set(1.0)
        z = (f - mu) / sd

        def step(w, _):
            g = jax.grad(lambda w: jnp.mean(jnp.logaddexp(0.0, z @ w) - wrong * (z @ w)))(w)
            return w - 0.5 * g, None

        w, _ = jax.lax.scan(step, jnp.zeros(f.shape[1]), None, length=self.hp["fit_steps"])
        return {"policy": policy, "w": w, "mu": mu, "sd": sd}, cs

    def logits(self, es, obs):
        return self.ctx.models["edge"].apply(es["policy"], obs)

    def trigger(self, es, mem, obs, logits, rng):
        f = router_features(logits, self.top_invalid(obs, logits))
        p_wrong = jax.nn.sigmoid(((f - es["mu"]) / es["sd"]) @ es["w"])
        return p_wrong > self.hp["threshold"]
