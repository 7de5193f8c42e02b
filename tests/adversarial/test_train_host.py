"""Route 3 (training): host callbacks in a metered function (io_callback on the
edge, pure_callback on the cloud, jax.debug.callback) are refused with one line
naming the function and the callback."""
import pytest

import lsbench
from lsbench.errors import SealError

from ._train_util import TINY, plugin


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setenv("LSBENCH_TIME_PROGRAMS", "0")


@pytest.mark.parametrize("name,side,fn,prim", [
    ("IoCallbackEdge", "edge", "client_final", "io_callback"),
    ("PureCallbackCloud", "cloud", "cloud_downlink", "pure_callback"),
    ("DebugCallbackEdge", "edge", "client_step", "callback"),
])
def test_host_callbacks_are_refused(name, side, fn, prim):
    with pytest.raises(SealError) as e:
        lsbench.run(task=TINY, method=getattr(plugin("train_host"), name))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{side} function") and fn in msg
    assert "host callback" in msg and prim in msg
    assert not plugin("train_host").HOST  # refused before anything ran
