"""Debate vs self-consistency at equal edge compute (issue 15), through the harness's plan loop.

For each task, each K (agents) and R (message rounds): ``debate`` (a team of K ensemble
agents, each its own sealed program; R rounds of quantized beliefs through the harness's
metered peer channel) and ``self-consistency`` (K (R + 1)
samples of one agent, no messages): the same forward passes per step. Each method's
sweep (agree level x temperature) runs on test and validation episodes; the operating
point is picked on VALIDATION (``lsbench.envs.pick_on_validation``: best validation
success within 30% of cloud-only's validation calls; where no point qualifies, the
fewest validation calls) and reported on test with its 95% Wilson interval. Edge FLOPs
are the meter's (per episode, and per step from the loop's edge footprint).

    python benchmarks/bench_debate.py --tasks=plan/slidingtile-small,plan/fogmaze-small \
        --json=/tmp/debate.json     # rows are saved as they finish; a rerun skips them
"""
import argparse
import json
import os
import time

from bench_planning import make_loop

from lsbench.envs import pick_on_validation
from lsbench.harness.runner import merge_hparams
from lsbench.models.cache import default_data_dir
from lsbench.registry import load_method, load_task

METHODS = ("debate", "self-consistency")


def run(inst, spec, name, hp):
    cls = load_method(name, spec)
    t = time.time()
    loop = make_loop(inst, spec, cls, hp)
    st = loop.init_state()
    for u in range(loop.num_units):
        st, _, _ = loop.run_unit(st, u)
    out = loop.finish(st, [])
    fp = loop.edge_footprint(st)
    over = {k: fp[k] > v for k, v in inst.edge_budgets.items() if k in fp}
    return {"method": name, "hparams": hp, "metrics": out["metrics"], "costs": out["costs"],
            "validation": out.get("validation"), "edge_flops_per_step": int(fp["flops_per_example"]),
            "over_budget": [k for k, v in over.items() if v], "wall_s": time.time() - t}


def pick(rows, cloud_val_calls):
    """The rule of lsbench.envs.pick_on_validation; the fewest validation calls where none qualifies."""
    r = pick_on_validation(rows, cloud_val_calls)
    return (r, True) if r is not None else (min(rows, key=lambda r: r["validation"]["calls_per_episode"]), False)


def fmt_ci(m):
    return f"{m['success']:.3f} [{m['success_lo95']:.3f}, {m['success_hi95']:.3f}]"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default="plan/slidingtile-small,plan/fogmaze-small")
    ap.add_argument("--K", default="3,5")
    ap.add_argument("--R", default="0,1,2")
    ap.add_argument("--data_dir", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    saved = json.load(open(a.json)) if a.json and os.path.exists(a.json) else {"rows": []}
    rows = saved["rows"]
    done = {(r["task"], r["method"], json.dumps(r["hparams"], sort_keys=True)) for r in rows}

    def get(inst, spec, name, hp):
        key = (spec.name, name, json.dumps(hp, sort_keys=True))
        if key not in done:
            r = run(inst, spec, name, hp)
            r["task"] = spec.name
            rows.append(r)
            done.add(key)
            m = r["metrics"]
            print(f"  {spec.name} {name} {json.dumps(hp)}: {fmt_ci(m)} calls {m['calls_per_episode']:.2f} "
                  f"peer {m['peer_bytes_per_episode']:.0f} B val {r['validation']['success']:.3f} "
                  f"({r['wall_s']:.0f}s)", flush=True)
            if a.json:
                with open(a.json, "w") as f:
                    json.dump({"rows": rows}, f, indent=1, default=str)
        return next(r for r in rows if (r["task"], r["method"], json.dumps(r["hparams"], sort_keys=True)) == key)

    tables = []
    for task in a.tasks.split(","):
        spec = load_task(task)
        inst = spec.build(a.data_dir or default_data_dir(), 0)
        refs = {n: get(inst, spec, n, {}) for n in ("edge-only", "cloud-only")}
        cv = refs["cloud-only"]["validation"]["calls_per_episode"]
        lines = [f"**{spec.name} v{spec.version}** ({inst.num_episodes} test / {inst.num_val} validation "
                 f"episodes; edge model {inst.hashes.get('edge_model', '?')}, {inst.edge_view.ensemble} members; edge "
                 f"budget {inst.edge_budgets.get('flops_per_example', 0):,} FLOPs/step): "
                 f"edge-only {fmt_ci(refs['edge-only']['metrics'])}, cloud-only "
                 f"{fmt_ci(refs['cloud-only']['metrics'])} at "
                 f"{refs['cloud-only']['metrics']['calls_per_episode']:.2f} calls/ep", "",
                 "| K | R | method | picked (val) | success [95% CI] | calls/ep | peer B/ep | up / down B/ep "
                 "| edge kFLOP/step | edge MFLOP/ep | cloud kFLOP/ep | val success | winner |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for K in (int(k) for k in a.K.split(",")):
            for R in (int(r) for r in a.R.split(",")):
                picked = {}
                for name in METHODS:
                    cls = load_method(name, spec)
                    pts = [dict(p, agents=K, rounds=R) for p in cls.sweep]
                    picked[name] = pick([get(inst, spec, name, hp) for hp in pts], cv)
                (d, dok), (s, sok) = picked["debate"], picked["self-consistency"]
                dm, sm = d["metrics"], s["metrics"]
                if dm["success_lo95"] > sm["success_hi95"]:
                    win = "debate"
                elif sm["success_lo95"] > dm["success_hi95"]:
                    win = "self-consistency"
                else:  # overlapping intervals: the one with fewer calls, else a tie
                    win = ("tie (debate fewer calls)" if dm["calls_per_episode"] < sm["calls_per_episode"]
                           else "tie (self-consistency fewer calls)")
                for name, (r, ok) in picked.items():
                    m = r["metrics"]
                    hp = {k: v for k, v in r["hparams"].items() if k not in ("agents", "rounds")}
                    flag = "" if ok else " (none <= 30% calls: fewest)"
                    over = " (over budget)" if r["over_budget"] else ""
                    lines.append(
                        f"| {K} | {R} | {name} | {json.dumps(hp)}{flag} | {fmt_ci(m)} | "
                        f"{m['calls_per_episode']:.2f} | {m['peer_bytes_per_episode']:.1f} | "
                        f"{m['bytes_up_per_episode']:.1f} / {m['bytes_down_per_episode']:.1f} | "
                        f"{r['edge_flops_per_step'] / 1e3:.1f}{over} | {m['edge_flops_per_episode'] / 1e6:.2f} | "
                        f"{m['cloud_flops_per_episode'] / 1e3:.1f} | {r['validation']['success']:.3f} | "
                        f"{win if name == 'debate' else ''} |")
        tables.append("\n".join(lines))
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
