"""plan/slidingtile: the 3x3 sliding puzzle whose moves slip; the edge sees
the board, the cloud knows only the goal until the edge sends the board. The
edge policy has a published parameter cap (it cannot hold the 181,440-state
table); the cloud is the exact solver over that table (built by BFS, cached
under data_dir), metered per answer (``lsbench.envs.slidingtile.metered_plan``:
k x 90 matmul FLOPs) and also billed in expanded nodes (secondary).

v3: every move slips with probability ``slip`` (the instance's own key: the
same slips for every method), so a plan made once goes stale; scrambles are
deeper (random walks of depth uniform in [depth_min, depth_max] from the goal,
``test_seed``); validation puzzles come from ``val_seed``, disjoint from test.
Messages: up = the board, 4 bits per tile (5 bytes); down = k actions, 2 bits
each. Budget per episode: ``budget[0]`` x optimal length + ``budget[1]`` steps
(default tier: opt + 12, which the exact cloud meets despite slips; small
tier: 2 x opt + 10).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lsbench.envs import flat_rows, rollout
from lsbench.envs.slidingtile import SlidingTile, build_table, metered_plan, scramble, step_board
from lsbench.models import cache, policies
from lsbench.task import TaskError, TaskSpec
from tasks.plan_fogmaze import _batched, assemble, disjoint


def distance_table(data_dir, log=print):
    """The exact 3x3 distance table (int8[9!]), built once by BFS and cached."""
    got, h = cache.cached_params(data_dir, "plan-slidingtile-table",
                                 {"what": "3x3 sliding puzzle BFS distance table", "goal": "12345678_"},
                                 lambda: {"dist": build_table()}, log=log)
    return got["dist"], h


def _puzzles(env, seed, count, dmin, dmax, gens=None):
    """``count`` scrambles with depth uniform in [dmin, dmax] and optimal length > 0.
    ``gens``: a dict of compiled generators (one per walk length) shared across sets."""
    gens = {} if gens is None else gens
    if dmax not in gens:
        def one(key, lo):
            kd, ks, kr = jax.random.split(key, 3)
            d = jax.random.randint(kd, (), lo, dmax + 1)
            b = scramble(ks, d, dmax)
            return {"board": b, "opt": env.distance(b), "depth": d, "seed": kr}
        gens[dmax] = jax.jit(jax.vmap(one, in_axes=(0, None)))
    got = _batched(gens[dmax], jax.random.split(jax.random.PRNGKey(seed), 2 * count), dmin)
    keep = np.flatnonzero(got["opt"] > 0)[:count]
    return {k: v[keep] for k, v in got.items()}


def learned_cloud(spec, data_dir, env, train, label, log=print):
    """The learned cloud planner: a wider MLP trained by BC + DAgger on the
    exact solver's traces. Its answer rolls the board forward k moves with its
    own greedy actions (it knows the rules, not the table); billed in FLOPs."""
    c = spec.config
    hidden = tuple(c["cloud_hidden"])
    model = policies.policy_def("cloud", env.featurize, env.num_features, hidden)
    T = int(2 * np.max(train["opt"]) + 10)
    act = lambda p, obs: jnp.argmax(model.apply(p, obs)).astype(jnp.int32)

    def collect(params, key):
        idx = jax.random.choice(key, len(train["opt"]), (c["dagger_episodes"],), replace=False)
        sub = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[idx], train)
        return flat_rows(rollout(env, sub, T, lambda o, i, s: act(params, o), label))

    def train_fn():
        x, y, w = jax.device_get(flat_rows(rollout(env, train, T, lambda o, i, s: label(i, s), label)))
        keep = w > 0
        return {"cloud": policies.bc_dagger(jax.random.PRNGKey(c["train_seed"] + 7), model, x[keep],
                                            y[keep], collect, members=1, rounds=c["dagger_rounds"],
                                            steps=c["cloud_train_steps"], batch=256, lr=2e-3, log=log)}

    recipe = {"task": spec.name, "version": spec.version, "role": "cloud",
              "config": {k: v for k, v in c.items() if k != "edge_budgets"}}
    got, h = cache.cached_params(data_dir, spec.name.replace("/", "-") + "-cloud", recipe, train_fn, log=log)
    params = jax.tree_util.tree_map(lambda a: a[0], got["cloud"])

    def plan(cs, world, up, k):
        def body(b, _):
            a = act(cs, {"board": b})
            return step_board(b, a)[0], a
        return jax.lax.scan(body, env.decode_up(up), None, length=k)[1]

    log(f"{spec.name}: learned cloud {model.info['params']} params")
    return {"model": model, "params": params, "plan": plan, "act": act, "hash": h}


def _solver_plan(table, params, world, up, k):
    """The exact solver (the cloud's Planner.plan): the next k moves from the uplinked board
    (metered: k x 90 matmul FLOPs)."""
    return metered_plan(table, SlidingTile.decode_up(up), k)


def build(spec, data_dir, seed):
    c = spec.config
    if not 1 <= c["depth_min"] <= c["depth_max"] <= 60:
        raise TaskError(f"{spec.name}: scramble depths {c['depth_min']}..{c['depth_max']} invalid; "
                        "use 1 <= depth_min <= depth_max <= 60")
    if not 0.0 <= c["slip"] < 0.75:
        raise TaskError(f"{spec.name}: slip={c['slip']} out of range; use 0 <= slip < 0.75")
    table, table_hash = distance_table(data_dir)
    env = SlidingTile(table, c["slip"], c.get("budget", (2, 10)))
    gens = {}
    test = _puzzles(env, c["test_seed"], c["episodes"], c["depth_min"], c["depth_max"], gens)
    val = _puzzles(env, c["val_seed"], c["val_episodes"], c["depth_min"], c["depth_max"], gens)
    val = disjoint(test, val, "board")
    train = _puzzles(env, c["train_seed"], c["train_puzzles"], 1, c["train_depth_max"], gens)
    calib = _puzzles(env, c["train_seed"] + 1, c["calib_puzzles"], c["depth_min"], c["depth_max"], gens)
    label = lambda inst, s: env.expert_action(s["board"])
    learned = learned_cloud(spec, data_dir, env, train, label) if c.get("cloud") == "learned" else None
    # The solver's table rides in the planner's closure (a partial), so the guard knows it
    # as the cloud's asset: an edge program holding it as a constant is refused.
    inst = assemble(spec, data_dir, env, test, train, calib, label,
                    plan_fn=functools.partial(_solver_plan, env.table),
                    cloud_cost=lambda world, up: env.nodes_expanded(env.decode_up(up)), learned=learned,
                    val=val)
    inst.hashes = {**inst.hashes, "distance_table": table_hash}
    return inst


_BASE = {"family": "plan", "env": "slidingtile", "edge_hidden": [96, 96], "edge_param_cap": 20_000,
         "ensemble": 3, "dagger_rounds": 3, "test_seed": 3_000, "train_seed": 4_000, "val_seed": 6_000,
         "slip": 0.1,
         # v2: K cap-sized float32 policies, one forward each per step (see tasks/plan_fogmaze.py)
         "edge_budgets": {"param_bytes": 4 * 3 * 20_000, "flops_per_example": 2 * 3 * 20_000}}

TASK = TaskSpec(
    name="plan/slidingtile", version="3", track="plan", tier="default", primary_metric="success",
    description="3x3 sliding puzzle, scrambles of depth 20..60, moves slip with p=0.1, budget opt + 12; "
                "edge MLP capped at 2K params, cloud = exact distance-table solver (metered). 1000 test, "
                "500 validation puzzles.",
    # Calibration (measured, see README): a 17.6K-param edge solved 74.4% at 2 x opt + 10 and a
    # 3.8K-param one 48.0% at opt + 12, so the default tier's edge is 16x16 (1,652 params).
    config={**_BASE, "edge_hidden": [16, 16], "edge_param_cap": 2_000, "budget": [1, 12],
            "edge_budgets": {"param_bytes": 4 * 3 * 2_000, "flops_per_example": 2 * 3 * 2_000},
            "depth_min": 20, "depth_max": 60, "episodes": 1000, "val_episodes": 500,
            "train_puzzles": 4096, "train_depth_max": 60, "calib_puzzles": 256, "dagger_episodes": 1024,
            "train_steps": 3000},
    builder=build)

SMALL = TaskSpec(
    name="plan/slidingtile-small", version="3", track="plan", tier="small", primary_metric="success",
    description="CI tier of plan/slidingtile: scrambles of depth 12..40, 256 test and 128 validation "
                "puzzles.",
    config={**_BASE, "depth_min": 12, "depth_max": 40, "episodes": 256, "val_episodes": 128,
            "train_puzzles": 1024, "train_depth_max": 40, "calib_puzzles": 128, "dagger_episodes": 256,
            "train_steps": 800, "dagger_rounds": 2},
    builder=build)

# The same puzzles with a learned cloud planner (an MLP 256x256, ~88K params; billed in FLOPs) instead of the
# solver. Not registered as an entry point: run it as --task=tasks.plan_slidingtile:LEARNED.
# Results carry cloud_kind="learned"; never rank them against the solver-cloud task.
LEARNED = TaskSpec(
    name="plan/slidingtile-learned", version="3", track="plan", tier="default", primary_metric="success",
    description="plan/slidingtile with a learned cloud planner (MLP 256x256, BC + DAgger on solver traces).",
    config={**TASK.config, "cloud": "learned", "cloud_hidden": [256, 256], "cloud_train_steps": 3000},
    builder=build)
