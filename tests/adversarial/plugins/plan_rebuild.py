"""Hostile planning plugins, route 1: the edge rebuilds the task in-process
(``lsbench.registry.load_task(...).build(...)``) and uses what only the cloud
(or nobody) may hold: the solver, its distance table, the test worlds.

Each acts on the edge alone and never sends: without sealing they would score
(nearly) the cloud's success at zero bytes and zero cloud FLOPs. The rebuild
happens on the first trace, eagerly (``jax.ensure_compile_time_eval``), so its
arrays enter the edge's program as constants.
"""
import jax
import jax.numpy as jnp
import numpy as np

from baselines.plan_reference import EdgeOnly
from lsbench import api
from lsbench.envs.fogmaze import expert_action
from lsbench.envs.slidingtile import table_expert_action

REBUILT = {}  # task name -> the rebuilt instance (kept for the tests' open-guard demonstration)


def rebuilt(task):
    if task not in REBUILT:
        from lsbench.models.cache import default_data_dir
        from lsbench.registry import load_task
        with jax.ensure_compile_time_eval():
            REBUILT[task] = load_task(task).build(default_data_dir(), 0)
    return REBUILT[task]


class _Hostile(EdgeOnly):
    """Edge-only's skeleton (never sends); subclasses replace the action."""
    manifest = api.Manifest(name="hostile", tracks=("plan",))

    def edge_act(self, es, carry, obs, inbox, rng):
        carry, _ = super().edge_act(es, carry, obs, inbox, rng)
        a = self.steal(obs, carry)
        return dict(carry, a=a), a


class CallsPlanner(_Hostile):
    """Calls the rebuilt task's cloud planner (the exact solver) on the edge."""
    manifest = api.Manifest(name="calls-planner", tracks=("plan",))

    def steal(self, obs, carry):
        inst = rebuilt("plan/slidingtile-small")
        planner = inst.cloud_view.planner
        return planner.plan(planner.params, None, inst.edge_view.env.encode_up(obs), 1)[0]


class HoldsTable(_Hostile):
    """Holds the solver's distance table (cast to int16) and acts greedily on it."""
    manifest = api.Manifest(name="holds-table", tracks=("plan",))

    def steal(self, obs, carry):
        table = np.asarray(rebuilt("plan/slidingtile-small").cloud_view.planner.plan.args[0], np.int16)
        return table_expert_action(jnp.asarray(table), obs["board"])


class HoldsShiftedTable(_Hostile):
    """Holds a derived copy of the table (+1, so no content match): a big constant that
    is no array of the edge's view."""
    manifest = api.Manifest(name="holds-shifted-table", tracks=("plan",))

    def steal(self, obs, carry):
        table = np.asarray(rebuilt("plan/slidingtile-small").cloud_view.planner.plan.args[0], np.int16) + 1
        return table_expert_action(jnp.asarray(table), obs["board"])


def _episode_of(inst_arrays, obs):
    """Which test episode this is, from the start observation (position and goal vector)."""
    start, goal = jnp.asarray(inst_arrays["start"]), jnp.asarray(inst_arrays["goal"])
    pos = obs["pos"].astype(jnp.int32)
    gv = jnp.clip(goal - pos, -3, 3)
    hit = jnp.all(start == pos, 1) & jnp.all(gv == obs["goal_vec"].astype(jnp.int32), 1)
    return jnp.argmax(hit).astype(jnp.int32)


class ReadsWorlds(_Hostile):
    """fogmaze: holds the hidden test mazes' distance maps, finds its episode from the
    start observation and follows the map."""
    manifest = api.Manifest(name="reads-worlds", tracks=("plan",))

    def edge_start(self, es, obs):
        inst = rebuilt("plan/fogmaze-small")
        return dict(super().edge_start(es, obs), ep=_episode_of(inst.instances, obs))

    def steal(self, obs, carry):
        dist = jnp.asarray(rebuilt("plan/fogmaze-small").instances["dist"])
        return expert_action(dist[carry["ep"]], obs["pos"].astype(jnp.int32))


class ReadsWorldSlices(ReadsWorlds):
    """As ReadsWorlds, but holds every episode's map but the last (a slice), so no
    constant equals the hidden array as a whole."""
    manifest = api.Manifest(name="reads-world-slices", tracks=("plan",))

    def edge_start(self, es, obs):
        inst = rebuilt("plan/fogmaze-small")
        part = {k: np.asarray(v)[:-1] for k, v in inst.instances.items()}
        return dict(EdgeOnly.edge_start(self, es, obs), ep=_episode_of(part, obs))

    def steal(self, obs, carry):
        dist = jnp.asarray(np.asarray(rebuilt("plan/fogmaze-small").instances["dist"])[:-1])
        return expert_action(dist[carry["ep"]], obs["pos"].astype(jnp.int32))
