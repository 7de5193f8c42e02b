"""plan/keydoor: rooms behind coloured doors; a small edge agent that sees a 5x5
window executes; the cloud knows the published layout and can plan subgoals.

The layout (``lsbench.envs.keydoor``): an R x Q grid of 3x3 rooms joined along a
random tree, C doors on the start-to-goal chain, each opened by the key of its
colour (nested: every episode needs all C keys). Each key lies, with probability
``misplace``, on another cell of its room than the published one (hidden task
data): a plan made on the published layout then sends the agent to an empty
cell, and only the edge's window shows where the key is. No slips.

Messages: up = position (2 B), held keys (1 B) and the window's codes as
nibbles (13 B): 16 B. The cloud's planner is a metered backward wavefront over
(key mask, cell) on the published layout with the keys the window shows moved
(``sweeps`` batched 3x3 convolutions; ``2^C x 2 (3H - 2)(3W - 2)`` matmul FLOPs
per sweep). It answers with actions (``Planner.plan``, 2 bits each) or subgoals
(``Planner.subgoals``: doorways, doors, keys and the goal on its path, as cell
ids; ``view.budgets["grid_width"]`` decodes them). Budget per episode: 2 x the
optimal length on the live layout + 10 steps.

The edge's own policy (an MLP, BC + DAgger from the live layout's exact expert,
K members; ``tasks.plan_fogmaze.assemble``) sees only the window, the clipped
goal vector and its keys. Test episodes come from ``test_seed``, validation
episodes from ``val_seed`` (any layout equal to a test layout removed).
"""
from __future__ import annotations

import dataclasses

from lsbench import api
from lsbench.envs.keydoor import KeyDoor, generate_set
from lsbench.task import TaskError, TaskSpec
from tasks.plan_fogmaze import assemble, disjoint


def build(spec, data_dir, seed):
    c = spec.config
    R, Q, C = c["rooms"]
    if not (2 <= R <= 4 and 2 <= Q <= 4 and 1 <= C <= 3):
        raise TaskError(f"{spec.name}: rooms={c['rooms']} out of range; use 2..4 x 2..4 rooms and "
                        "1..3 colours (cell ids are one byte, tags two bits)")
    if not 0.0 <= c["misplace"] <= 1.0:
        raise TaskError(f"{spec.name}: misplace={c['misplace']} out of range; use 0 <= misplace <= 1")
    env = KeyDoor(R, Q, C, c["view_radius"], c["clip"], c["sweeps"])
    sets = {name: env.fields(generate_set(s, m, R, Q, C, c["misplace"]))
            for name, s, m in (("test", c["test_seed"], c["episodes"]),
                               ("train", c["train_seed"], c["train_layouts"]),
                               ("calib", c["train_seed"] + 1, c["calib_layouts"]),
                               ("val", c["val_seed"], c["val_episodes"]))}
    inst = assemble(spec, data_dir, env, sets["test"], sets["train"], sets["calib"],
                    label=env.expert_action,
                    plan_fn=lambda params, world, up, k: env.plan(world, up, k),
                    cloud_cost=lambda world, up: env.nodes_expanded(world),
                    val=disjoint(sets["test"], sets["val"], "wall"))
    # Subgoals: the same planner's answer as cells on its path (the cloud's); the grid width
    # (to decode cell ids) is a protocol size both sides know.
    planner = dataclasses.replace(inst.cloud_view.planner,
                                  subgoals=lambda params, world, up, n: env.subgoals(world, up, n))
    budgets = {**inst.edge_view.budgets, "grid_width": env.W, "colours": C}
    inst.edge_view = dataclasses.replace(inst.edge_view, budgets=budgets)
    inst.cloud_view = dataclasses.replace(inst.cloud_view, budgets=budgets, planner=planner)
    return inst


_BASE = {"family": "plan", "env": "keydoor", "view_radius": 2, "clip": 4, "misplace": 0.35,
         "edge_hidden": [64, 64], "edge_param_cap": 50_000, "ensemble": 3, "dagger_rounds": 2,
         "test_seed": 7_000, "train_seed": 8_000, "val_seed": 9_000,
         "edge_budgets": {"param_bytes": 4 * 3 * 50_000, "flops_per_example": 2 * 3 * 50_000}}

TASK = TaskSpec(
    name="plan/keydoor", version="1", track="plan", tier="default", primary_metric="success",
    description="3x4 rooms of 3x3 cells on a random tree, 2 coloured doors on the way (nested keys); each "
                "key misplaced within its room with p=0.35 (visible only in the edge's 5x5 window); the "
                "cloud knows the published layout (metered (mask, cell) wavefront; actions or subgoals). "
                "1000 test, 500 validation episodes.",
    config={**_BASE, "rooms": [3, 4, 2], "sweeps": 88, "episodes": 1000, "val_episodes": 500,
            "train_layouts": 2048, "calib_layouts": 256, "dagger_episodes": 512, "train_steps": 3000},
    builder=build)

SMALL = TaskSpec(
    name="plan/keydoor-small", version="1", track="plan", tier="small", primary_metric="success",
    description="CI tier of plan/keydoor: 2x3 rooms, 2 doors, 96 test and 96 validation episodes.",
    # sweeps: the farthest start of the test and validation episodes is 41 steps from its goal on
    # the published layout (default tier: 72, with 88 sweeps)
    config={**_BASE, "rooms": [2, 3, 2], "sweeps": 48, "episodes": 96, "val_episodes": 96,
            "train_layouts": 768, "calib_layouts": 128, "dagger_episodes": 256, "train_steps": 1500},
    builder=build)
