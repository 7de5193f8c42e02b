"""Planner -> executor baselines: the cloud answers with subgoals, not actions.

The cloud's planner (``view.planner.subgoals``, plan/keydoor) returns the next
``n`` subgoals on its path: doorways, doors, key cells and the goal, as cell ids
(1 byte each) with a 2-bit tag each (0 go there, c + 1 pick up key c there):
``n + ceil(n / 4)`` bytes down. The uplink is the task's fixed state uplink.

The edge executes them with a metered local planner inside its window (one
line: a BFS wavefront over the 5x5 window, ``lsbench.envs.fogmaze.bfs_field``,
toward the window cell nearest the subgoal; no training, and its FLOPs are the
edge's). A subgoal fails when the agent stands on a key subgoal without holding
that key (the key was misplaced) or makes no progress for ``patience`` steps.

- ``subgoal``: one subgoal list per episode (asked at the start); on a failure or
  when the list runs out the edge falls back to its own policy.
- ``subgoal-replan``: asks again (sending its window, which shows where the key
  really is) whenever a subgoal fails or the list runs out, at most
  ``max_calls`` times per episode.

Both are :class:`~baselines.plan_reference.Buffered` methods (its setup, its
policy fallback, its bookkeeping); only the reply and the executor are new.
"""
from __future__ import annotations

import math

import jax.numpy as jnp

from baselines.plan_reference import Buffered
from lsbench import api
from lsbench.envs import DIRS, pack_actions, packed_len, unpack_actions
from lsbench.envs.fogmaze import bfs_field
from lsbench.envs.keydoor import cell_ok


def executor_action(view, keys, colours: int, r: int, rel):
    """The local planner's action toward ``rel`` (target - position): a wavefront from
    the window cell nearest the target over the enterable window cells (``(2r+1)^2 // 2``
    metered 3x3 conv sweeps), then the enterable neighbour lowest on it (ties and an
    unreachable target: the one nearest the target)."""
    side = 2 * r + 1
    ok = cell_ok(view, keys, colours).reshape(side, side)
    aim = jnp.clip(rel, -r, r) + r
    d = bfs_field(ok.at[aim[0], aim[1]].set(True), aim, side * side // 2)
    nb = r + jnp.asarray(DIRS)
    man = jnp.abs(rel[None, :] - jnp.asarray(DIRS)).sum(1)
    score = jnp.where(ok[nb[:, 0], nb[:, 1]], d[nb[:, 0], nb[:, 1]] * 64 + man, 1 << 20)
    return jnp.argmin(score).astype(jnp.int32)


class Subgoal(Buffered):
    manifest = api.Manifest(name="subgoal", tracks=("plan",), applies_to=("plan/keydoor*",),
                            description="one subgoal list per episode (cloud planner -> edge executor: "
                                        "a BFS inside its window); the edge policy after a failure")
    default_hparams = {**Buffered.default_hparams, "n": 20, "patience": 12, "replan": False, "max_calls": 8}

    @property
    def n(self) -> int:
        return int(self.hp["n"])

    def edge_start(self, es, obs):
        n = self.n
        return {**super().edge_start(es, obs), "sg_cell": jnp.zeros((n,), jnp.int32),
                "sg_tag": jnp.zeros((n,), jnp.int32), "sg_i": jnp.int32(n), "since": jnp.int32(0),
                "calls": jnp.int32(0), "fail": jnp.array(False)}

    def track(self, carry, obs):
        """Advances past a reached subgoal; a failed one (a key subgoal reached without the
        key, or ``patience`` steps without reaching it) drops the list."""
        n, W = self.n, self.view.budgets["grid_width"]
        pos = obs["pos"].astype(jnp.int32)
        i = carry["sg_i"]
        j = jnp.clip(i, 0, n - 1)
        following = i < n
        arrived = following & (carry["sg_cell"][j] == pos[0] * W + pos[1])
        tag = carry["sg_tag"][j]
        missed = arrived & (tag > 0) & (((obs["keys"].astype(jnp.int32) >> jnp.maximum(tag - 1, 0)) & 1) == 0)
        stuck = following & ~arrived & (carry["since"] >= self.hp["patience"])
        fail = missed | stuck
        i = jnp.where(fail, n, jnp.where(arrived, i + 1, i))
        return dict(carry, sg_i=i, since=jnp.where(arrived, 0, carry["since"]), fail=fail)

    def edge_query(self, es, carry, obs, rng):
        return super().edge_query(es, self.track(carry, obs), obs, rng)

    def trigger(self, es, carry, obs, logits, rng):
        again = bool(self.hp["replan"]) & (carry["sg_i"] >= self.n) & (carry["calls"] < self.hp["max_calls"])
        return (carry["t"] == 0) | again

    def edge_act(self, es, carry, obs, inbox, rng):
        n, got = self.n, inbox.got
        cells = jnp.where(got, inbox.msg["cell"].astype(jnp.int32), carry["sg_cell"])
        tags = jnp.where(got, unpack_actions(inbox.msg["tag"], n), carry["sg_tag"])
        i = jnp.where(got, 0, carry["sg_i"])
        # Buffered's bookkeeping with no action buffer: its action is the edge policy's.
        idle = api.Inbox({"actions": jnp.zeros((packed_len(self.k),), jnp.uint8)}, jnp.array(False))
        carry2, a_policy = super().edge_act(es, carry, obs, idle, rng)
        W = self.view.budgets["grid_width"]
        tgt = cells[jnp.clip(i, 0, n - 1)]
        rel = jnp.stack([tgt // W, tgt % W]) - obs["pos"].astype(jnp.int32)
        r = (math.isqrt(obs["view"].shape[0]) - 1) // 2  # the window's radius (its size is static)
        a_exec = executor_action(obs["view"], obs["keys"], self.view.budgets["colours"], r, rel)
        a = jnp.where(i < n, a_exec, a_policy)
        carry2 = dict(carry2, sg_cell=cells, sg_tag=tags, sg_i=i, a=a,
                      since=jnp.where(got, 0, carry["since"]) + 1,
                      calls=carry["calls"] + got.astype(jnp.int32))
        if self.view.env.expect is not None:
            carry2["exp"] = jnp.asarray(self.view.env.expect(obs, a), jnp.int32)
        return carry2, a

    def cloud_reply(self, cs, world, uplink, rng):
        """The next n subgoals of the cloud's planner from the uplinked state."""
        planner = self.view.planner
        sg = planner.subgoals(cs["planner"], world, uplink, self.n)
        return {"cell": sg["cell"].astype(jnp.uint8), "tag": pack_actions(sg["tag"])}


class SubgoalReplan(Subgoal):
    manifest = api.Manifest(name="subgoal-replan", tracks=("plan",), applies_to=("plan/keydoor*",),
                            description="subgoals from the cloud; asks again (with its window) when a "
                                        "subgoal fails or the list runs out")
    default_hparams = {**Subgoal.default_hparams, "replan": True}
    # Shorter lists: fewer bytes per answer, more answers (it asks again when a list runs out).
    sweep = ({"n": 8}, {"n": 12}, {"n": 20})
