"""Scale-out (#16): suite shards, worker processes (crash/timeout isolation),
merged boards, --platform without the device, multi-process runs."""
import json
import os
import re
import socket
import subprocess
import sys

import pytest

from conftest import PLUGINS, ROOT, TINY_METHOD, TINY_TASK, cli
from lsbench.suite.grid import expand, load_preset
from lsbench.suite.runner import shard_items

INFER = os.path.join(PLUGINS, "tiny_infer.py")

# Methods that break their worker: one kills its own process, one hangs.
BAD = f'''
import os, signal, time
from lsbench import api
from lsbench.registry import _load_ref
Cascade = _load_ref({INFER!r} + ":Cascade", "method")

class Crash(Cascade):
    manifest = api.Manifest(name="crash", tracks=("infer",))
    def edge_start(self, es, batch):
        os.kill(os.getpid(), signal.SIGKILL)

class Hang(Cascade):
    manifest = api.Manifest(name="hang", tracks=("infer",))
    def edge_start(self, es, batch):
        time.sleep(600)
'''


def _preset(tmp_path, name, methods):
    bad = tmp_path / "bad.py"
    bad.write_text(BAD)
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps({"name": name, "seeds": [0], "groups": [
        {"tasks": [INFER + ":TASK"], "methods": [m.replace("BAD", str(bad)) if isinstance(m, str) else m for m in methods]}]}))
    return str(p)


def test_shards_partition_the_grid():
    preset = {"name": "t", "seeds": [0, 1], "groups": [
        {"tasks": [INFER + ":TASK"], "methods": [{"name": INFER + ":Cascade", "sweep": 3}]},
        {"tasks": [TINY_TASK], "methods": [TINY_METHOD], "sweep": True}]}
    items = expand(preset)
    ids = [it.id for it in items]
    for n in (1, 2, 3, 7):
        parts = [[it.id for it in shard_items(items, i, n)] for i in range(n)]
        assert sorted(sum(parts, [])) == sorted(ids)                     # each run exactly once
        assert shard_items(list(reversed(items)), 0, n) == list(reversed(shard_items(items, 0, n)))
        for part in parts:                                               # a point's seeds share a slice
            pts = {i.rsplit(" seed", 1)[0] for i in part}
            assert all(i.rsplit(" seed", 1)[0] in pts for i in ids if i.rsplit(" seed", 1)[0] in pts)
            assert sum(1 for i in ids if i.rsplit(" seed", 1)[0] in pts) == len(part)


