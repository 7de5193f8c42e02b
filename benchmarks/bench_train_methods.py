"""Benchmark: every training baseline x one task x seeds -> a results table.

    python benchmarks/bench_train_methods.py --task=train/mnist1d --seeds=0,1,2 --root=runs/bench-train

Runs each (method, seed) with ``lsbench run`` in a subprocess (reusing any
completed run under --root), then prints a Markdown table of mean ± std over
seeds: edge and cloud accuracy, bytes up/down, edge/cloud FLOPs and wall time.
Also reports bytes per round and the run's user CPU seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("fedavg", "fedprox", "heterofl", "fedmd", "feddf", "fedgkt", "dsfl", "bikd")


def run_one(task, method, seed, root, data_dir=None, table_only=False):
    wd = os.path.join(root, task.replace("/", "_"), method, f"seed{seed}")
    final = os.path.join(wd, "final.json")
    if os.path.exists(final):
        with open(final) as f:
            out = json.load(f)
        if out.get("status") == "completed":
            if os.path.exists(final + ".bench"):
                with open(final + ".bench") as f:
                    out.update(json.load(f))
            return out
    if table_only:
        return None
    args = [sys.executable, "-m", "lsbench.cli.main", "run", f"--task={task}", f"--method={method}",
            f"--seed={seed}", f"--workdir={wd}", "--overwrite"]
    if data_dir:
        args.append(f"--data_dir={data_dir}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    t0 = time.time()
    p = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        print(f"{method} seed {seed} failed:\n{p.stderr[-2000:]}", file=sys.stderr)
        return None
    with open(final) as f:
        out = json.load(f)
    out["bench_wall_s"] = round(time.time() - t0, 1)
    out["bench_user_s"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before, 1)
    with open(final + ".bench", "w") as f:
        json.dump({k: out[k] for k in ("bench_wall_s", "bench_user_s")}, f)
    return out


def _ms(vals, fmt="{:.3f}", sfmt=None):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    return (fmt + " ± " + (sfmt or fmt)).format(float(np.mean(vals)), float(np.std(vals)))


def _si(x):
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def _to_target(runs):
    hit = [r["cost_to_target"]["bytes"] for r in runs if r["cost_to_target"].get("reached")]
    return f"{_si(np.mean(hit))} ({len(hit)}/{len(runs)})" if hit else f"not reached (0/{len(runs)})"


def table(task, results):
    lines = [f"| method | seeds | edge acc | edge acc - local (points) | edge personal acc | cloud acc | bytes up "
             f"| bytes down | bytes/round | edge FLOPs | cloud FLOPs | bytes to target | wall s | user CPU s |",
             "|---" * 14 + "|"]
    local = {r["seed"]: r["metrics"]["edge_accuracy"] for r in results.get("local") or []}
    for m, runs in results.items():
        if not runs:
            lines.append(f"| {m} | 0 |" + " |" * 12)
            continue
        get = lambda k, src="metrics": [r[src].get(k) for r in runs]  # noqa: E731
        per_round = [(r["costs"]["bytes_up"] + r["costs"]["bytes_down"]) / max(r["units"], 1) for r in runs]
        lines.append("| " + " | ".join([
            m, str(len(runs)), _ms(get("edge_accuracy")),
            _ms([100 * (r["metrics"]["edge_accuracy"] - local[r["seed"]]) for r in runs if r["seed"] in local],
                "{:+.1f}", "{:.1f}"),  # paired by seed
            _ms(get("edge_personal_accuracy")), _ms(get("cloud_accuracy")),
            _si(np.mean(get("bytes_up", "costs"))), _si(np.mean(get("bytes_down", "costs"))),
            _si(np.mean(per_round)), _si(np.mean(get("edge_flops", "costs"))),
            _si(np.mean(get("cloud_flops", "costs"))), _to_target(runs),
            _ms([r["wall_s"] for r in runs], "{:.0f}"),
            _ms([r.get("bench_user_s") for r in runs], "{:.0f}")]) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="train/mnist1d")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--root", default="runs/bench-train")
    ap.add_argument("--data_dir", default=None)
    ap.add_argument("--table_only", action="store_true", help="only tabulate completed runs under --root")
    a = ap.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    results = {}
    for m in a.methods.split(","):
        results[m] = [run_one(a.task, m, s, a.root, a.data_dir, a.table_only) for s in seeds]
        r = [x for x in results[m] if x]
        print(f"{m}: " + ", ".join(f"seed {x['seed']} {x['status']} {x['wall_s']:.0f}s" for x in r), flush=True)
        results[m] = r
    print(f"\n{a.task}, seeds {a.seeds} (mean ± std); command: python benchmarks/bench_train_methods.py "
          f"--task={a.task} --seeds={a.seeds}\n")
    print(table(a.task, results))


if __name__ == "__main__":
    main()
