"""Debate vs self-consistency (issue 15), on plan/slidingtile-small (its first 64 test
episodes, no validation: the invariants hold per episode): peer bytes metered by the
harness's peer channel are the analytic count, ensemble is debate with R = 0 and behaves
as the old ensemble did, the two methods pay the same edge FLOPs up to debate's mixing
products, and the update rule reads the messages the channel delivered."""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from baselines.plan_debate import Debate, SelfConsistency
from baselines.plan_reference import Buffered
from lsbench import api

pytestmark = pytest.mark.filterwarnings("ignore")
TILE = "plan/slidingtile-small"
EPISODES = 32
_BUILT = {}


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    from lsbench.registry import load_task
    data_dir = os.environ.get("LSBENCH_DATA_DIR") or str(tmp_path_factory.mktemp("plandata"))
    if data_dir not in _BUILT:
        full = load_task(TILE).build(data_dir, 0)
        sub = jax.tree_util.tree_map(lambda a: np.asarray(a)[:EPISODES], full.instances)
        _BUILT[data_dir] = dataclasses.replace(full, instances=sub, num_episodes=EPISODES,
                                               val_instances=None, num_val=0)
    return _BUILT[data_dir]


_RUNS = {}


def _run(inst, cls, hp):
    """``_loop(inst, cls, hp)``, run once per (class, hparams) in this module."""
    key = (cls.__name__, tuple(sorted(hp.items())))
    if key not in _RUNS:
        _RUNS[key] = _loop(inst, cls, hp)
    return _RUNS[key]


def _loop(inst, cls, hp, run=True, task=TILE):
    """The plan loop over ``cls`` built per side and sealed (as lsbench run does); with
    ``run``, its finished state too."""
    from lsbench.harness import preflight, sealed
    from lsbench.harness.plan_loop import PlanLoop
    from lsbench.harness.runner import merge_hparams
    from lsbench.metering.flops import count_jaxpr
    from lsbench.registry import load_task
    sealer = sealed.Sealer(sealed.guard_for("plan", inst), meter=count_jaxpr)
    loop = PlanLoop(inst, sealed.build_sides(cls, "plan", inst, merge_hparams(cls, hp), sealer), 0)
    preflight.check(loop, load_task(task), cls)
    if not run:
        return loop, None
    st = loop.init_state()
    for u in range(loop.num_units):
        st, _, _ = loop.run_unit(st, u)
    return loop, st


class OldEnsemble(Buffered):
    """The ensemble as it was before debate (baselines/plan_ensemble.py at 892c53f): the
    reference the R = 0 case must reproduce."""
    manifest = api.Manifest(name="old-ensemble", tracks=("plan",))
    default_hparams = {"k": 4, "agree": 1.0}

    def edge_setup(self, rng):
        return {"policy": self.view.params["edge_ensemble"]}, {}

    def _votes(self, es, obs):
        logits = jax.vmap(self.view.models["edge"].apply, (0, None))(es["policy"], obs)
        return jnp.argmax(logits, -1), jax.nn.softmax(logits).mean(0)

    @staticmethod
    def _vote_logits(votes, p):
        counts = jnp.zeros(p.shape[0]).at[votes].add(1.0)
        return jnp.log(counts + 1e-3 * p)

    def trigger(self, es, carry, obs, logits, rng):
        K = jax.tree_util.tree_leaves(es["policy"])[0].shape[0]
        return jnp.exp(logits).max() < self.hp["agree"] * K - 1e-3

    def edge_query(self, es, carry, obs, rng):
        votes, p = self._votes(es, obs)
        q = self.query_from(es, carry, obs, rng, self._vote_logits(votes, p))
        return q._replace(peer={"votes": votes[1:].astype(jnp.uint8)})


TRAJ = ("steps", "calls", "bytes_up", "bytes_down", "peer_bytes", "edge_flops", "cloud_flops", "sent")


def test_debate_with_no_rounds_is_the_old_ensemble(inst):
    """R = 0: the same calls, actions' outcomes, bytes, peer bytes and matmul FLOPs per
    episode (all FLOPs, elementwise included, within 0.1%: the carry holds the agents'
    policy memories)."""
    from baselines.plan_ensemble import Ensemble
    old_loop, old_st = _loop(inst, OldEnsemble, {"agree": 1.0})
    new_loop, new_st = _run(inst, Ensemble, {"agree": 1.0})
    old, new = old_loop.trajectories(old_st), new_loop.trajectories(new_st)
    for k in TRAJ:
        np.testing.assert_array_equal(old[k], new[k], err_msg=k)
    np.testing.assert_array_equal(old["info"]["success"], new["info"]["success"])
    oc, nc = ({k: int(v) for k, v in st["costs"].items()} for st in (old_st, new_st))
    assert {k: v for k, v in oc.items() if not k.endswith("_all")} == \
        {k: v for k, v in nc.items() if not k.endswith("_all")}
    assert nc["edge_flops_all"] == pytest.approx(oc["edge_flops_all"], rel=1e-3)
    assert new_loop.edge_footprint(new_st) == old_loop.edge_footprint(old_st)  # the K agents hold the M members
    assert old["calls"].sum() > 0  # the teams did disagree and ask


