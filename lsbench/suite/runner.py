"""Runs a grid: each run is `lsbench run` in its own subprocess (a crash stays
isolated), up to N at a time. Completed runs (a valid final.json) are skipped,
interrupted ones resumed with --resume; suite.json is rewritten atomically
after every run, so a killed suite leaves a consistent record."""
from __future__ import annotations

import datetime
import json
import os
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


def run_command(item, workdir, data_dir=None, platform=None, resume=False) -> list[str]:
    cmd = [sys.executable, "-m", "lsbench.cli.main", "run", f"--task={item.task}", f"--method={item.method}",
           f"--seed={item.seed}", f"--workdir={workdir}", f"--hparams={json.dumps(item.hparams)}",
           f"--sweep_point={item.point}"]
    cmd += [f"--data_dir={data_dir}"] * bool(data_dir) + [f"--platform={platform}"] * bool(platform)
    return cmd + ["--resume"] * resume


def failure_reason(log_path: str, rc: int) -> str:
    """The run's one-line error (`lsbench: error: ...`), else the last line it printed."""
    try:
        lines = [x.strip() for x in open(log_path, errors="replace").read().splitlines() if x.strip()]
    except OSError:
        lines = []
    err = [x for x in lines if x.startswith("lsbench: error:")]
    line = (err or lines or [f"exited with status {rc}"])[-1]
    return (line if len(line) <= 300 else line[:297] + "...") + ("" if err or not lines else f" (exit {rc})")


class Suite:
    def __init__(self, items, root, preset, workers=1, data_dir=None, platform=None, timeout_s=None,
                 command="", warnings=(), out=None):
        self.items, self.root, self.preset = items, os.path.abspath(root), preset
        self.workers, self.data_dir, self.platform = max(1, workers), data_dir, platform
        self.timeout_s, self.command, self.warnings = timeout_s, command, list(warnings)
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
        write_json(os.path.join(self.root, "suite.json"), {
            "schema": SUITE_SCHEMA, "preset": self.preset.get("name"), "preset_path": self.preset.get("path"),
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
        running = {}
        # A task's first run builds its data and caches its reference models; the
        # task's other runs wait for it rather than race it on the data dir.
        warm = {it.task_name for it in self.items if it not in todo}
        try:
            while todo or running:
                while len(running) < self.workers:
                    it = self._next(todo, running, warm)
                    if it is None:
                        break
                    todo.remove(it)
                    running[self._start(it)] = (it, time.time())
                time.sleep(0.1)
                for p in list(running):
                    it, t = running[p]
                    timed_out = self.timeout_s and time.time() - t > self.timeout_s
                    if p.poll() is None and not timed_out:
                        continue
                    if timed_out and p.poll() is None:
                        p.kill()
                        p.wait()
                    del running[p]
                    p.log.close()
                    warm.add(it.task_name)
                    rec = self._finish(it, p, time.time() - t, timed_out)
                    self.records[it.id] = rec
                    self.write()
                    self.progress(rec, len(running))
        finally:
            for p in running:
                p.kill()
        self.write()
        return self.counts()

    @staticmethod
    def _next(todo, running, warm):
        busy = {it.task_name for it, _ in running.values()}
        return next((it for it in todo if it.task_name in warm or it.task_name not in busy), None)

    def _start(self, it):
        wd = it.workdir(self.root)
        resume = RunDir(wd).exists()
        log_path = self._log_path(it)
        log = open(log_path, "w")
        p = subprocess.Popen(run_command(it, wd, self.data_dir, self.platform, resume), stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        p.log = log
        return p

    def _log_path(self, it):
        return os.path.join(self.root, "logs", os.path.relpath(it.workdir(self.root), os.path.join(
            self.root, "runs")).replace(os.sep, "__") + ".log")

    def _finish(self, it, p, wall, timed_out):
        final = done_final(it.workdir(self.root))
        if timed_out:
            return self._record(it, "failed", f"timed out after {self.timeout_s}s", wall, True)
        if p.returncode == 0 and final is not None:
            return self._record(it, final["status"], None, wall, True)
        return self._record(it, "failed", failure_reason(self._log_path(it), p.returncode), wall, True)
