"""adapt/* methods: personal and global accuracy and bytes per round, as a
Markdown table.

    LSBENCH_DATA_DIR=/tmp/lsdata nice -n 10 python benchmarks/bench_adapt.py \
        --task adapt/mnist1d-small [--only fedlora,fedavg-full] [--seeds 0]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import lsbench

METHODS = {"fedavg-full": {}, "local-full": {}, "fedlora": {"rank": 4}, "local-lora": {"rank": 4},
           "fedadapter": {}, "fedprompt": {}}


def run_all(task, seeds, only=None, data_dir=None, log=print, extra=None):
    rows = []
    for method, hp in METHODS.items():
        if only and method not in only:
            continue
        hp = dict(hp, **(extra or {}).get(method, {}))
        for seed in seeds:
            t = time.time()
            f = lsbench.run(task, method, seed=seed, hparams=hp, data_dir=data_dir)
            c, m, u = f["costs"], f["metrics"], max(f["units"], 1)
            row = {"method": method, "hp": hp, "seed": seed, "status": f["status"],
                   "personal": m.get("edge_personal_accuracy"), "global": m.get("edge_accuracy"),
                   "val_global": (f.get("validation") or {}).get("edge_accuracy"),
                   "bytes_up_per_round": c["bytes_up"] / u, "bytes_down_per_round": c["bytes_down"] / u,
                   "setup_bytes_down": c["setup_bytes_down"], "edge_flops": c["edge_flops"],
                   "wall_s": round(time.time() - t, 1)}
            rows.append(row)
            log(json.dumps(row))
    return rows


def table(rows) -> str:
    ref = {r["seed"]: r["bytes_up_per_round"] + r["bytes_down_per_round"]
           for r in rows if r["method"] == "fedavg-full"}
    out = ["| method | hp | seed | personal acc | global acc | bytes/round (up+down) | vs fedavg-full | edge FLOPs |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r["bytes_up_per_round"] + r["bytes_down_per_round"]
        rel = f"{100 * b / ref[r['seed']]:.2f}%" if r["seed"] in ref else "-"
        out.append(f"| {r['method']} | {json.dumps(r['hp'])} | {r['seed']} | {r['personal']:.3f} | "
                   f"{r['global']:.3f} | {b:,.0f} | {rel} | {r['edge_flops']:.3g} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="adapt/mnist1d-small")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    rows = run_all(a.task, [int(s) for s in a.seeds.split(",")], [m for m in a.only.split(",") if m],
                   os.environ.get("LSBENCH_DATA_DIR"))
    print(table(rows))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
