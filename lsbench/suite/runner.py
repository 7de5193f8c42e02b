"""Runs a grid: up to N runs at a time, each `lsbench run` inside a worker
process. A worker imports lsbench and JAX once and runs one method on one task
run after run (seeds, sweep points), so one plugin never shares a process with
another. A run that crashes or times out takes only its worker down: the run
is recorded as failed and a fresh worker takes the next one. Completed runs
(a valid final.json) are skipped, interrupted ones resumed with --resume;
suite.json is rewritten atomically after every run, so a killed suite leaves a
consistent record.

    python -m lsbench.suite.runner --worker   reads one JSON job per line on stdin
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from lsbench.results import schema
from lsbench.results.rundir import RunDir, write_json

SUITE_SCHEMA = "lsbench.suite/1"


def _die_with_parent():
    """Children die with the suite (Linux), so a killed suite leaves no orphans
    that would race the restarted suite on the same run directory."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def done_final(workdir: str):
    """The run's final.json if it is there and valid, else None."""
    p = os.path.join(workdir, "final.json")
    if not os.path.exists(p):
        return None
    try:
        return schema.load_final(p)
    except schema.SchemaError:
        return None


def shard_items(items, i: int, n: int) -> list:
    """Slice ``i`` of ``n`` of a grid: its (task, method, sweep point) groups in
    sorted order, dealt round-robin, so the N slices cover the grid exactly once
    whatever order the grid came in, and one point's seeds share a slice."""
    keys = sorted({(it.task_name, it.label, it.point) for it in items})
    mine = set(keys[i::n])
    return [it for it in items if (it.task_name, it.label, it.point) in mine]


def suite_json_name(shard=None) -> str:
    """suite.json, or suite.shard-I-of-N.json (slices may share a workdir)."""
    return "suite.json" if not shard else f"suite.shard-{shard[0]}-of-{shard[1]}.json"


def _seed_batching() -> bool:
    """Whether the harness runs several seeds as one program (lsbench run --seeds)."""
    try:
        from lsbench.harness import runner
    except ImportError:
        return False
    return hasattr(runner, "execute_seeds")


def run_command(item, workdir, data_dir=None, platform=None, resume=False) -> list[str]:
    cmd = [sys.executable, "-m", "lsbench.cli.main", "run", f"--task={item.task}", f"--method={item.method}",
           f"--seed={item.seed}", f"--workdir={workdir}", f"--hparams={json.dumps(item.hparams)}",
           f"--sweep_point={item.point}"]
    cmd += [f"--data_dir={data_dir}"] * bool(data_dir) + [f"--platform={platform}"] * bool(platform)
    return cmd + ["--resume"] * resume


RESULT = "@@lsbench-worker-result "
STARTED = "@@lsbench-worker-started"


