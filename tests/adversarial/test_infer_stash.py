"""Route 2 (inference): a value stashed by one side on a shared object (a class
attribute, a module global) and read by the other: the cloud's answers or the
delivered queries (to answer rows that never sent), the cloud's params (to answer
on the edge), the edge's params (to fit a router without sending them up). Sealed,
each side's function is traced alone: the stash is a leaked tracer, or a constant
the reader may not hold."""
import os
import sys


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins"))
from infer_util import plugin, refused as _refused  # noqa: E402


def test_reply_stashed_on_the_class_is_refused():
    msg = _refused(plugin("infer_stash").StashReplyOnClass)
    assert msg.startswith("edge function edge_receive") and "traced in another function" in msg


def test_uplink_stashed_in_a_global_is_refused():
    msg = _refused(plugin("infer_stash").StashUplinkGlobal)
    assert msg.startswith("edge function finalize") and "traced in another function" in msg


def test_cloud_params_shared_through_the_class_are_refused():
    msg = _refused(plugin("infer_stash").StashCloudParams)
    assert msg.startswith("edge function edge_query") and "cloud view/params/cloud/" in msg


def test_edge_params_shared_with_cloud_setup_are_refused():
    """The router may be fit on the edge's params only if they went up (billed)."""
    msg = _refused(plugin("infer_stash").RouterFreeUplink)
    assert msg.startswith("cloud function cloud_setup") and "edge view edge/params/edge/" in msg
