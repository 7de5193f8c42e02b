"""Route 3 (inference): host callbacks. The pair (edge io_callback stores the
queries, cloud pure_callback reads them and answers rows that never sent) and
each half alone are refused with one line naming the callback."""
import os
import sys

import pytest

import lsbench
from lsbench.errors import SealError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins"))
from infer_util import TASK, data_dir, plugin  # noqa: E402


@pytest.fixture(autouse=True)
def _no_timing(monkeypatch):
    monkeypatch.setenv("LSBENCH_TIME_PROGRAMS", "0")


def _refused(cls):
    with pytest.raises(SealError) as e:
        lsbench.run(task=TASK, method=cls, data_dir=data_dir())
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_callback_pair_is_refused():
    msg = _refused(plugin("infer_host").CallbackPair)
    assert msg.startswith("edge function edge_query calls a host callback (io_callback)")


def test_cloud_pure_callback_is_refused():
    msg = _refused(plugin("infer_host").CloudPureCallback)
    assert msg.startswith("cloud function cloud_reply calls a host callback (pure_callback)")


def test_edge_debug_callback_is_refused():
    msg = _refused(plugin("infer_host").EdgeDebugCallback)
    assert msg.startswith("edge function edge_receive calls a host callback") and "debug_callback" in msg
