"""One run: validate, build the task, drive the track loop, checkpoint, and
write manifest.json, metrics.jsonl and final.json.

Bad input raises :class:`UsageError` (or TaskError / PluginError) *before*
anything in the run directory changes, so no earlier result is lost.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from typing import Any, Optional

from lsbench import __version__, api
from lsbench.errors import LsbenchError, PluginError, TaskError, UsageError  # noqa: F401
from lsbench.registry import load_method, load_task
from lsbench.results import schema
from lsbench.results.rundir import RunDir

USER_ERRORS = (LsbenchError,)


@dataclasses.dataclass
class RunConfig:
    task: str
    method: Any   # a name, "pkg.mod:Class", "file.py[:Class]", or a Method class
    seed: int = 0
    workdir: str = "runs/run"
    hparams: Optional[dict] = None
    data_dir: Optional[str] = None
    resume: bool = False
    overwrite: bool = False
    backend: str = "vmap"
    sweep_point: Optional[str] = None
    max_units: Optional[int] = None
    checkpoint_every: Optional[int] = None
    argv: tuple = ()
    # lsbench check's leak test: the channel delivers random payloads (never ranked).
    scramble: bool = False


def _typed(name: str, key: str, default, value):
    """``value`` checked against the type of ``default`` (ints stay ints, an int
    is accepted for a float, bools are not numbers); returns the stored value."""
    kind = type(default)
    bad = None
    if default is None:
        return value
    if kind is bool:
        bad = not isinstance(value, bool)
    elif kind is int:
        bad = isinstance(value, bool) or not isinstance(value, int)
    elif kind is float:
        bad = isinstance(value, bool) or not isinstance(value, (int, float))
        value = value if bad else float(value)
    elif kind is str:
        bad = not isinstance(value, str)
    elif kind in (list, tuple):
        bad = not isinstance(value, (list, tuple))
    if bad:
        raise UsageError(f"hyper-parameter '{key}' of method {name} must be a {kind.__name__} "
                         f"(default {default!r}), got {type(value).__name__} {value!r}")
    return value


def merge_hparams(cls, overrides: Optional[dict]) -> dict:
    """Defaults merged with overrides: names, types, choices and codecs are checked
    before any work starts. A method may declare ``hparam_choices = {name: (...)}``."""
    name = cls.manifest.name
    hp = dict(cls.default_hparams)
    hp.setdefault("codec_up", cls.codec_up)
    hp.setdefault("codec_down", cls.codec_down)
    choices = dict(getattr(cls, "hparam_choices", {}) or {})
    for k, v in (overrides or {}).items():
        if k not in hp:
            raise UsageError(f"unknown hyper-parameter '{k}' for method {name}; "
                             f"known: {', '.join(sorted(hp))}")
        hp[k] = _typed(name, k, hp[k], v)
    for k, allowed in choices.items():
        if hp.get(k) not in allowed:
            raise UsageError(f"hyper-parameter '{k}' of method {name} must be one of "
                             f"{', '.join(map(repr, allowed))}, got {hp.get(k)!r}")
    from lsbench.metering.codecs import CodecError, get_codec
    for k in ("codec_up", "codec_down"):
        try:
            get_codec(hp[k])
        except (CodecError, ValueError, TypeError) as e:
            raise UsageError(f"hyper-parameter '{k}' of method {name}: {str(e).splitlines()[0]}") from None
    return hp


def _git_revision() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev + ("-dirty" if dirty else "")) if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _versions() -> dict:
    import importlib.metadata as md
    out = {"lsbench": __version__, "python": platform.python_version()}
    for p in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorflow-datasets", "numpy"):
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    return out


def spec_hash(spec) -> str:
    blob = json.dumps(spec.as_dict(), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_loop(track, inst, sides, seed, backend="vmap", scramble=False):
    """The track's loop over a method built per side (``sealed.Sides``)."""
    if track == "train":
        from lsbench.harness.train_loop import TrainLoop
        return TrainLoop(inst, sides, seed, backend=backend, scramble=scramble)
    if track == "infer":
        from lsbench.harness.infer_loop import InferLoop
        return InferLoop(inst, sides, seed, scramble=scramble)
    from lsbench.harness.plan_loop import PlanLoop
    return PlanLoop(inst, sides, seed, scramble=scramble)


