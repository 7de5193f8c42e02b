"""Rounds as compiled scans (#19): the JAX sampler, scanned == round by round,
resume inside a scan, NaN inside a scan, loop == vmap with stragglers, and
metered bytes/FLOPs == the analytic count."""
import json
import os

import jax
import numpy as np
import pytest

from conftest import PLUGINS, TINY_METHOD
from lsbench.harness import sealed
from lsbench.harness.runner import RunConfig, execute, merge_hparams
from lsbench.harness.train_loop import TrainLoop
from lsbench.metering.flops import count_jaxpr
from lsbench.registry import load_method, load_task

SPEED = os.path.join(PLUGINS, "speed_plugins.py")
ONE_CHUNK, STRAGGLERS = SPEED + ":ONE_CHUNK", SPEED + ":STRAGGLERS"
NAN = SPEED + ":NanAtRound"
D, K = 5, 3                      # tiny_train: linear 5 -> 3 model
MODEL_BYTES = 4 * (D * K + K)
STEP_FLOPS_PER_ROW = 4 * D * K   # forward x @ w and the gradient x^T g, per real example


def _loop(task, method=TINY_METHOD, backend="vmap", seed=0, hp=None, bucket=None):
    spec = load_task(task)
    inst = spec.build("", seed)
    cls = load_method(method, spec)
    sides = sealed.build_sides(cls, "train", inst, merge_hparams(cls, hp),
                               sealed.Sealer(sealed.guard_for("train", inst), meter=count_jaxpr))
    return TrainLoop(inst, sides, seed, backend=backend, bucket=bucket)


def _run(tmp, task, name, method=TINY_METHOD, **kw):
    return execute(RunConfig(task=task, method=method, workdir=str(tmp / name), **kw), log=lambda s: None)


def _rows(tmp, name):
    rows = [json.loads(line) for line in open(tmp / name / "metrics.jsonl")]
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def test_sampler_draws_each_tier_its_share_from_the_root_seed():
    loop = _loop(STRAGGLERS)
    budget = loop.steps
    draws = [loop.sample(r) for r in range(loop.num_units)]
    short = 0
    for picks, steps in draws:
        for t in loop.tiers:
            ids = picks[t]
            assert len(ids) == loop.k[t] == len(set(ids.tolist()))          # the tier's share, distinct
            assert list(ids) == sorted(ids) and set(ids) <= set(loop.members[t].tolist())
            assert np.all((steps[ids] >= 1) & (steps[ids] <= budget[ids]))  # stragglers: 1..budget
            short += int((steps[ids] < budget[ids]).sum())
        rest = np.setdiff1d(np.arange(loop.C), np.concatenate(list(picks.values())))
        assert np.array_equal(steps[rest], budget[rest])
    assert short > 0  # some sampled clients straggled
    assert len({tuple(np.concatenate(list(p.values()))) for p, _ in draws}) > 1  # rounds differ
    again, other = _loop(STRAGGLERS), _loop(STRAGGLERS, seed=1)
    assert all(np.array_equal(np.concatenate(list(again.sample(r)[0].values())),
                              np.concatenate(list(draws[r][0].values()))) for r in range(loop.num_units))
    assert any(not np.array_equal(np.concatenate(list(other.sample(r)[0].values())),
                                  np.concatenate(list(draws[r][0].values()))) for r in range(loop.num_units))


