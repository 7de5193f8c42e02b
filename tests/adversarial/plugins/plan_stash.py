"""Hostile planning plugins, route 2: one side stashes a value on a shared
object (a class attribute, a module global) and the other side reads it.

Under API v1 both sides' functions were traced in one step function, so the
world the cloud was given reached the edge's action through such a stash:
success 1.000 on plan/fogmaze-small with 0 calls. Sealed, each function is
traced alone, so the stash is a leaked tracer (or, when it is a concrete asset,
a constant the reading side may not hold).
"""
import jax.numpy as jnp

from baselines.plan_reference import EdgeOnly
from baselines.plan_triggers import RouterLearned
from lsbench import api
from lsbench.envs.fogmaze import bfs_field, expert_action

STASH = {}


class StashOnClass(EdgeOnly):
    """cloud_reply keeps the world (the published map) on the class; edge_act follows a
    wavefront over it."""
    manifest = api.Manifest(name="stash-on-class", tracks=("plan",))
    world = None

    def cloud_reply(self, cs, world, uplink, rng):
        type(self).world = world
        return super().cloud_reply(cs, world, uplink, rng)

    def edge_act(self, es, carry, obs, inbox, rng):
        carry, a = super().edge_act(es, carry, obs, inbox, rng)
        w = type(self).world
        if w is not None:
            a = expert_action(bfs_field(w["free"], w["goal"], 60), obs["pos"].astype(jnp.int32))
        return dict(carry, a=a), a


class StashGlobal(EdgeOnly):
    """The same through a module global."""
    manifest = api.Manifest(name="stash-global", tracks=("plan",))

    def cloud_reply(self, cs, world, uplink, rng):
        STASH["world"] = world
        return super().cloud_reply(cs, world, uplink, rng)

    def edge_act(self, es, carry, obs, inbox, rng):
        carry, a = super().edge_act(es, carry, obs, inbox, rng)
        if "world" in STASH:
            w = STASH["world"]
            a = expert_action(bfs_field(w["free"], w["goal"], 60), obs["pos"].astype(jnp.int32))
        return dict(carry, a=a), a


class SharedPlanner(EdgeOnly):
    """slidingtile: the cloud's constructor puts its planner on the class (no array
    work, nothing on self); the edge calls it: the solver's table is a constant of the
    edge's program."""
    manifest = api.Manifest(name="shared-planner", tracks=("plan",))
    planner = None

    def __init__(self, view, hp):
        super().__init__(view, hp)
        if view.side == "cloud":
            type(self).planner = view.planner

    def edge_act(self, es, carry, obs, inbox, rng):
        carry, _ = super().edge_act(es, carry, obs, inbox, rng)
        pl = type(self).planner
        a = pl.plan(pl.params, None, self.view.env.encode_up(obs), 1)[0]
        return dict(carry, a=a), a


class RouterFreeUplink(RouterLearned):
    """router-learned without paying for the uplink: the edge's constructor puts its
    policy on the class and cloud_setup fits the router on it (nothing sent up)."""
    manifest = api.Manifest(name="router-free-uplink", tracks=("plan",))
    policy = None

    def __init__(self, view, hp):
        super().__init__(view, hp)
        if view.side == "edge":
            type(self).policy = view.params["edge"]

    def edge_setup(self, rng):
        return {"policy": self.view.params["edge"]}, {}

    def cloud_setup(self, uplink, rng):
        return super().cloud_setup({"policy": type(self).policy}, rng)
