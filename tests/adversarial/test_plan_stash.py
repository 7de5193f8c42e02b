"""Route 2 (planning): a value stashed by one side on a shared object (a class
attribute, a module global) and read by the other. Under API v1 the world given to
the cloud reached the edge this way (success 1.000 on plan/fogmaze-small at 0
calls); sealed, each side's function is traced alone, so the stash is a leaked
tracer, or a constant the reader may not hold."""
import os
import sys

import pytest

import lsbench
from lsbench.errors import SealError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins"))
from plan_util import data_dir, plugin  # noqa: E402

MAZE, TILE = "plan/fogmaze-small", "plan/slidingtile-small"


def _refused(task, cls):
    with pytest.raises(SealError) as e:
        lsbench.run(task=task, method=cls, data_dir=data_dir())
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("name", ["StashOnClass", "StashGlobal"])
def test_world_stashed_by_the_cloud_is_refused(name):
    msg = _refused(MAZE, getattr(plugin("plan_stash"), name))
    assert msg.startswith("edge function edge_act") and "traced in another function" in msg


def test_planner_shared_through_the_class_is_refused():
    msg = _refused(TILE, plugin("plan_stash").SharedPlanner)
    assert msg.startswith("edge function edge_act") and "cloud view/planner" in msg


def test_edge_policy_shared_with_the_cloud_setup_is_refused():
    """The router may be fit on the edge's policy only if the policy went up (billed)."""
    msg = _refused(MAZE, plugin("plan_stash").RouterFreeUplink)
    assert msg.startswith("cloud function cloud_setup") and "edge view edge/params/edge" in msg
