"""The ``lsbench`` command line (absl flags).

    lsbench run --task=T --method=M --seed=S --workdir=DIR   one run
    lsbench list [--track=train|infer|plan]                   tasks and methods
    lsbench check --method=M                                  validate a plugin
    lsbench suite --preset=demo --workdir=DIR                 a grid of runs
    lsbench leaderboard --results=DIR --out=DIR               tables, plots, site
    lsbench verify --results=DIR                              re-run one seed per point, compare

User errors print one line to stderr and exit 2; nothing is written.
"""
from __future__ import annotations

import json
import os
import sys

from absl import flags

USAGE = __doc__


def _run_flags():
    fv = flags.FlagValues()
    d = dict(flag_values=fv)
    flags.DEFINE_string("task", None, "Task name (see `lsbench list`), pkg.mod:NAME or file.py:NAME.", **d)
    flags.DEFINE_string("method", None, "Method: a name, pkg.mod:Class, or path/to/file.py[:Class].", **d)
    flags.DEFINE_string("attack", None, "Training: the task's malicious clients run this attack (a name from "
                        "lsbench.attacks, pkg.mod:Class or path/to/file.py:Class); on a clean task 20% of "
                        "clients become malicious. The run's task is TASK@ATTACK.", **d)
    flags.DEFINE_integer("seed", 0, "Root seed; everything derives from it.", **d)
    flags.DEFINE_list("seeds", None, "Seed batching: these seeds as one program where the task allows it "
                      "(training, vmap); one run directory each: --workdir with {seed} in it, else "
                      "WORKDIR/seed<N>.", **d)
    flags.DEFINE_string("workdir", None, "Run directory (manifest.json, metrics.jsonl, final.json, ckpt/).", **d)
    flags.DEFINE_string("hparams", None, "JSON object of hyper-parameter overrides, e.g. '{\"lr\": 0.1}'.", **d)
    flags.DEFINE_string("sweep_point", None, "Label of the sweep point these hparams trace (recorded).", **d)
    flags.DEFINE_string("data_dir", None, "Data and model cache (default $LSBENCH_DATA_DIR or ~/.cache/lsbench).", **d)
    flags.DEFINE_bool("resume", False, "Continue an interrupted run in --workdir from its last checkpoint.", **d)
    flags.DEFINE_bool("overwrite", False, "Replace the run in --workdir (kept until the new run finishes).", **d)
    flags.DEFINE_enum("client_backend", "vmap", ["vmap", "loop", "scan", "shard"],
                      "Training clients: vmap (default), loop (debug: one jitted call per step), "
                      "scan (a tier's clients one after another inside the round program: less memory), "
                      "shard (client axis on a device mesh; the default for multi-process runs).", **d)
    flags.DEFINE_enum("platform", None, ["cpu", "gpu", "tpu"], "JAX platform (default: JAX's choice).", **d)
    flags.DEFINE_integer("max_units", None, "Debug cap on rounds/batches/chunks (the run is marked capped).", **d)
    flags.DEFINE_integer("checkpoint_every", None, "Checkpoint every N units (default: 10 per run).", **d)
    flags.DEFINE_bool("rebuild_cache", False, "Rebuild the cached datasets and reference models this run "
                      "uses (after a corrupt-cache error).", **d)
    flags.DEFINE_string("coordinator", None, "Multi-process run: host:port of process 0 "
                        "(jax.distributed); also pass --num_processes and --process_id.", **d)
    flags.DEFINE_integer("num_processes", None, "Multi-process run: how many processes.", **d)
    flags.DEFINE_integer("process_id", None, "Multi-process run: this process's index (0 writes results).", **d)
    flags.DEFINE_bool("distributed", False, "Multi-process run with the cluster settings JAX detects "
                      "(SLURM, Open MPI, TPU pod) instead of --coordinator.", **d)
    return fv


def _parse(fv, argv, cmd):
    if any(a in ("--help", "-h", "--helpfull") for a in argv):
        print(f"lsbench {cmd}: flags\n" + fv.get_help())
        raise SystemExit(0)
    try:
        fv([f"lsbench {cmd}"] + argv)
    except flags.Error as e:
        _die(f"{e}; see `lsbench {cmd} --help`")
    return fv