def test_peer_bytes_are_the_analytic_count(inst):
    """Every active step, metered by the harness's peer channel: R rounds x K agents x A
    bytes (quantized beliefs, broadcast) + K - 1 one-byte votes to the acting agent. With
    trust 0 (no noise, argmax votes) the rounds change nothing an agent does: the same
    calls, steps and outcomes as the ensemble (R = 0)."""
    from baselines.plan_ensemble import Ensemble
    K, R, A = 3, 2, inst.edge_view.env.num_actions
    loop, st = _run(inst, Debate, {"agents": K, "rounds": R, "temp": 0.0, "noise": 0.0, "trust": 0.0})
    t = loop.trajectories(st)
    np.testing.assert_array_equal(t["peer_bytes"], t["steps"] * (R * K * A + K - 1))
    assert int(st["costs"]["peer_bytes"]) == int(t["steps"].sum()) * (R * K * A + K - 1)
    assert t["calls"].sum() > 0
    e_loop, e_st = _run(inst, Ensemble, {"agree": 1.0})
    base = e_loop.trajectories(e_st)
    for k in ("steps", "calls", "bytes_up", "bytes_down"):
        np.testing.assert_array_equal(t[k], base[k], err_msg=k)
    np.testing.assert_array_equal(t["info"]["success"], base["info"]["success"])


@pytest.mark.parametrize("K,R", [(3, 1), (5, 2)])
def test_equal_edge_compute(inst, K, R):
    """Self-consistency runs K (R + 1) forward passes of one policy per step; debate the
    same passes plus R [K, K] x [K, A] mixing products: the meter's edge FLOPs per step
    differ by exactly R x 2 K^2 A, under 2% of the total."""
    from baselines.plan_reference import EdgeOnly
    one = _loop(inst, EdgeOnly, {}, run=False)[0].edge_footprint(None)["flops_per_example"]
    d = _loop(inst, Debate, {"agents": K, "rounds": R}, run=False)[0].edge_footprint(None)["flops_per_example"]
    s = _loop(inst, SelfConsistency, {"agents": K, "rounds": R}, run=False)[0].edge_footprint(
        None)["flops_per_example"]
    A = inst.edge_view.env.num_actions
    assert s == K * (R + 1) * one
    assert d - s == R * 2 * K * K * A
    assert (d - s) / s < 0.02


def test_the_update_reads_the_peers_messages(inst):
    """With high trust the beliefs the channel delivers move the agents' votes to
    agreement: fewer cloud calls than the same team with trust 0 (no noise, argmax votes;
    at trust 0 the rounds change nothing, see the analytic-count test)."""
    hp = {"agents": 3, "rounds": 2, "temp": 0.0, "noise": 0.0}
    loop0, st0 = _run(inst, Debate, {**hp, "trust": 0.0})
    loop5, st5 = _run(inst, Debate, {**hp, "trust": 5.0})
    t0, t5 = loop0.trajectories(st0), loop5.trajectories(st5)
    assert t5["calls"].sum() < t0["calls"].sum()
    np.testing.assert_array_equal(t5["peer_bytes"], t5["steps"] * (2 * 3 * inst.edge_view.env.num_actions + 2))


def test_team_resume_equals_uninterrupted_and_bills_the_rounds(tmp_path):
    """A team on the tiny corridor (tests/plugins/tiny_team.py: K = 3, R = 1, 4-byte
    broadcasts, 1-byte reports): peer bytes = (R K 4 + K - 1) x active steps; the agents'
    states (from their own setup keys) are checkpointed, so a resumed run equals an
    uninterrupted one; the agents' reports decide the calls."""
    from lsbench.harness.runner import RunConfig, execute
    from conftest import PLUGINS
    task = os.path.join(PLUGINS, "tiny_plan.py") + ":TASK"
    method = os.path.join(PLUGINS, "tiny_team.py") + ":TinyTeam"

    def run(name, **kw):
        cfg = RunConfig(task=task, method=method, seed=0, workdir=str(tmp_path / name),
                        data_dir=str(tmp_path / "d"), **kw)
        return execute(cfg, log=lambda s: None)

    full = run("full")
    assert 0 < full["metrics"]["calls_per_episode"] < 1  # some episodes' teams asked, some not
    part = run("cut", max_units=1)
    assert part["stopped_early"]
    resumed = run("cut", resume=True)
    assert resumed["metrics"] == full["metrics"] and resumed["costs"] == full["costs"]
    from lsbench.registry import load_method, load_task
    inst = load_task(task).build(str(tmp_path / "d"), 0)
    loop, st = _loop(inst, load_method(method, load_task(task)), {}, task=task)
    t = loop.trajectories(st)
    np.testing.assert_array_equal(t["peer_bytes"], t["steps"] * (1 * 3 * 4 + 2))
    assert int(st["costs"]["peer_bytes"]) == full["costs"]["peer_bytes"]