def run_units(loop, state, start: int, end: int):
    """Units ``[start, end)`` of a loop: (state, rows, ok). Each row holds the
    unit's metrics and the cumulative cost counters; a unit that diverged (ok
    False) is the last row. Loops with ``run_units`` (training: rounds scanned in
    one compiled program) do it themselves; others run unit by unit."""
    if hasattr(loop, "run_units"):
        return loop.run_units(state, start, end)
    rows = []
    for u in range(start, end):
        state, row, ok = loop.run_unit(state, u)
        row.update({k: int(v) for k, v in state["costs"].items()})
        rows.append(row)
        if not ok:
            return state, rows, False
    return state, rows, True


class _LogStream:
    """A text stream that hands each line to the run's ``log`` (never a terminal)."""

    def __init__(self, log):
        self.log = log

    def write(self, text):
        for line in text.splitlines():
            if line.strip():
                self.log(line)

    def flush(self):
        pass

    def isatty(self):
        return False


def _live(spec, rows) -> dict:
    """The latest metric for the progress bar: the task's primary metric where the
    last row has it, else its training loss."""
    last = rows[-1]
    for k in (spec.primary_metric, "train_loss"):
        if isinstance(last.get(k), (int, float)):
            return {k: last[k]}
    return {}


def _append_rows(rd: RunDir, rows) -> None:
    """Appends metrics rows with one fsync (``RunDir.append_metrics``'s format)."""
    from lsbench.results.rundir import _clean
    os.makedirs(rd.path, exist_ok=True)
    with open(rd.metrics_path, "a") as f:
        f.write("".join(json.dumps(_clean(r), sort_keys=True) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())


def _chunk_end(loop, u: int, n_units: int, every: int) -> int:
    """Where the chunk of units starting at ``u`` ends: the next evaluation,
    checkpoint or the end (one unit at a time for loops without ``run_units``)."""
    if not hasattr(loop, "run_units"):
        return u + 1
    end = u + 1
    while end < n_units and not loop.is_eval_unit(end - 1) and end % every:
        end += 1
    return end


def _last_build_time(spec) -> str:
    """What building a task's cache took last time, from the recipes in the default data dir."""
    from lsbench.models.cache import default_data_dir
    root = os.path.join(os.path.expanduser(default_data_dir()), "models")
    total, found = 0.0, 0
    key = spec.name.split("/")[-1].split("-")[0]
    for d, _, files in os.walk(root) if os.path.isdir(root) else ():
        if "recipe.json" in files and key in d:
            rec = _read_json(os.path.join(d, "recipe.json")) or {}
            total, found = total + float(rec.get("train_s") or 0), found + 1
    if not found:
        return "no earlier build recorded in the default data dir"
    return f"{found} cached models took {total:.0f} s to train last time"


def compilation_cache(data_dir: str) -> Optional[str]:
    """Turns on JAX's persistent compilation cache under ``DATA_DIR/jax_cache``
    (programs compiled in 0.2 s or more), unless ``LSBENCH_COMPILE_CACHE=0`` or
    ``JAX_COMPILATION_CACHE_DIR`` chose another place. Returns the directory."""
    import jax
    if os.environ.get("LSBENCH_COMPILE_CACHE", "1") == "0":
        return None
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    path = os.path.join(os.path.abspath(os.path.expanduser(data_dir)), "jax_cache")
    if jax.config.jax_compilation_cache_dir != path:
        from jax.experimental.compilation_cache import compilation_cache as cc
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
        cc.reset_cache()  # re-initialised on the next compile, with this directory
    return path


def build(cfg: "RunConfig", spec, cls, hp, log=print):
    """Builds the task instance, the sealed sides and the loop (no run dir touched)."""
    from lsbench.harness import sealed
    from lsbench.metering.flops import count_jaxpr
    from lsbench.models.cache import default_data_dir
    data_dir = cfg.data_dir or default_data_dir()
    compilation_cache(data_dir)
    if not os.path.isdir(os.path.expanduser(data_dir)):
        log(f"warning: data dir {data_dir} does not exist; {spec.name}'s data will be generated and its "
            f"reference models trained there ({_last_build_time(spec)}); if that is a typo, stop and "
            "fix --data_dir")
    inst = spec.build(data_dir, cfg.seed)
    sealer = sealed.Sealer(sealed.guard_for(spec.track, inst), meter=count_jaxpr)
    sides = sealed.build_sides(cls, spec.track, inst, hp, sealer)
    loop = make_loop(spec.track, inst, sides, cfg.seed, cfg.backend, cfg.scramble)
    return inst, sides, loop, data_dir


def _prepare_workdir(cfg: RunConfig, rd: RunDir, log=print):
    """Checks the workdir before any work; recovers a killed --overwrite."""
    if cfg.resume and cfg.overwrite:
        raise UsageError("--resume and --overwrite contradict each other; pass one")
    if os.path.exists(rd.path) and not os.path.isdir(rd.path):
        raise UsageError(f"workdir {rd.path} is a file, not a directory; pick another --workdir")
    _recover_overwrite(rd, log)
    if rd.exists() and not (cfg.resume or cfg.overwrite):
        raise UsageError(f"workdir {rd.path} already holds a run; pass --resume to continue it "
                         "or --overwrite to replace it")


def _recover_overwrite(rd: RunDir, log=print):
    """A killed --overwrite leaves ``DIR.replaced-PID``: if the new run never wrote its
    manifest, the old run is put back; otherwise the old copy is dropped."""
    parent, base = os.path.dirname(rd.path), os.path.basename(rd.path)
    if not os.path.isdir(parent):
        return
    for name in sorted(os.listdir(parent)):
        if not name.startswith(base + ".replaced-"):
            continue
        old = os.path.join(parent, name)
        if not os.path.exists(rd.manifest_path):
            shutil.rmtree(rd.path, ignore_errors=True)
            os.replace(old, rd.path)
            log(f"{rd.path}: an interrupted --overwrite was undone (the earlier run is back)")
        else:
            shutil.rmtree(old, ignore_errors=True)
            log(f"{rd.path}: removed {name} left by an interrupted --overwrite")


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _check_resume(cfg, rd, fp, log):
    """--resume continues only a run with the same fingerprint."""
    old = _read_json(rd.manifest_path)
    if old is None:
        return
    theirs = old.get("fingerprint")
    if theirs is None:  # written before fingerprints: compare what it has
        mine = {"task": cfg.task, "method": _method_label(cfg.method), "seed": cfg.seed}
        if {k: old.get(k) for k in mine} != mine:
            raise UsageError(f"workdir {rd.path} holds a different run; pick another --workdir or "
                             "pass --overwrite")
        return
    if theirs != json.loads(json.dumps(fp, default=str)):
        raise UsageError(f"--resume refused: workdir {rd.path} holds a different run "
                         f"({fingerprint_diff(theirs, json.loads(json.dumps(fp, default=str)))}); "
                         "pass the same settings, or --overwrite")


def _user_fault(e: BaseException, cls) -> Optional[LsbenchError]:
    """Maps an exception raised during a run to a one-line user error, or None for
    an internal bug (which keeps its traceback)."""
    if isinstance(e, LsbenchError):
        return e
    if isinstance(e, OSError) and e.errno is not None:
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        return UsageError(f"file-system error: {e.strerror}{where}; free space or fix permissions, "
                          "then continue with --resume")
    import traceback
    files = {f.filename for f in traceback.extract_tb(e.__traceback__)}
    try:
        import inspect
        mine = inspect.getsourcefile(sys.modules[cls.__module__])
    except (KeyError, TypeError):
        mine = None
    if mine and mine in files and not mine.startswith(os.path.dirname(os.path.dirname(__file__))):
        first = (str(e).strip().splitlines() or [""])[0][:200]
        return PluginError(f"method {cls.manifest.name} failed at run time: {type(e).__name__}: {first}")
    return None


def execute(cfg: RunConfig, log=print) -> dict:
    """Runs (or resumes) one run and returns its final.json dict."""
    from lsbench.harness.lock import RunLock
    rd = RunDir(cfg.workdir)
    if cfg.resume and cfg.overwrite:
        raise UsageError("--resume and --overwrite contradict each other; pass one")
    if os.path.exists(rd.path) and not os.path.isdir(rd.path):
        raise UsageError(f"workdir {rd.path} is a file, not a directory; pick another --workdir")
    from lsbench.harness import interrupt
    with RunLock(rd.path), interrupt.handling():
        return _execute_locked(cfg, rd, log)


def _execute_locked(cfg: RunConfig, rd: RunDir, log) -> dict:
    from lsbench.harness import interrupt
    run = _Run(cfg, rd, log)
    if run.open():
        return run.final
    try:
        while run.active:
            end = run.next_end()
            t_chunk = time.time()
            state, rows, ok = run_units(run.loop, run.cur[1], run.u, end)
            run.after(state, rows, ok, t_chunk)
            interrupt.check()
        interrupt.ignore()  # the units are done: a late SIGINT does not stop final.json
        run.close()
    except KeyboardInterrupt:
        run.interrupted()
    except Exception as e:  # noqa: BLE001 - user faults become one line, bugs keep their traceback
        run.failed(e)
    return run.final


def execute_seeds(cfgs, log=print) -> list:
    """Seed batching: runs that differ only in ``seed`` (and ``workdir``) as one
    program vmapped over seeds, each writing its own run directory; returns the
    final.json dicts in order. Runs whose compiled rounds would differ (another
    track or backend, an attacked task, programs that depend on the seed's data
    shapes) run one after the other instead, with the same results."""
    import contextlib

    from lsbench.harness.lock import RunLock
    cfgs = list(cfgs)
    rds = [RunDir(c.workdir) for c in cfgs]
    if len({os.path.abspath(rd.path) for rd in rds}) < len(rds):
        raise UsageError("seed batching needs one workdir per seed; two seeds share one")
    for c in cfgs[1:]:
        if {k: v for k, v in dataclasses.asdict(c).items() if k not in ("seed", "workdir")} != \
                {k: v for k, v in dataclasses.asdict(cfgs[0]).items() if k not in ("seed", "workdir")}:
            raise UsageError("seed batching runs one (task, method, hyper-parameters) over seeds; "
                             "the configs differ in more than seed and workdir")
    from lsbench.harness import interrupt
    with contextlib.ExitStack() as stack:
        for rd in rds:
            stack.enter_context(RunLock(rd.path))
        stack.enter_context(interrupt.handling())
        runs = [_Run(c, rd, log) for c, rd in zip(cfgs, rds)]
        todo = [r for r in runs if not r.open()]
        sigs = {id(r): r.loop.batch_signature() if hasattr(r.loop, "batch_signature") else id(r) for r in todo}
        try:
            while any(r.active for r in todo):
                live = [r for r in todo if r.active]
                lead = live[0]
                group = [r for r in live if sigs[id(r)] == sigs[id(lead)] and r.u == lead.u
                         and r.n_units == lead.n_units and r.every == lead.every]
                end = lead.next_end()
                t_chunk = time.time()
                if len(group) == 1 or lead.loop.backend != "vmap":
                    group = [lead]
                    results = [run_units(lead.loop, lead.cur[1], lead.u, end)]
                else:
                    results = type(lead.loop).run_units_seeds([r.loop for r in group],
                                                             [r.cur[1] for r in group], lead.u, end)
                for r, (state, rows, ok) in zip(group, results):
                    r.after(state, rows, ok, t_chunk)
                interrupt.check()
            interrupt.ignore()
            for r in todo:
                r.close()
        except KeyboardInterrupt:
            for r in todo[:-1]:
                with contextlib.suppress(UsageError):
                    r.interrupted()
            todo[-1].interrupted()
        except Exception as e:  # noqa: BLE001 - user faults become one line, bugs keep their traceback
            todo[0].failed(e)
    return [r.final for r in runs]


class _Run:
    """One run's lifecycle around its unit loop: ``open`` (validate, build, write
    the manifest, restore), ``after`` each chunk of units (evaluate, write rows,
    checkpoint, budgets, progress), ``close`` (final.json). Seed batching drives
    several of these with one compiled program."""

    def __init__(self, cfg: RunConfig, rd: RunDir, log):
        self.cfg, self.rd, self.log = cfg, rd, log
        self.final = None

    def open(self) -> bool:
        """Everything before the first unit. True when there is nothing to do
        (``self.final`` is the completed run's)."""
        cfg, rd, log = self.cfg, self.rd, self.log
        self.t_start = time.time()
        _prepare_workdir(cfg, rd, log)
        if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool) or cfg.seed < 0:
            raise UsageError(f"--seed must be a non-negative integer, got {cfg.seed!r}")
        spec = self.spec = load_task(cfg.task)
        cls = self.cls = load_method(cfg.method, spec)
        hp = self.hp = merge_hparams(cls, cfg.hparams)
        if cfg.backend not in ("vmap", "scan", "loop", "shard"):
            raise UsageError(f"--client_backend must be vmap, scan, loop or shard, not '{cfg.backend}'")
        if cfg.resume and os.path.exists(rd.final_path):
            try:
                final = schema.load_final(rd.final_path)
            except (schema.SchemaError, ValueError, OSError):
                log(f"{rd.final_path} is unreadable; resuming from the last checkpoint instead")
                final = None
            old_fp = (_read_json(rd.manifest_path) or {}).get("fingerprint") or {}
            same = all(old_fp.get(k) == v for k, v in (("method_source", source_hash(cls)),
                                                        ("hparams", json.loads(json.dumps(hp, default=str))),
                                                        ("seed", cfg.seed))) if old_fp else True
            if final and same and final["status"] == "completed" and not final.get("stopped_early"):
                log(f"{rd.path}: already completed; nothing to do")
                self.final = final
                return True
        from lsbench.harness import budgets, preflight

        inst, self.sides, loop, data_dir = build(cfg, spec, cls, hp, log)
        self.inst, self.loop = inst, loop
        preflight.check(loop, spec, cls)
        self.limits = budgets.validate(getattr(inst, "edge_budgets", None), f"task {spec.name}")
        fp = self.fp = fingerprint(spec, cls, hp, cfg.seed, inst)
        if cfg.resume:
            _check_resume(cfg, rd, fp, log)

        backup = None
        try:
            if cfg.overwrite and rd.exists():
                backup = rd.path.rstrip("/") + f".replaced-{os.getpid()}"
                os.replace(rd.path, backup)
            os.makedirs(rd.path, exist_ok=True)
            rd.write_manifest(_manifest(cfg, spec, cls, hp, inst, data_dir, fp))
        except OSError as e:
            if backup and not os.path.exists(rd.path):
                os.replace(backup, rd.path)
            raise UsageError(f"cannot write workdir {rd.path}: {e.strerror}; pick a writable --workdir") from None
        if backup:
            shutil.rmtree(backup, ignore_errors=True)  # the new run's manifest is on disk

        from lsbench.harness.checkpoint import Checkpointer
        self.ckpt = Checkpointer(rd.ckpt_path)
        state, start, self.wall0 = loop.init_state(), 0, 0.0
        if cfg.resume and self.ckpt.latest() is not None:
            start, state = self.ckpt.restore(state)
            rd.truncate_metrics(start)
            rows = rd.read_metrics()
            self.wall0 = rows[-1].get("wall_s", 0.0) if rows else 0.0
            log(f"resumed from {loop.unit} {start}")
        else:
            rd.truncate_metrics(-1)
        self.start = start
        n_units = self.n_units = loop.num_units if cfg.max_units is None else min(loop.num_units, cfg.max_units)
        self.every = cfg.checkpoint_every or getattr(loop, "checkpoint_every", None) or max(1, n_units // 10)
        self.foot = budgets.footprint(loop, state) if self.limits else {}
        self.over = budgets.check(self.limits, self.foot)
        self.status, self.t0 = ("over_budget" if self.over else "completed"), time.time()
        self.cur = (start, state)  # (units done, their state): one store, so SIGINT never splits it
        if self.over:
            log(f"over the task's edge budget before {loop.unit} {start + 1}: {'; '.join(self.over)}; stopping")
            rd.append_metrics({"step": start, "kind": "budget_check", **self.foot})  # what was measured
        from lsbench.harness import progress
        self.bar = progress.Bar(total=n_units, initial=start, unit=loop.unit,
                                desc=f"{spec.name} {cls.manifest.name} seed={cfg.seed}",
                                stream=None if log is print else _LogStream(log))
        self.active = not self.over and start < n_units
        return False

    @property
    def u(self) -> int:
        return self.cur[0]

    def next_end(self) -> int:
        return _chunk_end(self.loop, self.u, self.n_units, self.every)

    def after(self, state, rows, ok, t_chunk) -> None:
        """Units ``[u, u + len(rows))`` are done: evaluate, write, checkpoint, check.
        A SIGINT waits until all of it is done, so rows, state and checkpoint agree."""
        from lsbench.harness import interrupt
        with interrupt.critical():
            self._after(state, rows, ok, t_chunk)

    def _after(self, state, rows, ok, t_chunk) -> None:
        from lsbench.harness import budgets
        loop, u, log = self.loop, self.u, self.log
        last = u + len(rows) - 1  # the last unit done (a diverged chunk stops early)
        if loop.is_eval_unit(last) or last + 1 == self.n_units:
            rows[-1].update(loop.evaluate(state))
        dt = time.time() - t_chunk
        for i, row in enumerate(rows):  # wall time of units inside a chunk: interpolated
            row.update(step=u + i + 1, kind=loop.unit,
                       wall_s=round(self.wall0 + t_chunk - self.t0 + dt * (i + 1) / len(rows), 3))
        _append_rows(self.rd, rows)
        u = last + 1
        self.cur = (u, state)
        self.active = u < self.n_units
        if not ok:
            self.status, self.active = "diverged", False
            log(f"{loop.unit} {u}: NaN/Inf in a loss, message or state; stopping (diverged)")
            return
        if self.limits:
            self.foot = budgets.footprint(loop, state)
            self.over = budgets.check(self.limits, self.foot)
            if self.over:
                self.status, self.active = "over_budget", False
                log(f"{loop.unit} {u}: over the task's edge budget: {'; '.join(self.over)}; stopping")
                return
        if u % self.every == 0 or u == self.n_units:
            self.ckpt.save(u, state)
        self.bar.update(len(rows), **_live(self.spec, rows))

    def close(self) -> None:
        from lsbench.harness import budgets
        from lsbench.harness.sealed import measured
        cfg, rd = self.cfg, self.rd
        self.ckpt.close()
        self.bar.close()
        rows = rd.read_metrics()
        state = self.cur[1]
        final = _final(cfg, self.spec, self.cls, self.hp, self.loop, state, rows, self.status,
                       self.wall0 + time.time() - self.t0)
        final["fingerprint_id"] = fingerprint_id(self.fp)
        if self.limits:
            final["budget_margins"] = budgets.margins(self.limits, self.foot)
        if self.over:
            final["budget_violations"] = list(self.over)
            final["error"] = "over budget: " + "; ".join(self.over)
        final["measured"] = measured(self.sides.sealer, final["costs"])
        rd.write_final(final)
        self.final = final
        self.log(f"wrote {rd.final_path} ({self.status}, {time.time() - self.t_start:.1f}s)")

    def interrupted(self):
        from lsbench.harness import interrupt
        interrupt.ignore()
        self.bar.close()
        done, last = self.cur
        try:
            if done > self.start and (self.ckpt.latest() or 0) < done:
                self.ckpt.save(done, last)  # the last completed unit
            self.ckpt.close()
        except Exception:  # noqa: BLE001 - an interrupted save: resume from the one before
            pass
        raise UsageError(f"interrupted (SIGINT) after {self.loop.unit} {done}; continue with --resume "
                         f"--workdir={self.rd.path}") from None

    def failed(self, e: BaseException):
        self.bar.close()
        fault = _user_fault(e, self.cls)
        if fault is None:
            raise e
        raise fault from None


def _manifest(cfg, spec, cls, hp, inst, data_dir, fp=None) -> dict:
    import jax
    return {
        "lsbench_version": __version__, "api_version": api.API_VERSION,
        "benchmark_version": schema.BENCHMARK_VERSION, "versions": _versions(),
        "git_revision": _git_revision(), "devices": [str(d) for d in jax.devices()],
        "platform": jax.default_backend(), "argv": list(cfg.argv),
        "flags": {k: (_method_label(v) if k == "method" else v)
                  for k, v in dataclasses.asdict(cfg).items() if k != "argv"},
        "task": cfg.task, "task_name": spec.name, "task_version": spec.version,
        "task_description": spec.description,
        "method": _method_label(cfg.method), "method_manifest": dataclasses.asdict(cls.manifest),
        "hparams": hp, "seed": cfg.seed, "data_dir": os.path.abspath(os.path.expanduser(data_dir)),
        "hashes": {"task_spec": spec_hash(spec), **dict(inst.hashes)},
        "reference_training": dict(getattr(inst, "reference_training", None) or {}),
        "fingerprint": fp, "fingerprint_id": fingerprint_id(fp) if fp else None,
    }


def _method_label(method) -> str:
    """How a method is named in results: its reference string, or module:Class."""
    if isinstance(method, str):
        return method
    return f"{method.__module__}:{method.__qualname__}"


def _cost_to_target(spec, rows) -> dict:
    out = {"target": spec.target, "reached": False, "bytes": None, "edge_flops": None,
           "cloud_flops": None, "step": None}
    if spec.target is None:
        return out
    for r in rows:
        v = r.get(spec.primary_metric)
        if v is None:
            continue
        hit = v >= spec.target if spec.higher_is_better else v <= spec.target
        if hit:
            out.update(reached=True, bytes=int(r["bytes_up"] + r["bytes_down"]),
                       edge_flops=int(r["edge_flops"]), cloud_flops=int(r["cloud_flops"]), step=r["step"])
            break
    return out


def _final(cfg, spec, cls, hp, loop, state, rows, status, wall) -> dict:
    summary = loop.finish(state, rows)
    metrics = summary["metrics"]
    pm = metrics.get(spec.primary_metric)
    if status == "completed" and (pm is None or not math.isfinite(pm)):
        status = "failed"
    final: dict[str, Any] = {
        "schema": schema.SCHEMA, "benchmark_version": schema.BENCHMARK_VERSION,
        "lsbench_version": __version__, "status": status, "task": spec.name,
        "task_version": spec.version, "track": spec.track, "method": cls.manifest.name,
        "method_version": cls.manifest.version, "reference": cls.manifest.reference,
        "seed": cfg.seed, "hparams": hp, "sweep_point": cfg.sweep_point,
        "primary_metric": spec.primary_metric, "higher_is_better": spec.higher_is_better,
        "target": spec.target, "metrics": metrics, "costs": summary["costs"],
        "derived": {"modelled": True, **summary["derived"]} if summary.get("derived") else {},
        "headline_profile": spec.headline_profile,
        "unit": summary.get("unit", loop.unit), "units": int(summary.get("units", len(rows))),
        "cost_to_target": _cost_to_target(spec, rows), "wall_s": round(wall, 3),
        "stopped_early": len(rows) < loop.num_units,  # --max_units cap; --resume goes on
    }
    if getattr(summary.get("derived"), "inputs", None):  # the counts derived figures come from
        final["derive_inputs"] = summary["derived"].inputs
    if cfg.scramble:
        final["scrambled"] = True  # lsbench check's leak test: never ranked
    if summary.get("validation"):
        final["validation"] = dict(summary["validation"])
    for k in ("cloud_kind",):
        if k in summary:
            final[k] = summary[k]
    return final


def source_hash(cls) -> str:
    """Hash of the source files that define a method: its class's module and the
    modules of its bases outside lsbench (a plugin's own helpers)."""
    import inspect
    files = []
    for c in cls.__mro__:
        mod = sys.modules.get(c.__module__)
        if mod is None or c.__module__.split(".")[0] in ("lsbench", "builtins"):
            continue
        try:
            f = inspect.getsourcefile(mod)
        except TypeError:
            f = None
        if f and f not in files:
            files.append(f)
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            h.update(os.path.basename(f).encode() + b"\0" + fh.read())
    return h.hexdigest()[:16]


def fingerprint(spec, cls, hp, seed, inst) -> dict:
    """What makes two runs the same run: resume continues only a run with an equal
    fingerprint, and the leaderboard groups seeds by it (seed excluded there)."""
    hashes = dict(getattr(inst, "hashes", {}) or {})
    return {"task": spec.name, "task_version": spec.version, "task_spec": spec_hash(spec),
            "method": cls.manifest.name, "method_version": cls.manifest.version,
            "method_source": source_hash(cls), "hparams": hp, "seed": seed,
            "data": {k: v for k, v in sorted(hashes.items())}, "lsbench_version": __version__}


# Hashes that are a function of (task version, seed): the seeds of one point differ in them.
PER_SEED_HASHES = ("partition",)


def fingerprint_id(fp: dict, with_seed: bool = False) -> str:
    """A run's identity; without the seed it groups the seeds of one point (the leaderboard's rows)."""
    body = {k: v for k, v in fp.items() if with_seed or k != "seed"}
    if not with_seed and isinstance(body.get("data"), dict):
        body["data"] = {k: v for k, v in body["data"].items() if k not in PER_SEED_HASHES}
    blob = json.dumps(body, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fingerprint_diff(old: dict, new: dict) -> str:
    """One line naming what differs between two fingerprints."""
    parts = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            sub = [f"{k}.{s}: {a.get(s)!r} -> {b.get(s)!r}" for s in sorted(set(a) | set(b)) if a.get(s) != b.get(s)]
            parts.extend(sub)
        else:
            parts.append(f"{k}: {a!r} -> {b!r}")
    return "; ".join(parts[:4]) + (" ..." if len(parts) > 4 else "")