def _die(msg: str):
    print(f"lsbench: error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def _setup(fv):
    """Platform and processes (lsbench.harness.distributed), before JAX starts."""
    from lsbench.errors import LsbenchError
    from lsbench.harness import distributed
    try:
        return distributed.setup(fv.platform, getattr(fv, "coordinator", None),
                                 getattr(fv, "num_processes", None), getattr(fv, "process_id", None),
                                 getattr(fv, "distributed", False))
    except LsbenchError as e:
        _die(str(e).splitlines()[0])


def cmd_run(argv):
    fv = _parse(_run_flags(), argv, "run")
    for req in ("task", "method", "workdir"):
        if not fv[req].value:
            _die(f"--{req} is required; see `lsbench run --help`")
    try:
        hp = json.loads(fv.hparams) if fv.hparams else None
    except json.JSONDecodeError as e:
        _die(f"--hparams is not valid JSON ({e.msg} at column {e.colno}); pass an object like '{{\"lr\": 0.1}}'")
    if hp is not None and not isinstance(hp, dict):
        _die("--hparams must be a JSON object like '{\"lr\": 0.1}'")
    multi = _setup(fv)
    if fv.rebuild_cache:
        os.environ["LSBENCH_REBUILD_CACHE"] = "1"
    from lsbench.harness import distributed
    from lsbench.harness.runner import USER_ERRORS, RunConfig, execute
    writer, workdir = distributed.is_writer(), fv.workdir
    backend = fv.client_backend
    if multi and not fv["client_backend"].present:
        backend = "shard"   # several processes: clients over all of their devices
    if multi and fv.resume:
        _die("--resume is not supported for multi-process runs yet; rerun from the start with --overwrite")
    if not writer:  # process i > 0 computes its share; its own files go to a scratch dir
        import tempfile
        workdir = os.path.join(tempfile.mkdtemp(prefix="lsbench-proc-"), "run")
    task = f"{fv.task}@{fv.attack}" if fv.attack else fv.task  # tasks.train_byz.from_ref
    if fv.seeds:
        return _run_seeds(fv, task, hp)
    cfg = RunConfig(task=task, method=fv.method, seed=fv.seed, workdir=workdir, hparams=hp,
                    data_dir=fv.data_dir, resume=fv.resume, overwrite=fv.overwrite and writer,
                    backend=backend, sweep_point=fv.sweep_point, max_units=fv.max_units,
                    checkpoint_every=fv.checkpoint_every, argv=tuple(sys.argv))
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if writer else (lambda s: None)
    try:
        final = execute(cfg, log=log)
    except USER_ERRORS as e:
        _die(str(e).splitlines()[0])
    finally:
        if not writer:
            import shutil
            shutil.rmtree(os.path.dirname(workdir), ignore_errors=True)
    if writer:
        print(summary(final, os.path.join(os.path.abspath(fv.workdir), "final.json")))
    return 0


def _run_seeds(fv, task, hp):
    try:
        seeds = [int(s) for s in fv.seeds]
    except ValueError:
        _die(f"--seeds must be integers separated by commas, not '{','.join(fv.seeds)}'")
    if len(set(seeds)) < len(seeds):
        _die("--seeds lists a seed twice")
    from lsbench.harness.distributed import is_writer
    if not is_writer():
        _die("--seeds is not supported for multi-process runs; run one seed per job")
    from lsbench.harness import runner
    if not hasattr(runner, "execute_seeds"):
        _die("--seeds: this lsbench has no seed batching; run one seed at a time with --seed")
    USER_ERRORS, RunConfig, execute_seeds = runner.USER_ERRORS, runner.RunConfig, runner.execute_seeds
    wd = lambda s: fv.workdir.format(seed=s) if "{seed}" in fv.workdir else os.path.join(fv.workdir, f"seed{s}")  # noqa: E731
    cfgs = [RunConfig(task=task, method=fv.method, seed=s, workdir=wd(s), hparams=hp, data_dir=fv.data_dir,
                      resume=fv.resume, overwrite=fv.overwrite, backend=fv.client_backend,
                      sweep_point=fv.sweep_point, max_units=fv.max_units,
                      checkpoint_every=fv.checkpoint_every, argv=tuple(sys.argv)) for s in seeds]
    try:
        finals = execute_seeds(cfgs, log=lambda s: print(s, file=sys.stderr, flush=True))
    except USER_ERRORS as e:
        _die(str(e).splitlines()[0])
    for s, final in zip(seeds, finals):
        print(summary(final, os.path.join(os.path.abspath(wd(s)), "final.json")))
    return 0


def _si(n, unit) -> str:
    """1234567 -> '1.23 MB' (decimal prefixes, as the costs are counted)."""
    if n is None:
        return "n/a"
    for k, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= k:
            return f"{n / k:.3g} {p}{unit}"
    return f"{n:g} {unit}"


def summary(final: dict, path: str) -> str:
    """A finished run in a few lines, with units; the path of final.json last."""
    c, pm = final["costs"], final["primary_metric"]
    fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    val = (final.get("validation") or {}).get(pm)
    lines = [f"{final['status']}: {final['task']} {final['method']} seed={final['seed']} "
             f"({final['units']} {final['unit']}s, {final['wall_s']:.1f} s)",
             f"  {pm} {fmt(final['metrics'].get(pm))}" + (f" (validation {fmt(val)})" if val is not None else ""),
             f"  traffic: {_si(c['bytes_up'], 'B')} up, {_si(c['bytes_down'], 'B')} down; compute: edge "
             f"{_si(c['edge_flops'], 'FLOPs')}, cloud {_si(c['cloud_flops'], 'FLOPs')}"]
    t = final.get("cost_to_target") or {}
    if t.get("target") is not None:
        lines.append(f"  target {pm} >= {t['target']}: " + (
            f"reached at {final['unit']} {t['step']} after {_si(t['bytes'], 'B')}" if t.get("reached")
            else "not reached"))
    if final.get("error"):
        lines.append(f"  error: {final['error']}")
    return "\n".join(lines + [path])


def cmd_list(argv):
    fv = flags.FlagValues()
    flags.DEFINE_enum("track", None, ["train", "infer", "plan"], "Only this track.", flag_values=fv)
    _parse(fv, argv, "list")
    from lsbench.registry import METHOD_GROUP, TASK_GROUP, list_entries
    tasks = {n: s for n, s in list_entries(TASK_GROUP).items() if not fv.track or s.track == fv.track}
    print("TASKS")
    for n, s in tasks.items():
        print(f"  {n:26s} v{s.version:3s} {s.description}")
    print("METHODS")
    from lsbench.registry import short_name
    for key, cls in list_entries(METHOD_GROUP).items():
        man = cls.manifest
        if fv.track and fv.track not in man.tracks:
            continue
        ref = f" [reference: {man.reference}]" if man.reference else ""
        where = f" ({', '.join(man.applies_to)})" if man.applies_to else ""
        print(f"  {short_name(key):16s} {'/'.join(man.tracks):6s} {man.description}{where}{ref}")
    return 0


def cmd_check(argv):
    fv = flags.FlagValues()
    flags.DEFINE_string("method", None, "Method to validate (name, pkg.mod:Class or file.py[:Class]).", flag_values=fv)
    flags.DEFINE_string("task", None, "Task to check on (default: the smallest task of its track).", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "Data and model cache.", flag_values=fv)
    flags.DEFINE_integer("units", 2, "Rounds/batches/chunks per check run.", flag_values=fv)
    _parse(fv, argv, "check")
    if not fv.method:
        _die("--method is required; see `lsbench check --help`")
    from lsbench.harness.check import check_method
    from lsbench.harness.runner import USER_ERRORS
    try:
        return check_method(fv.method, fv.task, fv.data_dir, fv.units)
    except USER_ERRORS as e:
        _die(str(e).splitlines()[0])


def _delegate(module, argv):
    import importlib
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        _die(f"{module} is not available ({e})")
    return mod.main(argv)


COMMANDS = {
    "run": cmd_run, "list": cmd_list, "check": cmd_check,
    "suite": lambda a: _delegate("lsbench.suite.cli", a),
    "leaderboard": lambda a: _delegate("lsbench.leaderboard.cli", a),
    "verify": lambda a: _delegate("lsbench.results.verify", a),
}


def main(argv=None) -> int:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    cmd = argv[1]
    if cmd not in COMMANDS:
        _die(f"unknown command '{cmd}'; use one of {', '.join(COMMANDS)}")
    return COMMANDS[cmd](argv[2:]) or 0


def run_main():
    try:
        code = main()
    except KeyboardInterrupt:
        print("lsbench: error: interrupted (SIGINT); a run continues from its last checkpoint "
              "with --resume", file=sys.stderr)
        code = 2
    except BrokenPipeError:   # `lsbench list | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    run_main()
