"""Edge budgets: declared by the task, measured by the loop (edge_footprint),
enforced by the runner (status over_budget), shown unranked on the leaderboard."""
import os

import jax.numpy as jnp
import pytest

from conftest import PLUGINS
from lsbench.errors import TaskError
from lsbench.harness import budgets



def test_check_and_margins():
    limits = {"param_bytes": 100, "flops_per_example": 50, "state_bytes": 10}
    foot = {"param_bytes": 120, "flops_per_example": 50}
    over = budgets.check(limits, foot)
    assert len(over) == 1 and "edge parameter bytes 120 exceed the task's budget of 100" in over[0]
    m = budgets.margins(limits, foot)
    assert m["param_bytes"] == {"limit": 100, "used": 120, "margin": -20, "ok": False}
    assert m["flops_per_example"] == {"limit": 50, "used": 50, "margin": 0, "ok": True}
    assert m["state_bytes"] == {"limit": 10, "used": None, "margin": None, "ok": None}  # not measured
    assert budgets.check({}, foot) == [] and budgets.margins({}, foot) == {}


def test_bad_budgets_are_the_tasks_error():
    with pytest.raises(TaskError, match="unknown edge budget 'ram'"):
        budgets.validate({"ram": 3}, "task t")
    with pytest.raises(TaskError, match="param_bytes must be a non-negative number"):
        budgets.validate({"param_bytes": -1})


def test_tree_bytes():
    assert budgets.tree_bytes({"a": jnp.zeros((3, 4)), "b": jnp.zeros(5, jnp.int8), "c": 3}) == 48 + 5


# --------------------------------------------------------------- the runner enforces
BUDGET = os.path.join(PLUGINS, "tiny_budget.py")


def test_a_method_over_its_edge_parameter_budget_ends_over_budget(tmp_path):
    import lsbench
    from lsbench.results import schema
    final = lsbench.run(f"{BUDGET}:TASK", f"{BUDGET}:HeavyEdge", workdir=str(tmp_path / "heavy"))
    assert final["status"] == "over_budget"
    assert final["budget_margins"]["param_bytes"]["used"] >= 4000
    assert final["budget_margins"]["param_bytes"]["margin"] < 0
    assert "edge parameter bytes" in final["error"] and "1,024" in final["error"]
    on_disk = schema.load_final(str(tmp_path / "heavy" / "final.json"))
    assert on_disk["status"] == "over_budget" and on_disk["costs"]["bytes_up"] == 0  # nothing ran
    # the same method within a larger budget completes
    ok = lsbench.run(f"{BUDGET}:ROOMY", f"{BUDGET}:HeavyEdge", workdir=str(tmp_path / "fits"))
    assert ok["status"] == "completed" and ok["budget_margins"]["param_bytes"]["ok"] is True
    # ... and the leaderboard shows the over-budget run, unranked
    from lsbench.leaderboard.load import load_results
    from lsbench.leaderboard.summary import summarize
    rows = summarize(load_results([str(tmp_path / "heavy")]))["test/tiny-plan-budget"]["rows"]
    assert len(rows) == 1 and rows[0]["rank"] is None and rows[0]["unranked"] == "over budget"


def test_task_declaring_an_unknown_budget_fails_before_the_run(tmp_path):
    import lsbench
    with pytest.raises(TaskError, match="unknown edge budget 'ram'"):
        lsbench.run(f"{BUDGET}:BAD", f"{BUDGET}:AskOnce", workdir=str(tmp_path / "bad"))
    assert not os.path.exists(tmp_path / "bad" / "manifest.json")
