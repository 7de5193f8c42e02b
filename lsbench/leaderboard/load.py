"""Find, validate and group run results (final.json + metrics.jsonl)."""
from __future__ import annotations

import dataclasses
import os

from lsbench.results import schema


class LoadError(ValueError):
    """Results that cannot go on one leaderboard; the message names the file."""


@dataclasses.dataclass
class Run:
    path: str           # the run directory
    final: dict
    metrics: list       # rows of metrics.jsonl

    @property
    def key(self):
        f = self.final
        return f["task"], f["method"], f.get("sweep_point") or "default", f.get("fingerprint_id") or ""


def find_finals(root: str) -> list[str]:
    if not os.path.isdir(root):
        raise LoadError(f"results directory '{root}' does not exist; pass --results=DIR of a suite or run")
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and x != "ckpt" and ".replaced-" not in x)
        if "final.json" in files:
            out.append(os.path.join(d, "final.json"))
    return out


def load_run(final_path: str) -> Run:
    try:
        final = schema.load_final(final_path)
        d = os.path.dirname(final_path)
        mpath = os.path.join(d, "metrics.jsonl")
        if not os.path.exists(mpath):
            raise LoadError(f"{mpath}: missing (every run writes metrics.jsonl beside final.json)")
        rows = schema.load_metrics(mpath)
    except schema.SchemaError as e:
        raise LoadError(str(e)) from None
    if final["status"] == "completed" and not rows:
        raise LoadError(f"{mpath}: empty, but final.json says the run completed")
    return Run(d, final, rows)


def load_results(roots) -> list[Run]:
    """Loads every run under ``roots``; refuses mixed versions and duplicates."""
    runs = [load_run(p) for r in roots for p in find_finals(r)]
    if not runs:
        raise LoadError(f"no final.json under {', '.join(roots)}; run `lsbench suite` or `lsbench run` first")
    check_versions(runs)
    seen = {}
    for r in runs:
        k = r.key + (r.final["seed"],)
        if k in seen:
            raise LoadError(f"{r.path}/final.json: duplicates {seen[k]}/final.json "
                            f"(task {k[0]}, method {k[1]}, point {k[2]}, seed {k[4]}); pass each run once")
        seen[k] = r.path
    return runs


def check_versions(runs) -> None:
    first = {}
    for r in runs:
        f = r.final
        for what, key, val in (("benchmark version", "benchmark", f["benchmark_version"]),
                               (f"task {f['task']} version", ("task", f["task"]), f["task_version"]),
                               (f"task {f['task']} primary metric", ("metric", f["task"]),
                                f"{f['primary_metric']}/{'max' if f['higher_is_better'] else 'min'}")):
            if key not in first:
                first[key] = (val, r.path)
            elif first[key][0] != val:
                raise LoadError(f"{r.path}/final.json: {what} '{val}' differs from '{first[key][0]}' in "
                                f"{first[key][1]}/final.json; publish one version at a time")


def group(runs) -> dict:
    """{task: {(method, sweep_point): [Run, ...]}} in a stable order. Runs share a
    row only if their fingerprints (task, method source, hyper-parameters, data;
    not the seed) are equal: where one (method, point) holds several
    fingerprints, each gets its own row, labelled with the fingerprint's start."""
    fps: dict = {}
    for r in runs:
        task, method, point, fid = r.key
        fps.setdefault((task, method, point), set()).add(fid)
    out: dict = {}
    for r in sorted(runs, key=lambda r: (r.key, r.final["seed"])):
        task, method, point, fid = r.key
        label = point if len(fps[(task, method, point)]) == 1 else f"{point} [{fid[:8] or 'no fingerprint'}]"
        out.setdefault(task, {}).setdefault((method, label), []).append(r)
    return out
