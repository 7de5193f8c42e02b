"""`lsbench verify --results=DIR`: re-run one seed of each (task, method, point)
in a results folder and compare with what the folder claims.

Costs (bytes, messages, FLOPs, solver nodes, setup) are metered exactly and must
be equal. Metrics (test and validation) must agree within ``|a - b| <= atol +
rtol * |b|`` (defaults 1e-6 and 1e-4: the same platform reproduces them to the
last bit or close; across machines, XLA may round differently, so pass looser
tolerances when verifying a submission made elsewhere). Prints one line per
mismatch and exits 1 if there is any; bad input exits 2.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile

from absl import flags

from lsbench.cli.main import _die, _parse


def _flags():
    fv = flags.FlagValues()
    d = dict(flag_values=fv)
    flags.DEFINE_string("results", None, "A results folder (a suite's runs/, leaderboard/results, or one run).", **d)
    flags.DEFINE_float("rtol", 1e-4, "Relative tolerance on metrics.", **d)
    flags.DEFINE_float("atol", 1e-6, "Absolute tolerance on metrics.", **d)
    flags.DEFINE_string("data_dir", None, "Data and model cache (default $LSBENCH_DATA_DIR or ~/.cache/lsbench).", **d)
    flags.DEFINE_list("tasks", None, "Only these tasks (fnmatch patterns).", **d)
    flags.DEFINE_list("methods", None, "Only these methods (fnmatch patterns).", **d)
    return fv


def pick(runs) -> list:
    """One run per (task, method, point): the lowest completed seed."""
    best: dict = {}
    for r in runs:
        f = r.final
        if f["status"] != "completed" or f.get("stopped_early") or f.get("scrambled"):
            continue
        k = (f["task"], f["method"], f.get("sweep_point") or "default", f.get("fingerprint_id") or "")
        if k not in best or f["seed"] < best[k].final["seed"]:
            best[k] = r
    return [best[k] for k in sorted(best)]


def compare(old: dict, new: dict, rtol: float, atol: float) -> list[str]:
    """What differs: costs exactly, metrics and validation within tolerance."""
    out = []
    if new.get("status") != old.get("status"):
        out.append(f"status {old.get('status')} != {new.get('status')}")
    for k in sorted(set(old.get("costs", {})) | set(new.get("costs", {}))):
        a, b = old["costs"].get(k), new.get("costs", {}).get(k)
        if a != b:
            out.append(f"costs.{k} {a} != {b} (costs must match exactly)")
    for block in ("metrics", "validation"):
        o, n = old.get(block) or {}, new.get(block) or {}
        for k in sorted(set(o) | set(n)):
            a, b = o.get(k), n.get(k)
            if a is None and b is None:
                continue
            if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
                if a != b:
                    out.append(f"{block}.{k} {a} != {b}")
                continue
            if abs(a - b) > atol + rtol * abs(a):
                out.append(f"{block}.{k} {a:.6g} != {b:.6g} (|diff| {abs(a - b):.3g} > {atol:g} + {rtol:g}*|x|)")
    return out


def _run_args(run) -> tuple[str, str, str]:
    """(task, method, backend) as the run was started (manifest.json), else from final.json."""
    try:
        with open(os.path.join(run.path, "manifest.json")) as f:
            man = json.load(f)
    except (OSError, ValueError):
        man = {}
    fl = man.get("flags") or {}
    return (man.get("task") or run.final["task"], fl.get("method") or man.get("method") or run.final["method"],
            fl.get("backend") or "vmap")


def verify(runs, rtol=1e-4, atol=1e-6, data_dir=None, out=print) -> int:
    """Re-runs ``pick(runs)``; returns the number of mismatching runs."""
    import lsbench
    from lsbench.harness.runner import USER_ERRORS
    bad = 0
    todo = pick(runs)
    for i, r in enumerate(todo, 1):
        f = r.final
        where = f"{f['task']} {f['method']} {f.get('sweep_point') or 'default'} seed{f['seed']}"
        task, method, backend = _run_args(r)
        with tempfile.TemporaryDirectory(prefix="lsbench-verify-") as d:
            try:
                new = lsbench.run(task, method, seed=f["seed"], hparams=f.get("hparams") or None,
                                  workdir=os.path.join(d, "run"), data_dir=data_dir, backend=backend,
                                  sweep_point=f.get("sweep_point"))
            except USER_ERRORS as e:
                out(f"MISMATCH {where}: cannot re-run ({str(e).splitlines()[0]})")
                bad += 1
                continue
        diffs = compare(f, new, rtol, atol)
        for x in diffs:
            out(f"MISMATCH {where}: {x}")
        bad += bool(diffs)
        print(f"verify: {i}/{len(todo)} {where}: {'ok' if not diffs else f'{len(diffs)} mismatch(es)'}",
              file=sys.stderr, flush=True)
    return bad


def main(argv) -> int:
    fv = _parse(_flags(), list(argv), "verify")
    if not fv.results:
        _die("--results is required: a results folder, e.g. --results=leaderboard/results")
    if fv.rtol < 0 or fv.atol < 0:
        _die("--rtol and --atol must be non-negative")
    import fnmatch

    from lsbench.leaderboard.load import LoadError, load_results
    try:
        runs = load_results([fv.results])
    except LoadError as e:
        _die(str(e).splitlines()[0])
    keep = lambda pats, v: not pats or any(fnmatch.fnmatch(v, p) for p in pats)  # noqa: E731
    runs = [r for r in runs if keep(fv.tasks, r.final["task"]) and keep(fv.methods, r.final["method"])]
    if not pick(runs):
        _die(f"no completed run to verify under {fv.results} (after --tasks/--methods)")
    n = len(pick(runs))
    bad = verify(runs, fv.rtol, fv.atol, fv.data_dir)
    print(f"verify: {n - bad}/{n} (task, method, point) reproduced "
          f"(costs exact, metrics within atol={fv.atol:g} + rtol={fv.rtol:g}*|x|)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
