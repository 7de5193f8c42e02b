"""A tiny team (``api.PlanMethod.team``) on the tiny corridor (``tiny_plan.TASK``), for the
harness's team protocol: K = 3 agents, R = 1 round. Each agent holds a random bias from
its own setup key, broadcasts bias + noise (float32, 4 B) in round 0, and in round 1
reports whether the sum it heard is high (uint8, 1 B); on an episode's first step the
acting agent asks the cloud when any agent says so. Peer bytes per active step: R K 4 + (K - 1) = 14."""
import os
import sys

import jax
import jax.numpy as jnp

from lsbench import api

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiny_plan import AskOnce  # noqa: E402

K, R = 3, 1


class TinyTeam(AskOnce):
    manifest = api.Manifest(name="tiny-team", tracks=("plan",))

    def team(self):
        return K, R

    def agent_setup(self, params, rng):
        return {"bias": jax.random.uniform(rng, ())}

    def agent_start(self, ast, obs):
        return {"rounds": jnp.int32(0)}

    def agent_round(self, ast, ac, obs, inbox, rng, r=0):
        ac = dict(ac, rounds=ac["rounds"] + 1)
        if r < R:
            return ac, {"b": ast["bias"] + jax.random.uniform(rng, ())}
        heard = jnp.sum(jnp.where(inbox.got, inbox.msg["b"], 0.0))
        return ac, {"high": (heard > 2.0).astype(jnp.uint8)}

    def edge_query(self, es, carry, obs, rng, team=None):
        send = ~carry["asked"] & jnp.any(team.msg["high"] > 0)  # on the first step only
        return api.Query(dict(carry, asked=jnp.array(True)), self.view.env.encode_up(obs), send)
