"""Benchmark of the vision inference tasks: every shapes baseline (and its
sweep with --sweep) on infer/shapes-split and infer/shapes-exit; prints a
markdown table of accuracy, bytes per image, offload rate, lte latency, the
setup package each method downloads once (its edge part: the cloud model's
first stages, an exit head, an encoder), edge MFLOPs per image and the wall
time of each run (models cached first).

    python benchmarks/bench_infer_vision.py --data_dir=/tmp/lsb [--small] [--sweep] [--mode=split|exit]

Latency is the harness's modelled mean at ``lte`` (``lsbench.metering.profiles``:
per-call overheads, FLOPs at the device rates, a round trip and bytes at the
link rates). Measured results are in the README; the numbers printed are for
this checkout.
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
    print("| task | method | hparams | acc | B up | B down | offload | lte ms | primary | setup kB down | "
          "edge MFLOPs | wall s |")
    print("|" + "---|" * 12)
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
                             "setup_kb_down": f["costs"].get("setup_bytes_down", 0) / 1e3,
                             "run_wall_s": f["wall_s"], "total_s": time.time() - t})
                r = rows[-1]
                print(f"| {task} | {m} | {json.dumps(hp)} | {r['accuracy']:.3f} | {r['bytes_up']:.0f} | "
                      f"{r['bytes_down']:.0f} | {r['offload']:.2f} | {r['lat_lte_ms']:.2f} | "
                      f"{r['primary']:.4f} | {r['setup_kb_down']:.1f} | {r['edge_mflops']:.2f} | "
                      f"{r['run_wall_s']:.1f} |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
