"""`lsbench suite --preset=demo|quick|full|FILE.json --workdir=DIR`: run a grid.

Writes DIR/runs/<task>/<method>/<point>/seed<S>/ (one `lsbench run` each),
DIR/logs/ and DIR/suite.json. Re-running resumes: completed runs are skipped.
Bad input prints one line and exits 2; failed runs are recorded and the
suite goes on (exit 0, or 1 with --strict).
"""
from __future__ import annotations

import os
import shlex
import sys

from absl import flags

from lsbench.cli.main import _die, _parse


def _flags():
    fv = flags.FlagValues()
    d = dict(flag_values=fv)
    flags.DEFINE_string("preset", None, "demo, quick, full, or a path to a preset JSON file.", **d)
    flags.DEFINE_string("workdir", None, "Suite directory: runs/, logs/, suite.json.", **d)
    flags.DEFINE_integer("workers", 1, "Runs at a time, each in its own process.", **d)
    flags.DEFINE_list("tracks", None, "Only these tracks (train,infer,plan).", **d)
    flags.DEFINE_list("tasks", None, "Only these tasks (names or fnmatch patterns, e.g. 'infer/*-small').", **d)
    flags.DEFINE_list("methods", None, "Only these methods (names or fnmatch patterns).", **d)
    flags.DEFINE_list("seeds", None, "Seeds to run instead of the preset's, e.g. 0,1,2.", **d)
    flags.DEFINE_bool("dry_run", False, "List the grid (and what is done already) and exit.", **d)
    flags.DEFINE_string("data_dir", None, "Passed to every run (default $LSBENCH_DATA_DIR or ~/.cache/lsbench).", **d)
    flags.DEFINE_enum("platform", None, ["cpu", "gpu", "tpu"], "Passed to every run.", **d)
    flags.DEFINE_integer("run_timeout_s", None, "Kill a run after this many seconds (default: the preset's).", **d)
    flags.DEFINE_bool("strict", False, "Exit 1 if any run failed.", **d)
    flags.DEFINE_string("shard", None, "Run only slice i of N (i/N, 0-based) of the grid, e.g. 0/4: a "
                        "deterministic split (one sweep point's seeds stay together) for N machines or a "
                        "job array; `lsbench leaderboard --results=A,B,...` merges their runs/ folders.", **d)
    return fv


def parse_shard(text):
    """'i/N' -> (i, N), or exit 2 with one line."""
    i, _, n = (text or "").partition("/")
    if not (i.isdigit() and n.isdigit() and int(n) >= 1 and int(i) < int(n)):
        _die(f"--shard must be i/N with 0 <= i < N (e.g. 0/4), not '{text}'")
    return int(i), int(n)


def main(argv) -> int:
    argv = list(argv)
    fv = _parse(_flags(), argv, "suite")
    if not fv.preset:
        _die("--preset is required: demo, quick, full or a preset .json file")
    if not fv.workdir and not fv.dry_run:
        _die("--workdir is required, e.g. --workdir=runs/demo")
    if fv.workers < 1:
        _die(f"--workers must be at least 1, not {fv.workers}")
    bad = sorted(set(fv.tracks or ()) - {"train", "infer", "plan"})
    if bad:
        _die(f"--tracks: unknown track(s) {', '.join(bad)}; use train, infer, plan")
    try:
        seeds = [int(s) for s in fv.seeds] if fv.seeds else None
    except ValueError:
        _die(f"--seeds must be integers separated by commas, not '{','.join(fv.seeds)}'")
    from lsbench.suite.grid import GridError, expand, load_preset
    warnings: list = []
    try:
        preset = load_preset(fv.preset)
        items = expand(preset, seeds, fv.tracks, fv.tasks, fv.methods, warnings)
    except GridError as e:
        _die(str(e))
    if not items:
        _die("no runs match the preset and filters (--tracks/--tasks/--methods); try --dry_run without them")
    shard = None
    if fv.shard:
        from lsbench.suite.runner import shard_items
        shard = parse_shard(fv.shard)
        items = shard_items(items, *shard)
        if not items:
            print(f"shard {fv.shard} of this grid has no runs (the grid has fewer sweep points than shards)")
            return 0
    if fv.platform in ("gpu", "tpu"):   # fail once, not in every run
        from lsbench.errors import LsbenchError
        from lsbench.harness.distributed import select_platform
        try:
            select_platform(fv.platform)
        except LsbenchError as e:
            _die(str(e))
    if fv.dry_run:
        return _dry_run(items, fv.workdir, warnings)
    from lsbench.suite.runner import Suite, suite_json_name
    command = "lsbench suite " + " ".join(shlex.quote(a) for a in argv)
    timeout = fv.run_timeout_s or preset.get("timeout_s")
    counts = Suite(items, fv.workdir, preset, fv.workers, fv.data_dir, fv.platform, timeout, command,
                   warnings, shard=shard).run()
    failed = counts.get("failed", 0)
    print(f"suite {preset['name']}: {counts['total']} runs, {counts.get('completed', 0)} completed, "
          f"{failed} failed; summary in {os.path.join(fv.workdir, suite_json_name(shard))}", flush=True)
    return 1 if (fv.strict and failed) else 0


def _dry_run(items, workdir, warnings) -> int:
    from lsbench.suite.runner import done_final
    from lsbench.results.rundir import RunDir
    for it in items:
        state = "error: " + it.error if it.error else "new"
        if workdir and not it.error:
            wd = it.workdir(workdir)
            state = ("done" if done_final(wd) else "resume" if RunDir(wd).exists() else "new")
        print(f"{it.task_name:28s} {it.label:18s} {it.point:24s} seed{it.seed}  [{state}]  hparams={it.hparams}")
    for w in warnings:
        print(f"warning: {w}")
    print(f"{len(items)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