def _suite(preset, wd, *extra):
    return subprocess.Popen([sys.executable, "-m", "lsbench.cli.main", "suite", f"--preset={preset}",
                             f"--workdir={wd}", *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _board(results, out):
    r = cli("leaderboard", *[f"--results={x}" for x in results], f"--out={out}")
    assert r.returncode == 0, r.stderr
    board = json.load(open(os.path.join(out, "board.json")))
    board.pop("meta", None)

    def strip(v):  # wall-clock figures differ between any two executions
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if "wall" not in k and k != "workdir"}
        if isinstance(v, list):
            return sorted((strip(x) for x in v), key=lambda x: json.dumps(x, sort_keys=True))
        return v
    return strip(board)


def test_workers_isolate_crashes_and_timeouts_and_shards_merge_to_the_same_board(tmp_path):
    preset = _preset(tmp_path, "grid", [{"name": INFER + ":Cascade", "sweep": 3}, "BAD:Crash"])
    full, s0, s1 = (tmp_path / d for d in ("full", "s0", "s1"))
    # A tight limit for a run that hangs (real runs only get the limit the preset or user sets).
    procs = [_suite(_preset(tmp_path, "hang", ["BAD:Hang"]), tmp_path / "hang", "--run_timeout_s=3"),
             _suite(preset, full), _suite(preset, s0, "--shard=0/2"), _suite(preset, s1, "--shard=1/2")]
    hang = procs.pop(0).communicate(timeout=400)[0]
    assert "failed test/tiny-infer bad:Hang default seed0" in hang and "timed out after 3s" in hang, hang
    outs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    s = json.load(open(full / "suite.json"))
    by = {x["method"]: x for x in s["runs"] if x["method"].startswith("bad:")}
    assert s["counts"] == {"total": 4, "completed": 3, "failed": 1}, s["counts"]
    assert by["bad:Crash"]["reason"].startswith("the run's process was killed by SIGKILL"), by["bad:Crash"]
    # The three sweep points ran in one worker process; the crash had its own.
    pids = {}
    for f in os.listdir(full / "logs"):
        m = re.search(r"worker pid (\d+), run (\d+)", open(full / "logs" / f).read())
        if m:
            pids[f] = int(m.group(1))
    casc = {v for k, v in pids.items() if "Cascade" in k}
    assert len(casc) == 1 and len(pids) == 4 and len(set(pids.values())) == 2, pids
    # The two slices: every run once, and the merged board equals the whole one.
    parts = [json.load(open(d / f"suite.shard-{i}-of-2.json")) for i, d in enumerate((s0, s1))]
    ran = sorted(x["workdir"] for p in parts for x in p["runs"])
    assert ran == sorted(x["workdir"] for x in s["runs"]) and len(set(ran)) == 4
    assert _board([str(s0 / "runs"), str(s1 / "runs")], tmp_path / "b2") == _board(
        [str(full / "runs")], tmp_path / "b1")


def test_platform_without_that_device_is_one_line(tmp_path):
    import jax
    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("this machine has a GPU")
    r = cli("run", f"--task={TINY_TASK}", f"--method={TINY_METHOD}", f"--workdir={tmp_path}/r",
            "--platform=gpu")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "platforms found: cpu" in r.stderr and "jax[cuda12]" in r.stderr
    for bad in (["--coordinator=localhost:1"], ["--coordinator=nohost", "--num_processes=2", "--process_id=0"],
                ["--coordinator=h:1", "--num_processes=2", "--process_id=2"]):
        r = cli("run", f"--task={TINY_TASK}", f"--method={TINY_METHOD}", f"--workdir={tmp_path}/r", *bad)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--" in r.stderr, (bad, r.stderr)
    assert not (tmp_path / "r").exists()


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow   # 4 JAX processes: ~35 s of CPU, over this default-test budget
def test_two_processes_equal_one(tmp_path, data_dir):
    """jax.distributed on 2 CPU processes (gloo collectives), clients sharded over
    both processes' devices: same costs and metrics as one process (the suite's
    worker, seeds 0 and 1 batched into one program when the harness can); only
    process 0 writes a run directory."""
    preset = tmp_path / "seeds.json"
    preset.write_text(json.dumps({"name": "seeds", "seeds": [0, 1], "groups": [
        {"tasks": [TINY_TASK], "methods": [TINY_METHOD]}]}))
    one = cli("suite", f"--preset={preset}", f"--workdir={tmp_path}/one", f"--data_dir={data_dir}")
    assert one.returncode == 0, one.stdout + one.stderr
    s = json.load(open(tmp_path / "one" / "suite.json"))
    assert s["counts"] == {"total": 2, "completed": 2}
    from lsbench.suite.runner import _seed_batching
    assert all(r.get("batched") == (2 if _seed_batching() else None) for r in s["runs"])
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    base = ["run", f"--task={TINY_TASK}", f"--method={TINY_METHOD}", f"--data_dir={data_dir}", "--platform=cpu"]
    procs = [subprocess.Popen([sys.executable, "-m", "lsbench.cli.main", *base, f"--workdir={tmp_path}/two",
                               f"--coordinator=localhost:{port}",   # shard: the multi-process default
                               "--num_processes=2", f"--process_id={i}"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    a = json.load(open(os.path.join(tmp_path, "one", s["runs"][0]["workdir"], "final.json")))
    b = json.load(open(tmp_path / "two" / "final.json"))
    assert a["seed"] == b["seed"] == 0
    assert a["costs"] == b["costs"] and a["metrics"] == b["metrics"]
    man = json.load(open(tmp_path / "two" / "manifest.json"))
    assert man["platform"] == "cpu" and len(man["devices"]) == 2     # both processes' devices
    assert man["flags"]["backend"] == "shard"
    assert outs[0][0].strip().endswith("final.json") and "final.json" not in outs[1][0]   # 0 reports, 1 does not


def test_list_is_served_without_importing_jax(tmp_path, monkeypatch):
    """`lsbench list` imports every task and method once, then lists from a cache
    keyed by the source files (no JAX import); the two listings are identical."""
    code = ("import sys; from lsbench.cli.main import main; main(['lsbench', 'list']); "
            "print('jax imported' if 'jax' in sys.modules else 'no jax', file=sys.stderr)")
    env = dict(os.environ, LSBENCH_DATA_DIR=str(tmp_path))
    run = lambda: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,  # noqa: E731
                                 env=env, timeout=300)
    cold, warm = run(), run()
    assert cold.returncode == warm.returncode == 0, cold.stderr + warm.stderr
    assert cold.stderr.strip().endswith("jax imported") and warm.stderr.strip().endswith("no jax")
    assert warm.stdout == cold.stdout and "fedavg" in warm.stdout and "train/digits" in warm.stdout
    # Any edit to a package's sources changes the key.
    from lsbench import registry
    pkg = tmp_path / "lsb_probe_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = registry._package_files("lsb_probe_pkg")
    (pkg / "__init__.py").write_text("X = 22\n")
    assert registry._package_files("lsb_probe_pkg") != before


def test_dataset_generation_says_what_it_does(tmp_path, capfd):
    from lsbench.data import tfds_util
    from lsbench.data.digits import LsbenchDigits
    b = tfds_util.prepare(LsbenchDigits, str(tmp_path))
    out = capfd.readouterr()
    text = out.out + out.err
    assert "Downloading and preparing" not in text and "downloaded and prepared" not in text, text
    lines = [x for x in text.splitlines() if x.startswith(("generating", "generated"))]
    assert lines[0].startswith("generating lsbench_digits") and "nothing is downloaded" in lines[0]
    counts = {k: v.num_examples for k, v in b.info.splits.items()}
    assert lines[1].startswith("generated lsbench_digits: " + " / ".join(
        f"{n} {k}" for k, n in sorted(counts.items()))), lines
    tfds_util.prepare(LsbenchDigits, str(tmp_path))      # prepared: silent
    assert "generat" not in "".join(capfd.readouterr())
