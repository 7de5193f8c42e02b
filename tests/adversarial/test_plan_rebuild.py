"""Route 1 (planning): the edge rebuilds the task in-process and uses the cloud's
planner, its distance table, or the hidden test worlds as constants. Refused with
one line naming the asset; with sealing off the same plugin scores the cloud's
success at 0 bytes and 0 cloud FLOPs, so the refusal is what stops it."""
import os
import sys

import pytest

import lsbench
from lsbench.errors import SealError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins"))
from plan_util import data_dir, plugin, unsealed_run  # noqa: E402

TILE, MAZE = "plan/slidingtile-small", "plan/fogmaze-small"


def _refused(task, cls):
    with pytest.raises(SealError) as e:
        lsbench.run(task=task, method=cls, data_dir=data_dir())
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("edge function ")
    return msg


def test_rebuilding_the_task_inside_a_side_function_is_refused():
    """Building the task at trace time is eager JAX work outside the meter."""
    mod = plugin("plan_rebuild")
    mod.REBUILT.pop(TILE, None)
    msg = _refused(TILE, mod.CallsPlanner)
    assert "does eager JAX work" in msg


def test_calling_the_rebuilt_planner_is_refused():
    mod = plugin("plan_rebuild")
    mod.rebuilt(TILE)  # rebuilt beforehand (at import time, say): the constants route
    msg = _refused(TILE, mod.CallsPlanner)
    assert "edge_act" in msg and "cloud view/planner" in msg and "may not see" in msg
    # With sealing off: the cloud's success, nothing sent, no cloud FLOPs.
    out = unsealed_run(mod.rebuilt(TILE), mod.CallsPlanner)
    assert out["metrics"]["success"] == 1.0
    assert out["costs"]["bytes_up"] == out["costs"]["bytes_down"] == out["costs"]["cloud_flops"] == 0


def test_holding_the_distance_table_is_refused():
    mod = plugin("plan_rebuild")
    mod.rebuilt(TILE)
    msg = _refused(TILE, mod.HoldsTable)
    assert "cloud view/planner" in msg  # a cast copy has the same content
    msg = _refused(TILE, mod.HoldsShiftedTable)
    assert "362880-element constant that is no array of its view" in msg


def test_reading_the_hidden_worlds_is_refused():
    mod = plugin("plan_rebuild")
    mod.rebuilt(MAZE)
    msg = _refused(MAZE, mod.ReadsWorlds)
    assert "hidden task data/instances" in msg


def test_reading_a_slice_of_the_hidden_worlds_is_refused():
    """Hidden data is keyed per row too, so all episodes but one are caught."""
    mod = plugin("plan_rebuild")
    mod.rebuilt(MAZE)
    msg = _refused(MAZE, mod.ReadsWorldSlices)
    assert "row" in msg
