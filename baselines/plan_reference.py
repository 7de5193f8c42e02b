"""Planning references: edge-only, cloud-only (one call per step), plan-once.

``Buffered`` is the skeleton every planning baseline shares. The edge runs the
task's policy (``ctx.models['edge']``) on its observation; when its trigger
fires and its action buffer is empty it sends the task's fixed uplink
(``ctx.extras['encode_up']``: position or packed board). The cloud answers
with the next ``k`` actions of the task's planner (``ctx.extras['plan']``),
packed 2 bits each (``ceil(k/4)`` bytes); the edge executes the buffer, then
returns to its own policy. Subclasses override ``trigger``.
"""
from __future__ import annotations

import jax.numpy as jnp

from lsbench import api
from lsbench.envs import pack_actions, unpack_actions

RECENT = 8  # states remembered for revisit detection


class Buffered(api.PlanMethod):
    default_hparams = {"k": 1}

    @property
    def k(self) -> int:
        return int(self.hp["k"])

    def init(self, rng):
        return self.ctx.params["edge"], self.ctx.params.get("cloud", {})

    def logits(self, es, obs):
        return self.ctx.models["edge"].apply(es, obs)

    def edge_start(self, es, obs):
        x = self.ctx.extras
        return {"buf": jnp.zeros((self.k,), jnp.int32), "nbuf": jnp.int32(0), "t": jnp.int32(0),
                "a": jnp.int32(0), "recent": jnp.full((RECENT,), -1, jnp.int32),
                "best": jnp.asarray(x["progress"](obs), jnp.int32), "stall": jnp.int32(0),
                "cool": jnp.int32(0)}

    def trigger(self, es, mem, obs, logits, rng):
        """Whether to ask, given an empty buffer. Default: never."""
        return jnp.array(False)

    def edge_query(self, es, mem, obs, rng):
        return self.query_from(es, mem, obs, rng, self.logits(es, obs))

    def query_from(self, es, mem, obs, rng, logits):
        x = self.ctx.extras
        prog = jnp.asarray(x["progress"](obs), jnp.int32)
        better = prog < mem["best"]
        mem = dict(mem, a=jnp.argmax(logits).astype(jnp.int32), best=jnp.minimum(prog, mem["best"]),
                   stall=jnp.where(better, 0, mem["stall"] + 1))
        send = (mem["nbuf"] == 0) & self.trigger(es, mem, obs, logits, rng)
        return api.Query(mem, x["encode_up"](obs), send)

    def cloud_plan(self, cs, world, up, rng):
        return {"actions": pack_actions(self.ctx.extras["plan"](cs, world, up, self.k))}

    def edge_act(self, es, mem, obs, inbox, rng):
        k = self.k
        got = inbox.got
        buf = jnp.where(got, unpack_actions(inbox.msg["actions"], k), mem["buf"])
        nbuf = jnp.where(got, k, mem["nbuf"])
        use = nbuf > 0
        a = jnp.where(use, buf[jnp.clip(k - nbuf, 0, k - 1)], mem["a"])
        key = jnp.asarray(self.ctx.extras["state_key"](obs), jnp.int32)
        mem = dict(mem, buf=buf, nbuf=nbuf - use.astype(jnp.int32), t=mem["t"] + 1, a=a,
                   recent=jnp.roll(mem["recent"], 1).at[0].set(key),
                   cool=jnp.where(got, self.hp.get("cooldown", 0), jnp.maximum(mem["cool"] - 1, 0)))
        return mem, a

    # helpers for triggers
    def revisit(self, mem, obs):
        key = jnp.asarray(self.ctx.extras["state_key"](obs), jnp.int32)
        return jnp.any(mem["recent"] == key)

    def top_invalid(self, obs, logits):
        return ~self.ctx.extras["valid"](obs, jnp.argmax(logits))


class EdgeOnly(Buffered):
    manifest = api.Manifest(name="edge-only", tracks=("plan",), reference="edge-only",
                            description="the edge policy alone; no messages")


class CloudOnly(Buffered):
    manifest = api.Manifest(name="cloud-only", tracks=("plan",), reference="cloud-only",
                            description="the cloud planner picks every action: one call per step")

    def logits(self, es, obs):  # the edge runs no policy of its own
        return jnp.zeros((self.ctx.extras["num_actions"],), jnp.float32)

    def trigger(self, es, mem, obs, logits, rng):
        return jnp.array(True)


class PlanOnce(Buffered):
    manifest = api.Manifest(name="plan-once", tracks=("plan",),
                            description="one call at the start; the whole plan (the task's plan_len "
                                        "actions) is executed, then the edge policy takes over")
    default_hparams = {}

    @property
    def k(self) -> int:
        return int(self.ctx.extras["plan_len"])

    def trigger(self, es, mem, obs, logits, rng):
        return mem["t"] == 0