def test_scanned_rounds_equal_round_by_round():
    """Six rounds in one scan == six calls of one round each (bit for bit)."""
    a, b = _loop(ONE_CHUNK), _loop(ONE_CHUNK)
    assert a.chunk == 6
    sa, rows_a, ok = a.run_units(a.init_state(), 0, 6)
    assert ok and len(rows_a) == 6
    sb, rows_b = b.init_state(), []
    for r in range(6):
        sb, row, ok = b.run_unit(sb, r)
        rows_b.append(row)
    assert rows_a == rows_b
    for x, y in zip(jax.tree_util.tree_leaves(sa), jax.tree_util.tree_leaves(sb)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("bucket", [0, 2])
def test_resume_inside_a_scan_equals_uninterrupted(tmp_path, bucket):
    """Four rounds of a 6-round scan, an Orbax checkpoint, a fresh process's loop
    restored from it, two more rounds: the same rows and state as six rounds at once
    (clients in one vmapped loop per tier, and in buckets of 2 sorted by step count)."""
    from lsbench.harness.checkpoint import Checkpointer
    full, rows_full, _ = (lp := _loop(ONE_CHUNK, bucket=bucket)).run_units(lp.init_state(), 0, 6)
    a = _loop(ONE_CHUNK, bucket=bucket)
    s4, rows_a, _ = a.run_units(a.init_state(), 0, 4)
    ck = Checkpointer(str(tmp_path / "ckpt"))
    ck.save(4, s4)
    ck.close()
    b = _loop(ONE_CHUNK, bucket=bucket)
    step, s4b = Checkpointer(str(tmp_path / "ckpt")).restore(b.init_state())
    assert step == 4
    s6, rows_b, ok = b.run_units(s4b, 4, 6)
    assert ok and rows_a + rows_b == rows_full
    for x, y in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(s6)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("backend", ["vmap", pytest.param("loop", marks=pytest.mark.slow)])
def test_nan_inside_a_scan_stops_at_that_round(tmp_path, backend):
    """NaN from round 4 on (inside the 6-round scan): 4 rows, diverged, 4 rounds billed."""
    f = _run(tmp_path, ONE_CHUNK, backend, method=NAN, backend=backend)
    assert f["status"] == "diverged" and f["units"] == 4
    assert [r["step"] for r in _rows(tmp_path, backend)] == [1, 2, 3, 4]
    clients = 4  # tiny_train: 4 of 6 clients per round
    assert f["costs"]["bytes_down"] == 4 * clients * (MODEL_BYTES + 4)  # the model and the round count
    assert f["costs"]["messages"] == 2 * 4 * clients


@pytest.mark.slow
def test_loop_and_scan_backends_equal_vmap(tmp_path):
    """Stragglers, two tiers: the vmap, scan and loop backends bill the same bytes
    and FLOPs and reach the same metrics."""
    v = _run(tmp_path, STRAGGLERS, "v")
    for backend in ("loop", "scan"):
        other = _run(tmp_path, STRAGGLERS, backend, backend=backend)
        assert v["costs"] == other["costs"]
        for k, x in v["metrics"].items():
            assert abs(x - other["metrics"][k]) < 1e-5, (backend, k)


def test_meters_equal_the_analytic_count(tmp_path):
    """Stragglers, two tiers: bytes and edge FLOPs billed == the count from the
    sampled clients' real examples (padding and masked rows never billed)."""
    v = _run(tmp_path, STRAGGLERS, "v")
    loop = _loop(STRAGGLERS)
    clients = real_rows = 0
    for r in range(loop.num_units):
        picks, steps = loop.sample(r)
        ids = np.concatenate(list(picks.values()))
        clients += len(ids)
        real_rows += int(np.minimum(loop.rows[ids], steps[ids] * loop.B).sum())
    c = v["costs"]
    assert c["bytes_down"] == clients * MODEL_BYTES
    assert c["bytes_up"] == clients * (MODEL_BYTES + 8)
    assert c["edge_flops"] == real_rows * STEP_FLOPS_PER_ROW


def test_bucketed_clients_bill_the_same_and_equal_one_loop():
    """Stragglers (a random step count per client), two tiers: clients sorted by
    step count and run in buckets of 1 or 2 (each bucket to its own longest client)
    bill the same bytes and FLOPs bit for bit, write the same rows, and end in the
    same state as one vmapped loop per tier (float tolerance)."""
    ref = _loop(STRAGGLERS, bucket=0)
    s0, rows0, ok0 = ref.run_units(ref.init_state(), 0, ref.num_units)
    assert ok0
    for b in (1, 2):
        lp = _loop(STRAGGLERS, bucket=b)
        assert max(lp.k.values()) > b  # some tier really is split into buckets
        s, rows, ok = lp.run_units(lp.init_state(), 0, lp.num_units)
        assert ok and {k: int(v) for k, v in s["costs"].items()} == {k: int(v) for k, v in s0["costs"].items()}
        assert [{k: v for k, v in r.items() if k != "train_loss"} for r in rows] == \
            [{k: v for k, v in r.items() if k != "train_loss"} for r in rows0]
        assert all(abs(r["train_loss"] - q["train_loss"]) < 1e-6 for r, q in zip(rows, rows0))
        for x, y in zip(jax.tree_util.tree_leaves(s), jax.tree_util.tree_leaves(s0)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)


SHARD_SCRIPT = r"""
import json, sys
import jax
import lsbench
task, method = sys.argv[1], sys.argv[2]
out = {"devices": len(jax.devices())}
for b in ("vmap", "shard"):
    f = lsbench.run(task, method, backend=b)
    out[b] = {"costs": f["costs"], "metrics": f["metrics"]}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_shard_backend_equals_vmap_on_four_devices():
    """Clients on a 4-device mesh (host devices), 5 clients per tier: padded to 8
    with masked clients that are never billed; the same costs and metrics as vmap."""
    import subprocess
    import sys

    from conftest import ROOT
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", LSBENCH_TIME_PROGRAMS="0",
               LSBENCH_PROGRESS="0")
    p = subprocess.run([sys.executable, "-c", SHARD_SCRIPT, SPEED + ":TEN", TINY_METHOD], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4
    v, s = out["vmap"], out["shard"]
    assert s["costs"] == v["costs"]
    assert v["costs"]["messages"] == 2 * 10 * 6  # 10 real clients a round, never the 2 x 4 masked ones
    assert v["costs"]["bytes_down"] == 10 * 6 * MODEL_BYTES
    for k, x in v["metrics"].items():
        assert abs(x - s["metrics"][k]) < 1e-5, k


def test_seed_batched_runs_equal_separate_runs(tmp_path, monkeypatch):
    """Three seeds as one vmapped program: each seed's run dir holds the costs of
    its separate run bit for bit, and its metrics within float tolerance."""
    import lsbench
    calls = []
    orig = TrainLoop.run_units_seeds
    monkeypatch.setattr(TrainLoop, "run_units_seeds",
                        staticmethod(lambda loops, *a: calls.append(len(loops)) or orig(loops, *a)))
    seeds = [0, 1, 2]
    batched = lsbench.run(STRAGGLERS, TINY_METHOD, seeds=seeds, workdir=str(tmp_path / "b" / "{seed}"))
    assert calls and set(calls) == {3}  # every chunk ran the three seeds together
    for s, f in zip(seeds, batched):
        alone = _run(tmp_path, STRAGGLERS, f"alone{s}", seed=s)
        assert f["seed"] == s and f["status"] == alone["status"] == "completed"
        assert f["costs"] == alone["costs"]
        for k, x in alone["metrics"].items():
            assert abs(x - f["metrics"][k]) < 1e-5, k
        rows_b, rows_a = _rows(tmp_path / "b", str(s)), _rows(tmp_path, f"alone{s}")
        assert [r["step"] for r in rows_b] == [r["step"] for r in rows_a]
        assert all(r["bytes_up"] == q["bytes_up"] and abs(r["train_loss"] - q["train_loss"]) < 1e-5
                   for r, q in zip(rows_b, rows_a))
    assert batched[0]["costs"] != batched[1]["costs"]  # the seeds sampled different clients
    # ... yet they are one point: the leaderboard groups them in one row (the partition differs per seed)
    assert len({f["fingerprint_id"] for f in batched}) == 1
