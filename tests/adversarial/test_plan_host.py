"""Routes 3 and 4 (planning): host callbacks, and work outside the meter
(constructors, NumPy at trace time). On the tiny corridor task, where one cloud
answer is enough to succeed and the edge alone is not. That setup work is metered
and billed instead (router-learned's fit on the cloud's calibration split, formerly
free in ``init``) is asserted in tests/test_planning.py
(test_router_setup_is_metered_and_billed) and, analytically, in
tests/test_plan_loop.py (test_plan_setup_is_metered_per_side)."""
import os
import sys

import pytest

import lsbench
from lsbench.errors import SealError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins"))
from plan_util import plugin  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "plugins", "tiny_plan.py") + ":TASK20"


def _refused(cls, tmp_path):
    with pytest.raises(SealError) as e:
        lsbench.run(task=TINY, method=cls, data_dir=str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_callback_pair_is_refused(tmp_path):
    msg = _refused(plugin("plan_host").CallbackPair, tmp_path)
    assert msg.startswith("cloud function cloud_reply calls a host callback (io_callback)")


def test_edge_pure_callback_is_refused(tmp_path):
    msg = _refused(plugin("plan_host").EdgePureCallback, tmp_path)
    assert msg.startswith("edge function edge_act calls a host callback (pure_callback)")


def test_cloud_debug_callback_is_refused(tmp_path):
    msg = _refused(plugin("plan_host").CloudDebugCallback, tmp_path)
    assert msg.startswith("cloud function cloud_reply calls a host callback") and "debug_callback" in msg


def test_constructor_work_is_refused(tmp_path):
    mod = plugin("plan_host")
    assert "its constructor does JAX work" in _refused(mod.ConstructorJaxWork, tmp_path)
    assert "its constructor stores an array in self.table" in _refused(mod.ConstructorNumpyArray, tmp_path)


def test_trace_time_numpy_is_refused(tmp_path):
    msg = _refused(plugin("plan_host").TraceTimeNumpy, tmp_path)
    assert msg.startswith("edge function edge_act") and "no array of its view" in msg


def test_the_corridor_edge_alone_does_not_succeed(tmp_path):
    """The baseline these hostiles compete with: no messages, no success on every episode."""
    f = lsbench.run(task=TINY, method=plugin("plan_host")._Corridor, data_dir=str(tmp_path))
    assert f["costs"]["bytes_up"] == 0 and f["metrics"]["success"] < 1.0


def test_success_after_the_episode_ends_does_not_count(tmp_path):
    """A finished episode's state is frozen but still stepped (vmapped); a success there
    is not a success. The attack reaches the goal only after its budget ran out."""
    f = lsbench.run(task=TINY, method=plugin("plan_host").SucceedsAfterTheEnd, data_dir=str(tmp_path))
    assert f["costs"]["bytes_up"] > 0 and f["metrics"]["calls_per_episode"] == 1.0
    assert f["metrics"]["success"] == 0.0
