"""Runs that cannot lie under faults: verified caches, fingerprinted and locked
run directories, and one line + exit 2 (no directory left) for every user fault."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import PLUGINS, ROOT, TINY_METHOD, TINY_TASK, cli

LONG_TASK = os.path.join(PLUGINS, "tiny_train.py") + ":LONG"


def one_line_exit_2(r, pattern):
    err = [x for x in r.stderr.strip().splitlines() if not x.startswith("warning:")]
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(err) == 1 and err[0].startswith("lsbench: error:") and pattern in err[0], r.stderr[-2000:]


def test_corrupt_cached_model_is_detected_and_rebuilt(tmp_path, monkeypatch):
    from lsbench.errors import TaskError
    from lsbench.models import cache
    calls = []

    def train():
        calls.append(1)
        return {"w": np.arange(64, dtype=np.float32).reshape(8, 8)}

    p1, h1 = cache.cached_params(str(tmp_path), "m", {"r": 1}, train, log=lambda s: None)
    root = tmp_path / "models" / "m"
    chunks = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if os.path.basename(d) == "d"]
    assert chunks
    for path in chunks:  # flip 64 bytes inside each stored data chunk
        data = bytearray(open(path, "rb").read())
        mid = len(data) // 2
        data[mid - 32:mid + 32] = bytes(b ^ 0xFF for b in data[mid - 32:mid + 32])
        open(path, "wb").write(bytes(data))
    with pytest.raises(TaskError, match="corrupt.*--rebuild_cache"):
        cache.cached_params(str(tmp_path), "m", {"r": 1}, train, log=lambda s: None)
    monkeypatch.setenv(cache.REBUILD_ENV, "1")
    p2, h2 = cache.cached_params(str(tmp_path), "m", {"r": 1}, train, log=lambda s: None)
    assert len(calls) == 2 and h2 == h1 and np.array_equal(p2["w"], p1["w"])
    # Content that reads back fine but differs from what was trained is caught by the hash.
    monkeypatch.delenv(cache.REBUILD_ENV)
    rec = next(os.path.join(d, "recipe.json") for d, _, fs in os.walk(root) if "recipe.json" in fs)
    meta = json.load(open(rec))
    meta["params_hash"] = "0" * 16
    json.dump(meta, open(rec, "w"))
    with pytest.raises(TaskError, match="params hash .*, recorded 0000"):
        cache.cached_params(str(tmp_path), "m", {"r": 1}, train, log=lambda s: None)


def test_resume_with_other_hparams_is_refused(tmp_path):
    wd = str(tmp_path / "r")
    base = ["run", f"--task={TINY_TASK}", f"--method={TINY_METHOD}", f"--workdir={wd}",
            f"--data_dir={tmp_path / 'd'}"]
    assert cli(*base, "--max_units=2", '--hparams={"lr": 0.05}').returncode == 0
    r = cli(*base, "--resume", '--hparams={"lr": 0.5}')
    one_line_exit_2(r, "hparams.lr: 0.05 -> 0.5")
    assert cli(*base, "--resume", '--hparams={"lr": 0.05}').returncode == 0  # the same settings go on


def test_two_runs_in_one_workdir_one_waits_out(tmp_path):
    wd = str(tmp_path / "r")
    base = [sys.executable, "-m", "lsbench.cli.main", "run", f"--task={LONG_TASK}",
            f"--method={TINY_METHOD}", f"--workdir={wd}", f"--data_dir={tmp_path / 'd'}"]
    first = subprocess.Popen(base + ["--max_units=400"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        lock = os.path.join(str(tmp_path), ".r.lock")
        for _ in range(600):
            if os.path.exists(os.path.join(wd, "manifest.json")):
                break
            time.sleep(0.1)
        second = subprocess.run(base + ["--resume"], cwd=ROOT, capture_output=True, text=True)
        one_line_exit_2(second, f"in use by another run (process {first.pid})")
        assert os.path.exists(lock)
    finally:
        first.wait(timeout=600)
    assert first.returncode == 0
    rows = [json.loads(x)["step"] for x in open(os.path.join(wd, "metrics.jsonl"))]
    assert rows == list(range(1, len(rows) + 1))  # one writer: no duplicated rounds


@pytest.mark.parametrize("args,pattern", [
    (['--hparams={"codec_up": "int3"}'], "unknown codec 'int3'"),
    (['--hparams={"lr": "0.05"}'], "must be a float"),
    (["--seed=-1"], "--seed must be a non-negative integer"),
])
def test_bad_input_one_line_no_directory(tmp_path, args, pattern):
    wd = tmp_path / "new" / "run"
    r = cli("run", f"--task={TINY_TASK}", f"--method={TINY_METHOD}", f"--workdir={wd}",
            f"--data_dir={tmp_path / 'd'}", *args)
    one_line_exit_2(r, pattern)
    assert not (tmp_path / "new").exists()


def test_workdir_is_a_file_or_read_only(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    base = ["run", f"--task={TINY_TASK}", f"--method={TINY_METHOD}", f"--data_dir={tmp_path / 'd'}"]
    one_line_exit_2(cli(*base, f"--workdir={f}"), "is a file")
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions; the read-only case needs a normal user")
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        one_line_exit_2(cli(*base, f"--workdir={ro / 'run'}"), "writable")
    finally:
        os.chmod(ro, 0o755)


def test_sigint_leaves_a_resumable_checkpoint_and_resume_equals_uninterrupted(tmp_path):
    data = str(tmp_path / "d")
    ref, wd = str(tmp_path / "ref"), str(tmp_path / "r")
    base = [f"--task={LONG_TASK}", f"--method={TINY_METHOD}", f"--data_dir={data}", "--max_units=300",
            "--checkpoint_every=25"]
    assert cli("run", *base, f"--workdir={ref}").returncode == 0
    p = subprocess.Popen([sys.executable, "-m", "lsbench.cli.main", "run", *base, f"--workdir={wd}"],
                         cwd=ROOT, stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        if os.path.exists(os.path.join(wd, "metrics.jsonl")) and \
                sum(1 for _ in open(os.path.join(wd, "metrics.jsonl"))) >= 30:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=300)[1].strip().splitlines()
    assert p.returncode == 2 and len(err) >= 1 and "interrupted (SIGINT)" in err[-1] and "--resume" in err[-1]
    assert not os.path.exists(os.path.join(wd, "final.json"))
    assert cli("run", *base, f"--workdir={wd}", "--resume").returncode == 0
    a, b = (json.load(open(os.path.join(d, "final.json"))) for d in (ref, wd))
    assert a["metrics"] == b["metrics"] and a["costs"] == b["costs"]


def test_sigint_inside_a_checkpoint_save_waits_for_the_save(tmp_path):
    """The CI failure of the test above: a SIGINT that landed inside Orbax's save.
    Now it is raised only once the save has finished, and the step restores."""
    import numpy as np

    from lsbench.harness import interrupt
    from lsbench.harness.checkpoint import Checkpointer
    ck = Checkpointer(str(tmp_path / "ck"))
    real, done = ck.mngr.save, []

    def save_hit_by_sigint(*a, **k):
        os.kill(os.getpid(), signal.SIGINT)  # delivered here, mid-save
        out = real(*a, **k)
        done.append(True)
        return out

    ck.mngr.save = save_hit_by_sigint
    state = {"w": np.arange(6.0)}
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN in an xdist worker
    with interrupt.handling(), pytest.raises(KeyboardInterrupt):
        ck.save(7, state)
    assert done == [True] and ck.latest() == 7
    step, back = ck.restore(state)
    ck.close()
    assert step == 7 and np.array_equal(back["w"], state["w"])
    assert signal.getsignal(signal.SIGINT) == before  # restored


def test_a_swallowed_sigint_still_stops_at_the_next_check():
    from lsbench.harness import interrupt
    with interrupt.handling():
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            pass  # what a GC callback does with it
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()


def test_truncated_final_with_resume_recovers(tmp_path):
    wd = str(tmp_path / "r")
    base = ["run", f"--task={TINY_TASK}", f"--method={TINY_METHOD}", f"--workdir={wd}",
            f"--data_dir={tmp_path / 'd'}"]
    assert cli(*base).returncode == 0
    want = json.load(open(os.path.join(wd, "final.json")))
    with open(os.path.join(wd, "final.json"), "r+") as f:
        f.truncate(40)
    r = cli(*base, "--resume")
    assert r.returncode == 0, r.stderr[-1000:]
    got = json.load(open(os.path.join(wd, "final.json")))
    assert got["metrics"] == want["metrics"] and got["costs"] == want["costs"]


def test_a_capped_inference_run_scores_only_the_rows_it_evaluated(tmp_path):
    """--max_units: metrics and units cover the evaluated rows only (never the unpredicted rest)."""
    import lsbench
    task, method = os.path.join(PLUGINS, "tiny_infer.py") + ":TASK", os.path.join(PLUGINS, "tiny_infer.py") + ":Cascade"
    part = lsbench.run(task=task, method=method, data_dir=str(tmp_path), max_units=2)
    assert part["stopped_early"] and part["units"] == 64  # 2 batches of 32 of the 100 rows
    sent = round(part["metrics"]["offload_rate"] * 64)
    assert part["costs"]["bytes_up"] == sent * 6 * 4  # offload rate is over the 64 rows that ran
