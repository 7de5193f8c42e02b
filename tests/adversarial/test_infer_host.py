"""Route 3 (inference): host callbacks. The pair (edge io_callback stores the
queries, cloud pure_callback reads them and answers rows that never sent) and
each half alone are refused with one line naming the callback."""
import os
import sys


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins"))
from infer_util import plugin, refused as _refused  # noqa: E402


def test_callback_pair_is_refused():
    msg = _refused(plugin("infer_host").CallbackPair)
    assert msg.startswith("edge function edge_query calls a host callback (io_callback)")


def test_cloud_pure_callback_is_refused():
    msg = _refused(plugin("infer_host").CloudPureCallback)
    assert msg.startswith("cloud function cloud_reply calls a host callback (pure_callback)")


def test_edge_debug_callback_is_refused():
    msg = _refused(plugin("infer_host").EdgeDebugCallback)
    assert msg.startswith("edge function edge_receive calls a host callback") and "debug_callback" in msg
