"""Benchmark + results table of the planning track: every baseline (and its
sweep points) on one task, through the harness's plan loop.

Prints a markdown table (success with 95% Wilson interval, steps, SPL,
calls/episode, call rate, bytes up/down/peer per episode, edge and cloud
FLOPs and cloud nodes per episode, modelled LTE latency per episode, success
on the validation episodes, wall seconds of the evaluation (test + validation
episodes) incl. compile), the setup bytes up/down, the budget summary (success
and gap recovered at 5% / 20% of cloud-only's calls over all sweep points; the
references are the edge-only and cloud-only rows) and, per method, the sweep
point picked on VALIDATION within 30% of cloud-only's validation calls, with
its test figures (no tuning on test).

The task is built once; each run builds the method per side (sealed, as
``lsbench run`` does) and drives the harness's plan loop.

    python benchmarks/bench_planning.py --task=plan/fogmaze [--data_dir=...] [--json=out.json]
"""
import argparse
import json
import time

from lsbench.envs import budget_summary, pick_on_validation
from lsbench.harness import preflight, sealed
from lsbench.harness.plan_loop import PlanLoop
from lsbench.harness.runner import merge_hparams
from lsbench.metering.flops import count_jaxpr
from lsbench.models.cache import default_data_dir
from lsbench.registry import load_method, load_task

METHODS = ("edge-only", "cloud-only", "plan-once", "periodic", "ask-uncertain", "swiftsage",
           "router-learned", "ensemble")


def make_loop(inst, spec, cls, hp, seed=0):
    """The plan loop over ``cls`` built per side on a built instance (as lsbench run does)."""
    sealer = sealed.Sealer(sealed.guard_for("plan", inst), meter=count_jaxpr)
    sides = sealed.build_sides(cls, "plan", inst, merge_hparams(cls, hp), sealer)
    loop = PlanLoop(inst, sides, seed)
    preflight.check(loop, spec, cls)
    return loop


def run(inst, spec, name, hp, seed=0, full=False):
    cls = load_method(name, spec)
    t = time.time()
    loop = make_loop(inst, spec, cls, hp, seed)
    st = loop.init_state()
    for u in range(loop.num_units):
        st, _, _ = loop.run_unit(st, u)
    out = loop.finish(st, [])
    if full:
        return out, time.time() - t
    return out["metrics"], out["derived"], out["costs"], time.time() - t




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="plan/fogmaze")
    ap.add_argument("--data_dir", default=None)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--no_sweep", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    spec = load_task(a.task)
    t = time.time()
    inst = spec.build(a.data_dir or default_data_dir(), 0)
    print(f"# {spec.name} v{spec.version}: {inst.num_episodes} episodes, cloud = {inst.cloud_kind}; "
          f"build {time.time() - t:.1f}s\n")
    hdr = ("| method | hparams | success [95% CI] | steps | SPL | calls/ep | call rate | up B/ep | "
           "down B/ep | peer B/ep | edge MFLOP/ep | cloud MFLOP/ep | cloud nodes/ep | LTE s/ep | "
           "val success | setup B up/down | wall s |")
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    rows = []
    for name in a.methods.split(","):
        cls = load_method(name, spec)
        points = [{}] + ([] if a.no_sweep else [dict(p) for p in cls.sweep])
        seen = set()
        for hp in points:
            full = merge_hparams(cls, hp)
            key = json.dumps(full, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            out, wall = run(inst, spec, name, hp, full=True)
            m, d, c, v = out["metrics"], out["derived"], out["costs"], out.get("validation")
            rows.append({"method": name, "hparams": hp, "metrics": m, "derived": d, "costs": c,
                         "validation": v, "wall_s": wall})
            print(f"| {name} | {json.dumps(hp) if hp else 'default'} | {m['success']:.3f} "
                  f"[{m['success_lo95']:.3f}, {m['success_hi95']:.3f}] | {m['steps']:.1f} | {m['spl']:.3f} | "
                  f"{m['calls_per_episode']:.2f} | {m['call_rate']:.3f} | {m['bytes_up_per_episode']:.1f} | "
                  f"{m['bytes_down_per_episode']:.1f} | {m['peer_bytes_per_episode']:.1f} | "
                  f"{m['edge_flops_per_episode'] / 1e6:.2f} | {m['cloud_flops_per_episode'] / 1e6:.2f} | "
                  f"{m['cloud_nodes_per_episode']:.0f} | "
                  f"{d.get('lte', {}).get('latency_mean_s', float('nan')):.3f} | "
                  f"{v['success'] if v else float('nan'):.3f} | "
                  f"{c['setup_bytes_up']} / {c['setup_bytes_down']} | {wall:.1f} |", flush=True)
    first = {}
    for r in rows:
        first.setdefault(r["method"], r)
    cloud, edge = first.get("cloud-only"), first.get("edge-only")
    ref = None
    if cloud is not None and edge is not None:
        ref = {"edge-only": edge["metrics"]["success"], "cloud-only": cloud["metrics"]["success"]}
        print("\nBudget summary (best sweep point within the budget; edge-only is the 0-call point):\n")
        print("| method | success @5% calls | gap @5% | success @20% calls | gap @20% |")
        print("|---|---|---|---|---|")
        for name in dict.fromkeys(r["method"] for r in rows):
            pts = [(r["metrics"]["calls_per_episode"], r["metrics"]["success"]) for r in rows
                   if r["method"] == name]
            s = budget_summary(pts, ref["edge-only"], ref["cloud-only"],
                               cloud["metrics"]["calls_per_episode"])
            print(f"| {name} | {s['success_at_5pct']:.3f} | {s['gap_recovered_at_5pct']:.2f} | "
                  f"{s['success_at_20pct']:.3f} | {s['gap_recovered_at_20pct']:.2f} |")
        if cloud.get("validation"):
            cv = cloud["validation"]["calls_per_episode"]
            print("\nPicked on validation (best validation success at <= 30% of cloud-only's validation "
                  "calls); test figures:\n")
            print("| method | hparams | test success [95% CI] | test gap recovered | test calls/ep | "
                  "% of cloud-only calls |")
            print("|---|---|---|---|---|---|")
            for name in dict.fromkeys(r["method"] for r in rows):
                r = pick_on_validation([r for r in rows if r["method"] == name], cv)
                if r is None:
                    print(f"| {name} | (no point within budget) | | | | |")
                    continue
                m = r["metrics"]
                print(f"| {name} | {json.dumps(r['hparams']) if r['hparams'] else 'default'} | "
                      f"{m['success']:.3f} [{m['success_lo95']:.3f}, {m['success_hi95']:.3f}] | "
                      f"{m.get('gap_recovered', float('nan')):.2f} | {m['calls_per_episode']:.2f} | "
                      f"{100 * m['calls_per_episode'] / cloud['metrics']['calls_per_episode']:.1f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"task": spec.name, "rows": rows, "ref_success": ref}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
