"""plan/keydoor: the cloud knows the published layout, never the live key cells
(misplaced keys are visible only in the edge's window). A cloud that reads them
from a rebuilt task is refused with one line naming the hidden data; with sealing
off the same plugin's single subgoal list would succeed where honest ``subgoal``
fails, so the refusal is what stops it. That the world itself carries nothing
live (identical bytes whether or not a key was moved) is asserted in
tests/test_keydoor.py::test_cloud_world_is_the_published_layout."""
import os
import sys

import pytest

from lsbench.errors import SealError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins"))
from plan_util import plugin, unsealed_run  # noqa: E402


def _seal(inst, cls):
    """Seals and preflights ``cls`` on the built task exactly as ``lsbench run`` does."""
    from lsbench.harness import preflight, sealed
    from lsbench.harness.plan_loop import PlanLoop
    from lsbench.harness.runner import merge_hparams
    from lsbench.metering.flops import count_jaxpr
    from lsbench.registry import load_task
    sides = sealed.build_sides(cls, "plan", inst, merge_hparams(cls, {}),
                               sealed.Sealer(sealed.guard_for("plan", inst), meter=count_jaxpr))
    preflight.check(PlanLoop(inst, sides, 0), load_task("plan/keydoor-small"), cls)


def test_cloud_reading_the_live_keys_is_refused():
    mod = plugin("keydoor_live")
    with pytest.raises(SealError) as e:
        _seal(mod.rebuilt(), mod.LiveKeysCloud)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("cloud function cloud_reply")
    assert "hidden task data/instances" in msg


@pytest.mark.slow  # two unsealed runs of the -small tier
def test_unsealed_the_live_keys_would_rescue_one_subgoal_list():
    from baselines.plan_subgoal import Subgoal
    mod = plugin("keydoor_live")
    inst = mod.rebuilt()
    cheat, honest = unsealed_run(inst, mod.LiveKeysCloud), unsealed_run(inst, Subgoal)
    assert cheat["metrics"]["calls_per_episode"] == honest["metrics"]["calls_per_episode"] == 1.0
    # one list on the live keys: cloud-only's success (>= 0.95) where honest subgoal misses keys
    assert cheat["metrics"]["success"] >= 0.95 and cheat["metrics"]["success"] >= honest["metrics"]["success"] + 0.05
