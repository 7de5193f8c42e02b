"""The suite runner on the test plugins: grid expansion, failures, SIGKILL + resume."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import PLUGINS, ROOT, TINY_METHOD, TINY_TASK, cli
from lsbench.suite.grid import GridError, expand, load_preset, pick_points, point_label
from lsbench.leaderboard.load import load_results
from lsbench.results.schema import load_final

INFER = os.path.join(PLUGINS, "tiny_infer.py")
PLAN = os.path.join(PLUGINS, "tiny_plan.py")


def write_preset(tmp_path, groups, seeds=(0,), name="tiny"):
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps({"name": name, "seeds": list(seeds), "groups": groups}))
    return str(p)


def test_shipped_presets_parse_and_demo_covers_each_track():
    for name in ("demo", "quick", "full"):
        p = load_preset(name)
        assert p["groups"] and p["seeds"]
    assert len(load_preset("full")["seeds"]) == 3 and load_preset("quick")["seeds"] == [0]
    demo = load_preset("demo")
    tracks = {t.split("/")[0]: len(g["methods"]) for g in demo["groups"] for t in g["tasks"]}
    assert set(tracks) == {"train", "infer", "plan"} and min(tracks.values()) >= 3


def test_pick_points_and_labels():
    sweep = [{"lr": x} for x in (0.1, 0.2, 0.3, 0.4, 0.5)]
    assert pick_points(sweep, True) == [{}] + sweep and pick_points(sweep, False) == [{}]
    # N: the default and N-1 points spread over the interior (the extremes are often reference copies)
    assert pick_points(sweep, 3) == [{}, sweep[1], sweep[3]] and pick_points(sweep, 9) == [{}] + sweep
    assert pick_points(sweep, 2, {"lr": 0.3}) == [{}, sweep[3]]    # lr=0.3 is the default: not picked again
    assert pick_points((), True) == [{}] and pick_points(sweep, 1) == [{}]
    with pytest.raises(GridError):
        pick_points(sweep, "all")
    assert point_label({}) == "default" and point_label({"tau": 0.8, "codec_up": "int8"}) == "tau=0.8,codec_up=int8"


def test_grid_expansion_filters_and_unresolvable_entries(tmp_path):
    preset = load_preset(write_preset(tmp_path, [
        {"tasks": [TINY_TASK], "methods": [TINY_METHOD], "sweep": True},
        {"tasks": [INFER + ":TASK"], "methods": [{"name": INFER + ":Cascade", "sweep": 2}, "no-such-method"]},
        {"tasks": ["train/no-such-task"], "methods": ["fedavg"]}], seeds=(0, 1)))
    items = expand(preset)
    ids = [it.id for it in items]
    assert len(ids) == len(set(ids)) == (2 + 2 + 1 + 1) * 2
    train = [it for it in items if it.task_name == "test/tiny-train"]
    # lr=0.5 is the default: collapsed into "default", and the plan says so
    assert {it.point for it in train} == {"default", "lr=0.1"} and {it.seed for it in train} == {0, 1}
    assert all(it.hparams == ({} if it.point == "default" else {"lr": float(it.point.split("=")[1])})
               for it in train)
    bad = [it for it in items if it.error]
    assert {it.label for it in bad} == {"no-such-method", "fedavg"}
    assert all("\n" not in it.error and it.error for it in bad)
    assert train[0].workdir("/s") == f"/s/runs/test/tiny-train/sgd_fedavg/{train[0].point}/seed{train[0].seed}"
    only = expand(preset, seeds=[3], tracks=["infer"], methods=["tiny_infer:*"])
    assert [(it.label, it.point, it.seed) for it in only] == [
        ("tiny_infer:Cascade", "default", 3), ("tiny_infer:Cascade", "tau=1.01", 3)]
    assert expand(preset, tasks=["nothing*"]) == []


def test_cli_bad_input_one_line(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    for args in (["--preset=nope", f"--workdir={tmp_path}"], [f"--preset={bad_json}", f"--workdir={tmp_path}"],
                 ["--preset=demo"], ["--preset=demo", f"--workdir={tmp_path}", "--workers=0"],
                 ["--preset=demo", f"--workdir={tmp_path}", "--tracks=cloud"],
                 ["--preset=demo", f"--workdir={tmp_path}", "--seeds=a"],
                 ["--preset=demo", f"--workdir={tmp_path}", "--tasks=zzz"],
                 ["--preset=demo", f"--workdir={tmp_path}", "--shard=2/2"]):
        r = cli("suite", *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("lsbench: error:"), r.stderr
    assert not (tmp_path / "suite.json").exists()


def _suite_cmd(preset, wd, *extra):
    return [sys.executable, "-m", "lsbench.cli.main", "suite", f"--preset={preset}", f"--workdir={wd}", *extra]


def test_sigkill_then_rerun_skips_finished_runs_and_completes(tmp_path):
    preset = write_preset(tmp_path, [
        {"tasks": [INFER + ":TASK"], "methods": [INFER + ":Cascade"], "sweep": 2},
        {"tasks": [PLAN + ":TASK"], "methods": [PLAN + ":AskOnce", "no-such-method"]}])
    wd = tmp_path / "suite"
    dry = subprocess.run(_suite_cmd(preset, wd, "--dry_run"), capture_output=True, text=True, cwd=ROOT)
    assert dry.returncode == 0 and "4 runs" in dry.stdout and not wd.exists()
    p = subprocess.Popen(_suite_cmd(preset, wd, "--workers=1"), cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline, first = time.time() + 240, []
    while time.time() < deadline and not first and p.poll() is None:
        first = [os.path.join(d, "final.json") for d, _, fs in os.walk(wd / "runs") if "final.json" in fs]
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert len(first) == 1, "the suite should be killed right after its first run"
    mtime = os.stat(first[0]).st_mtime_ns
    mid = json.load(open(wd / "suite.json"))
    assert mid["counts"]["total"] == 4 and mid["counts"].get("pending", 0) >= 1
    r = subprocess.run(_suite_cmd(preset, wd, "--workers=2"), capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert os.stat(first[0]).st_mtime_ns == mtime              # not redone
    s = json.load(open(wd / "suite.json"))
    assert s["counts"] == {"total": 4, "completed": 3, "failed": 1}
    by = {(x["method"], x["sweep_point"]): x for x in s["runs"]}
    assert "unknown method 'no-such-method'" in by[("no-such-method", "default")]["reason"]
    skipped = [x for x in s["runs"] if x.get("skipped")]
    assert [os.path.join(wd, x["workdir"], "final.json") for x in skipped] == first
    assert "done" in r.stdout and "remaining" in r.stdout       # progress lines
    for x in s["runs"]:
        if x["status"] == "completed":
            f = load_final(os.path.join(wd, x["workdir"], "final.json"))
            assert f["sweep_point"] == x["sweep_point"] and f["seed"] == 0
    assert len(load_results([str(wd / "runs")])) == 3          # the leaderboard accepts the suite's runs
    again = subprocess.run(_suite_cmd(preset, wd, "--strict"), capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 1 and "0 to run" in again.stdout and "1 failed" in again.stdout
    assert os.stat(first[0]).st_mtime_ns == mtime


def test_a_tasks_first_run_goes_alone():
    from lsbench.suite.grid import RunItem
    from lsbench.suite.runner import Suite
    mk = lambda t, s: RunItem(t, t, "train", "m", "m", s, {}, "default")  # noqa: E731
    a0, a1, b0 = mk("a", 0), mk("a", 1), mk("b", 0)
    running = {"worker": a0}
    assert Suite._next([a1, b0], running, warm=set()) is b0            # a is still building
    assert Suite._next([a1], running, warm=set()) is None
    assert Suite._next([a1, b0], running, warm={"a"}) is a1            # a is warm: run in parallel
    b1 = mk("b", 1)
    assert Suite._next([a1, b1], running, warm={"a"}, idle_keys={Suite._key(b1)}) is b1  # its worker waits


def test_star_methods_respect_manifest_applies_to():
    preset = {"name": "t", "seeds": [0], "groups": [
        {"tasks": ["infer/shapes-exit-small", "infer/shapes-split-small", "infer/arith-route-small"],
         "methods": "*", "sweep": False}]}
    grid = {}
    for it in expand(preset):
        grid.setdefault(it.task, set()).add(it.method)
    assert "early-exit" in grid["infer/shapes-exit-small"]
    assert not {"split", "split-quant", "bottleneck"} & grid["infer/shapes-exit-small"]
    assert {"split", "split-quant", "bottleneck"} <= grid["infer/shapes-split-small"]
    assert "early-exit" not in grid["infer/shapes-split-small"]
    assert not {"split", "early-exit", "specdec"} & grid["infer/arith-route-small"]
    assert "cascade" in grid["infer/arith-route-small"]
