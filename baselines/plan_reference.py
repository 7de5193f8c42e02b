"""Planning references: edge-only, cloud-only (one call per step), plan-once.

``Buffered`` is the skeleton every planning baseline shares. The edge holds
its policy (``view.params['edge']``, run by ``view.models['edge']``) and runs
it on its observation; when its trigger fires and its action buffer is empty
it sends the task's fixed uplink (``view.env.encode_up``: position or packed
board). The cloud answers, in ``cloud_reply`` only, with the next ``k``
actions of its planner (``view.planner``, the cloud view's), packed 2 bits
each (``ceil(k/4)`` bytes); the edge executes the buffer, then returns to its
own policy. Subclasses override ``trigger``.

The edge's policy may have memory (a GRU: ``lsbench.models.policies``): it
lives in ``carry["mem"]`` and advances once per step in ``edge_query``
(``step_policy``; an MLP's memory is empty), metered with that step.

A stale buffer is dropped: where the task's env gives ``expect`` (the state
an action leads to if nothing unforeseen happens), a step that lands
elsewhere (a slip, a door that shut) empties the buffer and sets
``carry["surprise"]`` for the triggers (hparam ``flush``, default on).
"""
from __future__ import annotations

import jax.numpy as jnp

from lsbench import api
from lsbench.envs import pack_actions, unpack_actions
from lsbench.models import policies

RECENT = 8  # states remembered for revisit detection


class Buffered(api.PlanMethod):
    default_hparams = {"k": 1, "flush": True}

    @property
    def k(self) -> int:
        return int(self.hp["k"])

    # ---- setup ------------------------------------------------------------------
    def edge_setup(self, rng):
        """(edge) Holds its own policy; sends nothing."""
        return {"policy": self.view.params["edge"]}, {}

    def cloud_setup(self, uplink, rng):
        """(cloud) Holds the planner's params (a learned planner's; none for a solver)."""
        p = self.view.planner.params
        return {"planner": {} if p is None else p}, {}

    # ---- edge -------------------------------------------------------------------
    def logits(self, es, obs):
        """The policy's logits from zero memory (memory-less use; see ``step_policy``)."""
        return self.view.models["edge"].apply(es["policy"], obs)

    def step_policy(self, es, mem, obs):
        """(logits, memory) of the edge's own policy after ``obs``."""
        return policies.policy_step(self.view.models["edge"], es["policy"], mem, obs)

    def edge_start(self, es, obs):
        return {"mem": policies.init_memory(self.view.models["edge"]),
                "buf": jnp.zeros((self.k,), jnp.int32), "nbuf": jnp.int32(0), "t": jnp.int32(0),
                "a": jnp.int32(0), "recent": jnp.full((RECENT,), -1, jnp.int32),
                "best": jnp.asarray(self.view.env.progress(obs), jnp.int32), "stall": jnp.int32(0),
                "cool": jnp.int32(0), "exp": jnp.int32(-1), "surprise": jnp.array(False)}

    def trigger(self, es, carry, obs, logits, rng):
        """Whether to ask, given an empty buffer. Default: never."""
        return jnp.array(False)

    def edge_query(self, es, carry, obs, rng):
        logits, mem = self.step_policy(es, carry["mem"], obs)
        return self.query_from(es, dict(carry, mem=mem), obs, rng, logits)

    def query_from(self, es, carry, obs, rng, logits):
        env = self.view.env
        prog = jnp.asarray(env.progress(obs), jnp.int32)
        better = prog < carry["best"]
        carry = dict(carry, a=jnp.argmax(logits).astype(jnp.int32), best=jnp.minimum(prog, carry["best"]),
                     stall=jnp.where(better, 0, carry["stall"] + 1))
        if env.expect is not None:  # the last action did not do what it should: the buffer is stale
            key = jnp.asarray(env.state_key(obs), jnp.int32)
            surprise = (carry["exp"] >= 0) & (key != carry["exp"])
            flush = surprise & bool(self.hp.get("flush", True))
            carry = dict(carry, surprise=surprise, nbuf=jnp.where(flush, 0, carry["nbuf"]))
        send = (carry["nbuf"] == 0) & self.trigger(es, carry, obs, logits, rng)
        return api.Query(carry, env.encode_up(obs), send)

    def edge_act(self, es, carry, obs, inbox, rng):
        k = self.k
        got = inbox.got
        buf = jnp.where(got, unpack_actions(inbox.msg["actions"], k), carry["buf"])
        nbuf = jnp.where(got, k, carry["nbuf"])
        use = nbuf > 0
        a = jnp.where(use, buf[jnp.clip(k - nbuf, 0, k - 1)], carry["a"])
        key = jnp.asarray(self.view.env.state_key(obs), jnp.int32)
        carry = dict(carry, buf=buf, nbuf=nbuf - use.astype(jnp.int32), t=carry["t"] + 1, a=a,
                     recent=jnp.roll(carry["recent"], 1).at[0].set(key),
                     cool=jnp.where(got, self.hp.get("cooldown", 0), jnp.maximum(carry["cool"] - 1, 0)))
        if self.view.env.expect is not None:
            carry["exp"] = jnp.asarray(self.view.env.expect(obs, a), jnp.int32)
        return carry, a

    # ---- cloud ------------------------------------------------------------------
    def cloud_reply(self, cs, world, uplink, rng):
        """The next k actions of the cloud's planner from the uplinked state."""
        planner = self.view.planner
        return {"actions": pack_actions(planner.plan(cs["planner"], world, uplink, self.k))}

    # ---- helpers for triggers ---------------------------------------------------
    def revisit(self, carry, obs):
        key = jnp.asarray(self.view.env.state_key(obs), jnp.int32)
        return jnp.any(carry["recent"] == key)

    def top_invalid(self, obs, logits):
        return ~self.view.env.valid(obs, jnp.argmax(logits))


class EdgeOnly(Buffered):
    manifest = api.Manifest(name="edge-only", tracks=("plan",), reference="edge-only",
                            description="the edge policy alone; no messages")


class CloudOnly(Buffered):
    manifest = api.Manifest(name="cloud-only", tracks=("plan",), reference="cloud-only",
                            description="the cloud planner picks every action: one call per step")

    def edge_setup(self, rng):  # the edge runs no policy of its own: it holds nothing
        return {}, {}

    def logits(self, es, obs):
        return jnp.zeros((self.view.env.num_actions,), jnp.float32)

    def step_policy(self, es, mem, obs):
        return self.logits(es, obs), mem

    def trigger(self, es, carry, obs, logits, rng):
        return jnp.array(True)


class PlanOnce(Buffered):
    manifest = api.Manifest(name="plan-once", tracks=("plan",), version="2",
                            description="one call at the start; the whole plan (the task's plan_len "
                                        "actions) is executed, then the edge policy takes over "
                                        "(flush=True: the edge takes over as soon as the plan goes stale)")
    default_hparams = {"flush": False}
    sweep = ({"flush": False}, {"flush": True})

    @property
    def k(self) -> int:
        return int(self.view.plan_len)

    def trigger(self, es, carry, obs, logits, rng):
        return carry["t"] == 0
