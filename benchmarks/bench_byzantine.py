"""Byzantine clients vs robust aggregation (#18): accuracy tables per attack and defence.

    nice -n 10 python benchmarks/bench_byzantine.py --base=mnist1d --attacks=signflip \
        --methods=fedavg,median,trimmed-mean,krum,multi-krum,norm-clip,centered-clip,fltrust \
        --seeds=0,1,2 --out=/tmp/byz

Runs ``train/<base>-byz-f0`` (nobody malicious: the clean reference; for FedAvg
it is bit for bit ``train/<base>``) and ``train/<base>-byz-<attack>-f20`` for
every method and seed, through the ordinary runner (one run dir each under
``--out``; finished runs are reused, so an interrupted benchmark resumes).
Prints markdown tables of ``edge_accuracy`` (mean +- std over seeds):
rows = attacks, columns = defences; the accuracy drop vs f = 0 (same method,
same seed); the share of FedAvg's clean accuracy each cell recovers; for the
backdoor, the attack success rate ``attack_asr_edge``; and each defence's
cloud FLOPs per round.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def run_one(task, method, seed, out, data_dir, max_units=None, report_only=False):
    from lsbench.harness.runner import RunConfig, execute
    wd = os.path.join(out, task.replace("/", "_"), method, str(seed))
    fin = os.path.join(wd, "final.json")
    if os.path.exists(fin):
        with open(fin) as f:
            final = json.load(f)
        if final.get("status") in ("completed", "diverged"):
            return final
    if report_only:
        raise FileNotFoundError(fin)
    t = time.time()
    final = execute(RunConfig(task=task, method=method, seed=seed, workdir=wd, overwrite=True,
                              data_dir=data_dir, max_units=max_units), log=lambda s: None)
    print(f"  {task} {method} seed={seed}: edge_accuracy={final['metrics'].get('edge_accuracy'):.4f} "
          f"({time.time() - t:.0f} s)", file=sys.stderr, flush=True)
    return final


def _cell(vals, fmt="{:.3f}"):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    s = fmt.format(np.mean(vals))
    return s + (f" ± {np.std(vals):.3f}" if len(vals) > 1 else "")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="mnist1d")
    p.add_argument("--attacks", default="signflip")
    p.add_argument("--methods", default="fedavg,median,trimmed-mean,krum,multi-krum,norm-clip,centered-clip,fltrust")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--clean_methods", default=None, help="methods run at f = 0 (default: all)")
    p.add_argument("--out", default="/tmp/lsbench_byz")
    p.add_argument("--data_dir", default=os.environ.get("LSBENCH_DATA_DIR"))
    p.add_argument("--report_only", action="store_true", help="tabulate the finished runs under --out; run nothing")
    p.add_argument("--max_units", type=int, default=None, help="debug cap on rounds (not the default tier)")
    a = p.parse_args(argv)
    attacks = [x for x in a.attacks.split(",") if x]
    methods = a.methods.split(",")
    seeds = [int(s) for s in a.seeds.split(",")]
    clean = f"train/{a.base}-byz-f0"
    tasks = [clean] + [f"train/{a.base}-byz-{x}-f20" for x in attacks]
    res = {}
    for task in tasks:
        for m in methods:
            if task == clean and a.clean_methods is not None and m not in a.clean_methods.split(","):
                continue
            for s in seeds:
                try:
                    res[task, m, s] = run_one(task, m, s, a.out, a.data_dir, a.max_units, a.report_only)
                except FileNotFoundError:
                    continue
                except Exception as e:  # noqa: BLE001 - one failed run must not stop the table
                    print(f"  {task} {m} seed={s}: FAILED {type(e).__name__}: {e}", file=sys.stderr)

    def metric(task, m, s, key="edge_accuracy"):
        f = res.get((task, m, s))
        return None if f is None else f["metrics"].get(key)

    head = "| attack (f=0.2) | " + " | ".join(methods) + " |\n|---|" + "---|" * len(methods)
    lines = [f"edge_accuracy on train/{a.base}-byz-*, mean ± std over seeds {seeds}:", "", head]
    for task in tasks:
        name = "none (f=0)" if task == clean else task.split("-byz-")[1].rsplit("-f", 1)[0]
        lines.append(f"| {name} | " + " | ".join(_cell([metric(task, m, s) for s in seeds]) for m in methods) + " |")
    lines += ["", "accuracy drop vs f = 0 (same method and seed; points):", "", head]
    for task in tasks[1:]:
        name = task.split("-byz-")[1].rsplit("-f", 1)[0]
        cells = []
        for m in methods:
            d = [100 * (metric(clean, m, s) - metric(task, m, s)) for s in seeds
                 if metric(clean, m, s) is not None and metric(task, m, s) is not None]
            cells.append(_cell(d, "{:.1f}"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ref = [metric(clean, "fedavg", s) for s in seeds]
    if all(r is not None for r in ref):
        lines += ["", "share of FedAvg's clean accuracy recovered (mean over seeds, same seed's FedAvg f=0):",
                  "", head]
        for task in tasks[1:]:
            name = task.split("-byz-")[1].rsplit("-f", 1)[0]
            cells = []
            for m in methods:
                r = [metric(task, m, s) / ref[i] for i, s in enumerate(seeds) if metric(task, m, s) is not None]
                cells.append(_cell(r, "{:.2f}").split(" ±")[0])
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    bd = [t for t in tasks if "-byz-backdoor" in t]
    for task in bd:
        lines += ["", f"backdoor ({task}): clean accuracy and attack success rate (attack_asr_edge):", "",
                  "| defence | clean accuracy | ASR |", "|---|---|---|"]
        for m in methods:
            lines.append(f"| {m} | {_cell([metric(task, m, s) for s in seeds])} | "
                         f"{_cell([metric(task, m, s, 'attack_asr_edge') for s in seeds])} |")
    lines += ["", f"cloud FLOPs per round on {tasks[-1]} (final.json costs / units; matmul, and all ops):", "",
              "| | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for key in ("cloud_flops", "cloud_flops_all"):
        fl = []
        for m in methods:
            f = next((res[tasks[-1], m, s] for s in seeds if (tasks[-1], m, s) in res), None)
            fl.append("-" if f is None else f"{f['costs'][key] / max(f['units'], 1):.3g}")
        lines.append(f"| {key} | " + " | ".join(fl) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
