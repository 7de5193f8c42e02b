"""Tasks with tiny edge budgets, for the budget tests: the 1-D corridor of
``tiny_plan.py`` whose edge may hold 1,024 parameter bytes (``TASK``) or
8,000 (``ROOMY``), and a method whose edge holds 4,000 (``HeavyEdge``)."""
import dataclasses
import importlib.util
import os

import jax.numpy as jnp

from lsbench import api
from lsbench.task import TaskSpec

_spec = importlib.util.spec_from_file_location(
    "lsbench_tests_tiny_plan", os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_plan.py"))
tiny_plan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_plan)


def build(spec, data_dir, seed):
    inst = tiny_plan.build(spec, data_dir, seed)
    return dataclasses.replace(inst, edge_budgets=dict(spec.config["budgets"]))


TASK = TaskSpec(name="test/tiny-plan-budget", version="1", track="plan", description="corridor, tiny budget",
                primary_metric="success", config={"episodes": 20, "budgets": {"param_bytes": 1024}},
                builder=build)
ROOMY = dataclasses.replace(TASK, name="test/tiny-plan-budget-roomy",
                            config={"episodes": 20, "budgets": {"param_bytes": 8000}})
BAD = dataclasses.replace(TASK, name="test/tiny-plan-bad-budget", config={"episodes": 4, "budgets": {"ram": 3}})


class HeavyEdge(tiny_plan.AskOnce):
    """AskOnce whose edge holds a 4,000-byte parameter table (float32[1000])."""
    manifest = api.Manifest(name="heavy-edge", tracks=("plan",))

    def edge_setup(self, rng):
        return {"w": jnp.zeros((1000,), jnp.float32)}, {}


AskOnce = tiny_plan.AskOnce
