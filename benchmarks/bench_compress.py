"""compress/* frontier: every compress baseline's sweep on one task, one row per
run (accuracy, validation accuracy, setup bytes down, edge parameter bytes,
edge and cloud FLOPs, status), as a Markdown table.

    LSBENCH_DATA_DIR=/tmp/lsdata nice -n 10 python benchmarks/bench_compress.py \
        --task compress/shapes-small --seeds 0,1,2 [--only ptq,kd] [--hp '{...}' --single]

KD, feature-KD and their scratch reference run on every seed (the KD claim is
over seeds; a summary gives each one's mean and spread); the other methods on
the first seed. Ranked rows are within the edge budget.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import lsbench

SWEEPS = {
    "compress.cloud-model": [{}],
    "ptq": [{"bits": 8}, {"bits": 8, "calibrate": False}, {"bits": 4}, {"bits": 4, "calibrate": False}],
    "prune-magnitude": [{"sparsity": s} for s in (0.5, 0.7, 0.8, 0.9, 0.95)],
    "lowrank": [{"rank": r} for r in (4, 8, 16, 32)],
    "prune-structured": [{"keep": k} for k in (0.25, 0.5, 0.75)],
    "qat": [{"bits": 4}, {"bits": 8}],
    "kd": [{}, {"T": 1.0, "alpha": 1.0, "epochs": 90, "augment": "flip+shift"}],  # defaults, KD.PATIENT
    "feature-kd": [{}],
    "compress.scratch": [{}, {"epochs": 90, "augment": "flip+shift"}],
}
PER_SEED = ("kd", "feature-kd", "compress.scratch")


def run_all(task, seeds, only=None, data_dir=None, log=print, extra=None, single=False):
    rows = []
    for method, points in SWEEPS.items():
        if only and method not in only:
            continue
        if single:  # --single: only the --hp point (on top of the method's defaults)
            points = [{}]
        for hp in points:
            hp = dict(hp, **(extra or {}))
            for seed in (seeds if method in PER_SEED else seeds[:1]):
                t, cpu = time.time(), time.process_time()
                f = lsbench.run(task, method, seed=seed, hparams=hp, data_dir=data_dir)
                c, m = f["costs"], f["metrics"]
                row = {"method": method, "hp": hp, "seed": seed, "status": f["status"],
                       "accuracy": m.get("accuracy"), "val_accuracy": (f.get("validation") or {}).get("accuracy"),
                       "ref_cloud_accuracy": m.get("ref_cloud_accuracy"),
                       "setup_bytes_down": c["setup_bytes_down"],
                       "param_bytes": f["budget_margins"]["param_bytes"]["used"],
                       "edge_flops_per_example": m.get("edge_flops_per_example"),
                       "setup_cloud_flops": c["setup_cloud_flops"], "wall_s": round(time.time() - t, 1),
                       "cpu_s": round(time.process_time() - cpu, 1)}
                rows.append(row)
                log(json.dumps(row))
    return rows


def table(rows) -> str:
    out = ["| method | hp | seed | status | test acc | val acc | bytes down | edge FLOPs/img | cloud setup FLOPs |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = "-" if r["status"] != "completed" else f"{r['accuracy']:.3f}"
        val = "-" if r["val_accuracy"] is None else f"{r['val_accuracy']:.3f}"
        out.append(f"| {r['method']} | {json.dumps(r['hp'])} | {r['seed']} | {r['status']} | {acc} | {val} | "
                   f"{r['setup_bytes_down']:,} | {r['edge_flops_per_example'] or 0:,.0f} | {r['setup_cloud_flops']:.3g} |")
    return "\n".join(out)


def seed_summary(rows) -> str:
    """Per-seed methods: test accuracy per seed, mean, std and range, and the gap to scratch."""
    import numpy as np
    acc = {}
    for r in rows:
        if r["method"] in PER_SEED and r["status"] == "completed":
            acc.setdefault(r["method"], {})[r["seed"]] = r["accuracy"]
    base = acc.get("compress.scratch", {})
    out = ["| method | seeds | test acc per seed | mean | std | range | mean - scratch (pt) |",
           "|---|---|---|---|---|---|---|"]
    for m, d in acc.items():
        a = np.array([d[s] for s in sorted(d)])
        common = sorted(set(d) & set(base))
        gap = (f"{100 * np.mean([d[s] - base[s] for s in common]):+.1f}" if common and m != "compress.scratch"
               else "-")
        out.append(f"| {m} | {','.join(map(str, sorted(d)))} | {', '.join(f'{v:.3f}' for v in a)} | "
                   f"{a.mean():.3f} | {a.std(ddof=1) if len(a) > 1 else 0:.3f} | {a.max() - a.min():.3f} | {gap} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="compress/shapes-small")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default="")
    ap.add_argument("--hp", default="{}", help="JSON merged into every point, e.g. '{\"finetune_epochs\": 0}'")
    ap.add_argument("--single", action="store_true", help="run only the --hp point, not the script's sweep")
    a = ap.parse_args()
    rows = run_all(a.task, [int(s) for s in a.seeds.split(",")], [m for m in a.only.split(",") if m],
                   os.environ.get("LSBENCH_DATA_DIR"), extra=json.loads(a.hp), single=a.single)
    print(table(rows))
    if any(r["method"] in PER_SEED for r in rows):
        print(seed_summary(rows))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
