"""Route 2 (training): a value stashed by one side (a class attribute, a module
global) and read by the other. Each side's function is traced alone into its
own program, so the stash is a tracer of another trace: refused with one line
naming the reading function."""
import pytest

import lsbench
from lsbench.errors import SealError

from ._train_util import TINY, plugin


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setenv("LSBENCH_TIME_PROGRAMS", "0")


def _refused(name):
    mod = plugin("train_stash")
    mod.STASH.clear()
    cls = type(name, (getattr(mod, name),), {})  # a fresh class: no stash left from another test
    with pytest.raises(SealError) as e:
        lsbench.run(task=TINY, method=cls)
    msg = str(e.value)
    assert "\n" not in msg and "traced in another function" in msg
    return msg


def test_uplinks_stashed_on_the_class_by_cloud_update_are_refused():
    msg = _refused("StashOnClass")
    assert msg.startswith("edge function") and "predict_edge" in msg


def test_cloud_state_stashed_in_a_global_by_cloud_downlink_is_refused():
    msg = _refused("StashGlobal")
    assert msg.startswith("edge function") and "client_init" in msg


def test_cloud_setup_state_stashed_for_edge_setup_is_refused():
    msg = _refused("StashGlobalInEdgeSetup")
    assert msg.startswith("edge function") and "edge_setup" in msg
