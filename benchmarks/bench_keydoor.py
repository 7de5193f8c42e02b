"""plan/keydoor: the planner -> executor table and the issue-15 claim "subgoal-replan
reaches >= cloud-only's success - 5 points at <= 20% of its bytes".

Runs each method through the harness's plan loop (``bench_planning.make_loop``,
as ``lsbench run`` does, on one built task), prints success with its 95% Wilson
interval, steps, calls, bytes up/down and their total as a share of cloud-only's,
edge and cloud FLOPs per episode, validation success, and success split by
whether any of the episode's keys was misplaced (hidden task data, read here on
the host only for the table). Then the claim, checked on the measured figures.
With ``--sweep`` each method's sweep points run too, and the point picked on VALIDATION (``pick_on_validation``:
best validation success within 30% of cloud-only's validation calls) is printed
with its test figures (no tuning on test).

    python benchmarks/bench_keydoor.py [--task=plan/keydoor] [--methods=...] [--sweep] [--json=out.json]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_planning import make_loop  # noqa: E402

from lsbench.envs import pick_on_validation  # noqa: E402
from lsbench.harness.runner import merge_hparams  # noqa: E402
from lsbench.models.cache import default_data_dir  # noqa: E402
from lsbench.registry import load_method, load_task  # noqa: E402

METHODS = ("edge-only", "cloud-only", "subgoal", "subgoal-replan", "ask-uncertain")


def run(inst, spec, name, hp=None, seed=0):
    """(final-like out, per-episode success on test, wall seconds)."""
    t = time.time()
    loop = make_loop(inst, spec, load_method(name, spec), hp or {}, seed)
    st = loop.init_state()
    for u in range(loop.num_units):
        st, _, _ = loop.run_unit(st, u)
    out = loop.finish(st, [])
    return out, np.asarray(loop.trajectories(st)["info"]["success"]).any(1), time.time() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="plan/keydoor")
    ap.add_argument("--data_dir", default=None)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    spec = load_task(a.task)
    t = time.time()
    inst = spec.build(a.data_dir or default_data_dir(), 0)
    moved = np.asarray(inst.instances["misplaced"]).any(1)
    print(f"# {spec.name} v{spec.version}: {inst.num_episodes} test episodes ({moved.mean():.3f} with a "
          f"misplaced key), build {time.time() - t:.1f}s\n")
    rows = {}
    for name in a.methods.split(","):
        cls, seen = load_method(name, spec), set()
        for hp in [{}] + ([dict(p) for p in cls.sweep] if a.sweep else []):
            key = json.dumps(merge_hparams(cls, hp), sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            label = name if not hp else f"{name} {json.dumps(hp)}"
            out, succ, wall = run(inst, spec, name, hp)
            rows[label] = {"method": name, "hparams": hp, "metrics": out["metrics"],
                           "validation": out.get("validation"), "costs": out["costs"],
                           "success_misplaced": float(succ[moved].mean()),
                           "success_in_place": float(succ[~moved].mean()), "wall_s": wall}
            print(f"{label}: done in {wall:.0f}s", flush=True)
    cloud = rows.get("cloud-only")
    cb = (cloud["metrics"]["bytes_up_per_episode"] + cloud["metrics"]["bytes_down_per_episode"]) if cloud else None
    print("\n| method | success [95% CI] | success (keys in place / misplaced) | steps | calls/ep | "
          "B up / down per ep | bytes % of cloud-only | edge MFLOP/ep | cloud MFLOP/ep | val success |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        m = r["metrics"]
        b = m["bytes_up_per_episode"] + m["bytes_down_per_episode"]
        pct = f"{100 * b / cb:.1f}%" if cb else "-"
        print(f"| {name} | {m['success']:.3f} [{m['success_lo95']:.3f}, {m['success_hi95']:.3f}] | "
              f"{r['success_in_place']:.3f} / {r['success_misplaced']:.3f} | {m['steps']:.1f} | "
              f"{m['calls_per_episode']:.2f} | {m['bytes_up_per_episode']:.1f} / "
              f"{m['bytes_down_per_episode']:.1f} | {pct} | {m['edge_flops_per_episode'] / 1e6:.2f} | "
              f"{m['cloud_flops_per_episode'] / 1e6:.2f} | "
              f"{r['validation']['success'] if r['validation'] else float('nan'):.3f} |")
    if cloud and "subgoal-replan" in rows:
        m = rows["subgoal-replan"]["metrics"]
        b = m["bytes_up_per_episode"] + m["bytes_down_per_episode"]
        ok = m["success"] >= cloud["metrics"]["success"] - 0.05 and b <= 0.2 * cb
        print(f"\nsubgoal-replan: success {m['success']:.3f} vs cloud-only {cloud['metrics']['success']:.3f} "
              f"(>= -5 points: {m['success'] >= cloud['metrics']['success'] - 0.05}), bytes {b:.1f} vs "
              f"{cb:.1f} per episode = {100 * b / cb:.1f}% (<= 20%: {b <= 0.2 * cb}): claim "
              f"{'holds' if ok else 'FAILS'}")
    if a.sweep and cloud and cloud.get("validation"):
        print("\nPicked on validation (best validation success at <= 30% of cloud-only's validation "
              "calls); test figures:\n")
        print("| method | hparams | test success [95% CI] | calls/ep | bytes % of cloud-only |")
        print("|---|---|---|---|---|")
        for name in dict.fromkeys(r["method"] for r in rows.values()):
            r = pick_on_validation([r for r in rows.values() if r["method"] == name],
                                   cloud["validation"]["calls_per_episode"])
            if r is None:
                print(f"| {name} | (no point within budget) | | | |")
                continue
            m = r["metrics"]
            b = m["bytes_up_per_episode"] + m["bytes_down_per_episode"]
            print(f"| {name} | {json.dumps(r['hparams']) if r['hparams'] else 'default'} | {m['success']:.3f} "
                  f"[{m['success_lo95']:.3f}, {m['success_hi95']:.3f}] | {m['calls_per_episode']:.2f} | "
                  f"{100 * b / cb:.1f}% |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"task": spec.name, "rows": rows}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
