"""Benchmark of the vision inference tasks: every shapes baseline (and its
sweep with --sweep) on infer/shapes-split and infer/shapes-exit; prints a
markdown table of accuracy, bytes, offload rate, lte latency and the wall time
of each evaluation (models cached first, so wall time is evaluation only).

    python tests/bench_infer_vision.py --data_dir=/tmp/lsb [--small] [--sweep] [--mode=split|exit]

Measured (full tiers, test split 2,000 examples, seed 0, 2 shared CPU cores;
latency = the harness's modelled mean at ``lte``; wall = the run's evaluation
loop, models cached; the bottleneck's includes its prepare training):

| task  | method (hparams)                 | acc   | B up | B down | offload | lte ms | primary  | wall s |
|-------|----------------------------------|-------|------|--------|---------|--------|----------|--------|
| split | edge-only                        | 0.498 | 0    | 0      | 0.00    | 0.11   | 0.0541*  | 4.0    |
| split | cloud-only (raw uint8)           | 0.677 | 3072 | 4      | 1.00    | 54.10  | 0.0541   | 7.9    |
| split | split (auto@lte -> pool3 fp32)   | 0.677 | 2048 | 4      | 1.00    | 53.18  | 0.0532   | 6.4    |
| split | split (split=conv1, fp32)        | 0.677 | 65536| 4      | 1.00    | 137.5**| -        | -      |
| split | split-quant (auto -> pool3 int8) | 0.678 | 520  | 4      | 1.00    | 51.14  | 0.0511   | 7.7    |
| split | split-quant (pool3, int4)        | 0.673 | 264  | 4      | 1.00    | 50.80  | 0.0508   | 6.2    |
| split | bottleneck (pool3, 8 ch, int8)   | 0.650 | 136  | 4      | 1.00    | 50.63  | 0.0541*  | 18.6   |
| split | bottleneck (pool3, 16 ch, int8)  | 0.675 | 264  | 4      | 1.00    | 50.80  | 0.0508   | 17.2   |
| exit  | edge-only (exit 1)               | 0.491 | 0    | 0      | 0.00    | 0.21   | 0.000    | 1.0    |
| exit  | cloud-only (raw uint8)           | 0.631 | 3072 | 4      | 1.00    | 54.10  | 1.000    | 1.7    |
| exit  | early-exit threshold -1 (never)  | 0.632 | 1032 | 4      | 1.00    | 51.59  | 1.011    | 1.7    |
| exit  | early-exit 0.5 (default)         | 0.618 | 824  | 3      | 0.80    | 41.23  | 0.903    | 1.1    |
| exit  | early-exit 0.6                   | 0.589 | 634  | 2      | 0.61    | 31.75  | 0.695    | 1.2    |
| exit  | early-exit 0.7                   | 0.538 | 343  | 1      | 0.33    | 17.29  | 0.337    | 1.1    |
| exit  | early-exit 0.8                   | 0.508 | 178  | 1      | 0.17    | 9.04   | 0.122    | 1.1    |
| exit  | early-exit 2.0 (always)          | 0.491 | 0    | 0      | 0.00    | 0.21   | 0.000    | 1.1    |

primary: split = ``latency_lte_1pt_s`` (s; * = more than 1 pt below cloud-only, scored as the
raw-offload fallback); exit = ``gap_recovered``. ** tiny-tier run. Split's auto choice moves
input (lan, wifi) -> pool3 (lte, weak); split-quant's input (lan) -> pool3 int8 (wifi, lte, weak).
Reference-model training (full tier, CPU heavily shared, load average 10-18 on 2 cores):
edge CNN 395 s, cloud CNN 998 s, multi-exit 1442 s; cached afterwards.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from lsbench.harness.runner import RunConfig, execute

METHODS = {
    "split": ["edge-only", "cloud-only", "split", "split-quant", "bottleneck"],
    "exit": ["edge-only", "cloud-only", "early-exit"],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data_dir", default=os.environ.get("LSBENCH_DATA_DIR", "/tmp/lsbench-data"))
    ap.add_argument("--workdir", default="/tmp/bench_infer_vision")
    ap.add_argument("--small", action="store_true", help="the CI-sized tiers")
    ap.add_argument("--sweep", action="store_true", help="run every sweep point too")
    ap.add_argument("--only", default="", help="comma-separated methods")
    ap.add_argument("--mode", default="split,exit", help="which tasks: split, exit or both")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    from lsbench.registry import load_method, load_task
    rows = []
    for mode, methods in METHODS.items():
        if mode not in a.mode.split(","):
            continue
        task = f"infer/shapes-{mode}" + ("-small" if a.small else "")
        t0 = time.time()
        spec = load_task(task)
        spec.build(a.data_dir, 0)  # trains/caches the reference models
        print(f"{task}: data + models ready in {time.time() - t0:.1f}s", flush=True)
        for m in methods:
            if a.only and m not in a.only.split(","):
                continue
            cls = load_method(m, spec)
            points = [dict(p) for p in cls.sweep] if a.sweep and cls.sweep else [{}]
            for hp in points:
                tag = "-".join(f"{k}{v}" for k, v in hp.items()) or "default"
                t = time.time()
                f = execute(RunConfig(task=task, method=m, hparams=hp, data_dir=a.data_dir, overwrite=True,
                                      workdir=os.path.join(a.workdir, mode, m, tag)), log=lambda *x: None)
                mt = f["metrics"]
                rows.append({"task": task, "method": m, "hp": hp, "status": f["status"],
                             "accuracy": mt["accuracy"], "bytes_up": mt["bytes_up_per_example"],
                             "bytes_down": mt["bytes_down_per_example"], "offload": mt["offload_rate"],
                             "lat_lte_ms": 1e3 * f["derived"]["lte"]["latency_mean_s"],
                             "lat_weak_ms": 1e3 * f["derived"]["weak"]["latency_mean_s"],
                             "primary": mt[f["primary_metric"]], "primary_metric": f["primary_metric"],
                             "edge_mflops": mt["edge_flops_per_example"] / 1e6,
                             "setup_gflops": f["costs"].get("setup_cloud_flops", 0) / 1e9,
                             "run_wall_s": f["wall_s"], "total_s": time.time() - t})
                r = rows[-1]
                print(f"| {task} | {m} | {json.dumps(hp)} | {r['accuracy']:.3f} | {r['bytes_up']:.0f} | "
                      f"{r['bytes_down']:.0f} | {r['offload']:.2f} | {r['lat_lte_ms']:.2f} | "
                      f"{r['primary']:.4f} | {r['run_wall_s']:.1f} |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