class Worker:
    """A `python -m lsbench.suite.runner --worker` process serving one (task, method)."""

    def __init__(self, key, stderr_path):
        self.key, self.job, self.t, self.started, self._buf = key, None, None, None, b""
        with open(stderr_path, "a") as err:
            self.p = subprocess.Popen([sys.executable, "-m", "lsbench.suite.runner", "--worker"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                      preexec_fn=_die_with_parent)
        os.set_blocking(self.p.stdout.fileno(), False)

    def start(self, item, args, log_path):
        self.job, self.t, self.started = item, time.time(), None
        self.p.stdin.write((json.dumps({"args": args, "log": log_path}) + "\n").encode())
        self.p.stdin.flush()

    def result(self):
        """The job's exit status once it is done; -9 style negatives if the worker died."""
        try:
            chunk = os.read(self.p.stdout.fileno(), 65536)
        except BlockingIOError:
            chunk = None
        if chunk:
            self._buf += chunk
        lines = self._buf.split(b"\n")
        for k, line in enumerate(lines[:-1]):
            if line.startswith(STARTED.encode()) and self.started is None:
                self.started = time.time()
            if line.startswith(RESULT.encode()):
                self._buf = b"\n".join(lines[k + 1:])
                return int(json.loads(line[len(RESULT):])["rc"])
        if chunk == b"" or self.p.poll() is not None:  # EOF: the worker is gone
            self.p.wait()
            return self.p.returncode if self.p.returncode not in (None, 0) else 1
        return None

    def over(self, timeout_s) -> bool:
        """Past the run's time limit, counted from when the worker began it (its
        imports are not the run's); a worker that never begins gets twice that."""
        if not timeout_s:
            return False
        return time.time() - (self.started or self.t) > timeout_s * (1 if self.started else 2)

    def alive(self):
        return self.p.poll() is None

    def kill(self):
        if self.alive():
            self.p.kill()
        self.p.wait()

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


def worker_main() -> int:
    """Runs jobs {"args": [lsbench run flags], "log": path} from stdin, one at a
    time, each with stdout/stderr (file descriptors too) sent to its log."""
    import traceback
    res = os.fdopen(os.dup(1), "w", buffering=1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)   # stray output never reaches the result pipe
    from lsbench.cli import main as cli
    import lsbench.harness.runner  # noqa: F401 - imported once, before the first job
    for k, line in enumerate(sys.stdin):
        job = json.loads(line)
        res.write(STARTED + "\n")
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.argv = [cli.__file__, "run", *job["args"]]
        print(f"[lsbench suite: worker pid {os.getpid()}, run {k + 1} in this process]", flush=True)
        try:
            rc = cli.main(list(sys.argv)) or 0
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001 - an internal error: its traceback goes to the log
            traceback.print_exc()
            rc = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for f in (fd, *saved):
                os.close(f)
        res.write(RESULT + json.dumps({"rc": rc}) + "\n")
    return 0


def failure_reason(log_path: str, rc: int) -> str:
    """The run's one-line error (`lsbench: error: ...`), else the last line it printed."""
    try:
        lines = [x.strip() for x in open(log_path, errors="replace").read().splitlines()
                 if x.strip() and not x.startswith("[lsbench suite: worker")]
    except OSError:
        lines = []
    err = [x for x in lines if x.startswith("lsbench: error:")]
    if rc < 0 and not err:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = f"signal {-rc}"
        return f"the run's process was killed by {sig}" + (f"; last output: {lines[-1][:200]}" if lines else "")
    line = (err or lines or [f"exited with status {rc}"])[-1]
    return (line if len(line) <= 300 else line[:297] + "...") + ("" if err or not lines else f" (exit {rc})")


class Suite:
    def __init__(self, items, root, preset, workers=1, data_dir=None, platform=None, timeout_s=None,
                 command="", warnings=(), out=None, shard=None, batch_seeds=True):
        self.items, self.root, self.preset = items, os.path.abspath(root), preset
        self.workers, self.data_dir, self.platform = max(1, workers), data_dir, platform
        self.timeout_s, self.command, self.warnings = timeout_s, command, list(warnings)
        self.shard, self.batch_seeds = shard, batch_seeds and _seed_batching()
        self.out = out or (lambda s: print(s, flush=True))
        self.records = {it.id: self._record(it, "pending") for it in items}
        self.t0 = time.time()
        self.started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    def _record(self, it, status, reason=None, wall=None, ran=False):
        return {"task": it.task_name, "method": it.label, "method_arg": it.method, "seed": it.seed,
                "sweep_point": it.point, "hparams": it.hparams, "status": status, "reason": reason,
                "wall_s": None if wall is None else round(wall, 2), "ran": ran,
                "workdir": os.path.relpath(it.workdir(self.root), self.root)}

    def counts(self) -> dict:
        c = {"total": len(self.items)}
        for r in self.records.values():
            c[r["status"]] = c.get(r["status"], 0) + 1
        return c

    def write(self):
        write_json(os.path.join(self.root, suite_json_name(self.shard)), {
            "schema": SUITE_SCHEMA, "preset": self.preset.get("name"), "preset_path": self.preset.get("path"),
            "shard": None if not self.shard else f"{self.shard[0]}/{self.shard[1]}",
            "command": self.command, "workdir": self.root, "started": self.started,
            "wall_s": round(time.time() - self.t0, 2), "counts": self.counts(), "warnings": self.warnings,
            "runs": list(self.records.values())})

    def progress(self, rec, running):
        c = self.counts()
        left = c.get("pending", 0) - running
        el = time.time() - self.t0
        done = c["total"] - c.get("pending", 0)
        extra = f": {rec['reason']}" if rec["reason"] else ""
        wall = "" if rec["wall_s"] is None else f" ({rec['wall_s']:.1f}s)"
        self.out(f"[{int(el // 60):02d}:{el % 60:04.1f}] {done}/{c['total']} done, {c.get('failed', 0)} failed, "
                 f"{running} running, {left} remaining | {rec['status']} {rec['task']} {rec['method']} "
                 f"{rec['sweep_point']} seed{rec['seed']}{wall}{extra}")

    def run(self) -> dict:
        os.makedirs(os.path.join(self.root, "logs"), exist_ok=True)
        todo = []
        for it in self.items:   # settle what needs no process: grid errors and finished runs
            wd = it.workdir(self.root)
            final = None if it.error else done_final(wd)
            if it.error:
                self.records[it.id] = self._record(it, "failed", it.error)
            elif final is not None:
                self.records[it.id] = self._record(it, final["status"], wall=final["wall_s"])
                self.records[it.id]["skipped"] = True
            else:
                todo.append(it)
        self.write()
        c = self.counts()
        self.out(f"suite {self.preset.get('name')}: {c['total']} runs, {c['total'] - len(todo)} already settled "
                 f"({c.get('failed', 0)} failed to resolve), {len(todo)} to run, {self.workers} worker(s)")
        for w in self.warnings:
            self.out(f"warning: {w}")
        running, idle = {}, []   # worker -> the items it runs (seeds batched); workers waiting for a job
        # A task's first run builds its data and caches its reference models; the
        # task's other runs wait for it rather than race it on the data dir.
        warm = {it.task_name for it in self.items if it not in todo}
        try:
            while todo or running:
                while len(running) < self.workers:
                    it = self._next(todo, running, warm, {w.key for w in idle})
                    if it is None:
                        break
                    batch = self._batch(it, todo)
                    for b in batch:
                        todo.remove(b)
                    w = self._worker_for(it, idle, len(running))
                    self._start(w, batch)
                    running[w] = batch
                for w in [w for w in idle if not any(self._key(t) == w.key for t in todo)]:
                    idle.remove(w)   # nothing left for its (task, method)
                    w.close()
                time.sleep(0.05)
                for w in list(running):
                    batch = running[w]
                    rc = w.result()
                    timed_out = rc is None and w.over(self.timeout_s and self.timeout_s * len(batch))
                    if rc is None and not timed_out:
                        continue
                    if rc is None:
                        w.kill()
                    del running[w]
                    if rc == 0 and w.alive():
                        idle.append(w)
                    else:
                        w.kill()   # crashed, timed out, or failed: a fresh worker for what follows
                    warm.add(batch[0].task_name)
                    log = self._log_path(batch[0])
                    for it in batch:
                        if it is not batch[0] and os.path.exists(log):
                            shutil.copyfile(log, self._log_path(it))   # one log for the batch
                        rec = self._finish(it, rc if rc is not None else -9, (time.time() - w.t) / len(batch),
                                           rc is None, len(batch))
                        self.records[it.id] = rec
                        self.write()
                        self.progress(rec, len(running))
        finally:
            for w in list(running) + idle:
                w.kill()
        self.write()
        return self.counts()

    @staticmethod
    def _key(it):
        return (it.task, it.method)

    def _batch(self, it, todo) -> list:
        """``it`` and the other seeds of its (task, method, sweep point): training
        runs, when the harness batches seeds into one program."""
        if not self.batch_seeds or it.track != "train":
            return [it]
        same = [o for o in todo if (o.task, o.method, o.point, o.hparams) == (it.task, it.method, it.point, it.hparams)
                and o.seed != it.seed]
        return [it] + sorted({o.seed: o for o in same}.values(), key=lambda o: o.seed)

    @classmethod
    def _next(cls, todo, running, warm, idle_keys=()):
        busy = {it.task_name for b in running.values() for it in (b if isinstance(b, list) else [b])}
        ok = [it for it in todo if it.task_name in warm or it.task_name not in busy]
        return next((it for it in ok if cls._key(it) in idle_keys), ok[0] if ok else None)

    def _worker_for(self, it, idle, n_running):
        """An idle worker of this (task, method), else a fresh one (an idle worker
        of another method makes room)."""
        for dead in [w for w in idle if not w.alive()]:
            idle.remove(dead)
            dead.kill()
        w = next((w for w in idle if w.key == self._key(it)), None)
        if w is not None:
            idle.remove(w)
            return w
        while idle and n_running + len(idle) >= self.workers:
            idle.pop(0).close()
        return Worker(self._key(it), os.path.join(self.root, "logs", "workers.log"))

    def _start(self, w, batch):
        it = batch[0]
        wd = it.workdir(self.root)
        resume = any(RunDir(b.workdir(self.root)).exists() for b in batch)
        args = run_command(it, wd, self.data_dir, self.platform, resume)[4:]
        if len(batch) > 1:   # lsbench run --seeds=...: one program, one run directory per seed
            pattern = os.path.join(os.path.dirname(wd), "seed{seed}")
            assert all(b.workdir(self.root) == pattern.format(seed=b.seed) for b in batch)
            args = [f"--seeds={','.join(str(b.seed) for b in batch)}" if a.startswith("--seed=") else
                    f"--workdir={pattern}" if a.startswith("--workdir=") else a for a in args]
        w.start(it, args, self._log_path(it))

    def _log_path(self, it):
        return os.path.join(self.root, "logs", os.path.relpath(it.workdir(self.root), os.path.join(
            self.root, "runs")).replace(os.sep, "__") + ".log")

    def _finish(self, it, rc, wall, timed_out, batched=1):
        final = done_final(it.workdir(self.root))
        if timed_out:
            rec = self._record(it, "failed", f"timed out after {self.timeout_s * batched}s", wall, True)
        elif rc == 0 and final is not None:
            rec = self._record(it, final["status"], None, wall, True)
        else:
            rec = self._record(it, "failed", failure_reason(self._log_path(it), rc), wall, True)
        if batched > 1:
            rec["batched"] = batched   # seeds run as one program; wall_s is the batch's share
        return rec


if __name__ == "__main__":
    if sys.argv[1:] != ["--worker"]:
        sys.exit("usage: python -m lsbench.suite.runner --worker  (started by `lsbench suite`)")
    sys.exit(worker_main())
