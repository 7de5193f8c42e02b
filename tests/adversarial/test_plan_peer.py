"""Route: information between a team's agents, or to the cloud, outside the metered
uplink (issue 15, debate). The peer message is billed and reaches no one: sent to the
cloud it gains nothing; stashed for the cloud it is refused. A team's agents run as
their own sealed programs, one member each: a team that deliberates over its members'
beliefs without sending them through the peer channel is refused, and with the team
guard off the same attack changes what the team does while paying only its K - 1 votes.
Runs on the first 32 test episodes of plan/slidingtile-small."""
import dataclasses
import os
import sys

import jax
import numpy as np
import pytest

from lsbench.errors import SealError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins"))
from plan_util import data_dir, plugin  # noqa: E402

TILE = "plan/slidingtile-small"
_INST = {}


def _inst():
    if TILE not in _INST:
        from lsbench.registry import load_task
        full = load_task(TILE).build(data_dir(), 0)
        sub = jax.tree_util.tree_map(lambda a: np.asarray(a)[:32], full.instances)
        _INST[TILE] = dataclasses.replace(full, instances=sub, num_episodes=32, val_instances=None, num_val=0)
        plugin("plan_rebuild").REBUILT.setdefault(TILE, full)  # the team attacks' out-of-view source
    return _INST[TILE]


def _run(cls, hp=None):
    """(trajectories, costs) of a sealed run through the plan loop."""
    from lsbench.harness import sealed
    from lsbench.harness.plan_loop import PlanLoop
    from lsbench.harness.runner import merge_hparams
    from lsbench.metering.flops import count_jaxpr
    inst = _inst()
    sealer = sealed.Sealer(sealed.guard_for("plan", inst), meter=count_jaxpr)
    loop = PlanLoop(inst, sealed.build_sides(cls, "plan", inst, merge_hparams(cls, hp or {}), sealer), 0)
    st = loop.init_state()
    for u in range(loop.num_units):
        st, _, _ = loop.run_unit(st, u)
    return loop.trajectories(st), {k: int(v) for k, v in st["costs"].items()}


def test_state_sent_to_the_cloud_as_a_peer_message_gains_nothing():
    """The cloud's replies (hence every step) are those of a zero uplink; the peer
    message is still billed, every active step."""
    p = plugin("plan_peer")
    ctl, _ = _run(p.ZeroUplink)
    atk, costs = _run(p.PeerToCloud)
    for k in ("steps", "calls", "sent"):
        np.testing.assert_array_equal(atk[k], ctl[k], err_msg=k)
    np.testing.assert_array_equal(atk["info"]["success"], ctl["info"]["success"])
    up = costs["bytes_up"] // max(int(atk["calls"].sum()), 1)  # the state's bytes
    assert up > 0 and costs["peer_bytes"] == up * int(atk["steps"].sum())


def test_peer_message_stashed_for_the_cloud_is_refused():
    with pytest.raises(SealError) as e:
        _run(plugin("plan_peer").PeerStash)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("cloud function cloud_reply") and "traced in another" in msg


HP = {"agents": 3, "rounds": 2, "noise": 0.0, "trust": 2.0, "temp": 0.0}


@pytest.mark.parametrize("attack,where", [("FreeDebate", "edge function edge_setup"),
                                          ("AgentPeeks", "agent function agent_round[r=0]")])
def test_agents_reading_each_others_beliefs_are_refused(attack, where):
    """Deliberating over the other agents' members outside the peer channel is refused, by
    the acting agent (FreeDebate) or by any agent (AgentPeeks)."""
    with pytest.raises(SealError) as e:
        _run(getattr(plugin("plan_peer"), attack), HP)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(where) and "edge_ensemble" in msg and "may not see" in msg


def test_with_the_team_guard_off_free_deliberation_gains():
    """What the refusal stops: sealed but with the team guard off (the guard of the edge
    view as a whole, as before teams), each attack runs; its free rounds make the team
    agree more, so it asks the cloud less than the honest R = 0 team, while it is billed
    exactly that team's K - 1 vote bytes per step."""
    from lsbench.harness import sealed
    p = plugin("plan_peer")
    honest, hc = _run(p.Debate, {**HP, "rounds": 0})
    orig = sealed.Guard.for_team
    try:
        sealed.Guard.for_team = lambda self, *a: self
        for attack in (p.FreeDebate, p.AgentPeeks):
            free, fc = _run(attack, HP)
            assert free["calls"].sum() < honest["calls"].sum(), attack.__name__
            assert fc["peer_bytes"] == int(free["steps"].sum()) * (HP["agents"] - 1)
    finally:
        sealed.Guard.for_team = orig


def test_an_agent_whispering_past_its_inbox_is_refused():
    with pytest.raises(SealError) as e:
        _run(plugin("plan_peer").AgentWhisper, HP)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("agent function agent_round") and "traced in another" in msg
