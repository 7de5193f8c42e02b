"""Benchmark of the language inference tasks (not collected by pytest).

  python benchmarks/bench_infer_language.py [--small] [--data_dir DIR] [--only pcfg|arith|arith3|overlap]

Prints (1) per method on infer/pcfg-specdec (KV cache): wall time of the run
(build, setup, compile and generation), losslessness, MAT and per-token
acceptance (both from the harness's turn log), bytes per token and the
speed-up over cloud-only streaming per network profile (latency from metered
FLOPs, bytes and calls only: ``lsbench.metering.profiles``), i.e. the
crossover table; and (2) routing curves on infer/arith-route with APGR,
CPT(50%), CPT(80%) and AIQ per router, and each router's edge FLOPs per query
and setup bytes; (3) three-model cost-quality curves on infer/arith-route3
(normalised remote cost, APGR3, CPT, AIQ: ``tasks._infer_metrics``); (4) the
train/test overlap of the generated text tasks' splits, before (independent
draws) and after (content-disjoint splits).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lsbench.harness.runner import RunConfig, execute  # noqa: E402
from lsbench.metering import profiles  # noqa: E402
from tasks._infer_metrics import routing3_curve, routing_curve  # noqa: E402


def run(task, method, data_dir, hp=None, tag=""):
    wd = f"/tmp/lsbench_bench_lang/{task.replace('/', '_')}_{method}{tag}"
    t0 = time.time()
    f = execute(RunConfig(task=task, method=method, workdir=wd, hparams=hp, data_dir=data_dir,
                          overwrite=True), log=lambda s: None)
    return f, time.time() - t0


def pcfg_table(task, data_dir):
    nets = list(profiles.networks())
    print(f"## {task}: wall s, lossless, MAT, acceptance, bytes/token, speed-up per profile")
    print("| method | wall_s | lossless | mat | accept | B up/tok | B down/tok | "
          + " | ".join(f"x{n}" for n in nets) + " |")
    print("|" + "---|" * (7 + len(nets)))
    rows = [("cloud-only", None), ("edge-only", None)] + [("specdec", {"gamma": g}) for g in (1, 2, 4, 8)] \
        + [("specdec", {"gamma": 4, "temperature": 1.0}), ("specdec-topk", {"gamma": 4})]
    for method, hp in rows:
        f, wall = run(task, method, data_dir, hp, tag="_".join(f"{k}{v}" for k, v in (hp or {}).items()))
        m = f["metrics"]
        print(f"| {method} {hp or ''} | {wall:.1f} | {m.get('lossless', 0):.0f} | {m.get('mat', float('nan')):.2f} | "
              f"{m.get('acceptance_rate', float('nan')):.2f} | {m['bytes_up_per_token']:.2f} | "
              f"{m['bytes_down_per_token']:.2f} | "
              + " | ".join(f"{m.get(f'speedup_{n}', float('nan')):.2f}" for n in nets) + " |", flush=True)


def arith_curves(task, data_dir):
    print(f"\n## {task}: routing curves")
    ref, _ = run(task, "cloud-only", data_dir)
    m = ref["metrics"]
    ae, ac = m["acc_edge_ref"], m["acc_cloud_ref"]
    print(f"edge {ae:.4f}  cloud {ac:.4f}  oracle {m['acc_oracle_ref']:.4f}; cloud-only: "
          f"{m['bytes_up_per_example']:.1f} B up, {m['bytes_down_per_example']:.1f} B down, "
          f"edge FLOPs/query {m['edge_flops_per_example']:.0f}")
    for name in ("edge-only", "router-oracle", "cascade"):
        f, _ = run(task, name, data_dir)
        fm = f["metrics"]
        print(f"{name}: accuracy {fm['accuracy']:.4f} call rate {fm['call_rate']:.4f} gap recovered "
              f"{fm.get('gap_recovered', float('nan')):.3f} B up/query {fm['bytes_up_per_example']:.2f} "
              f"edge FLOPs/query {fm['edge_flops_per_example']:.0f}")
    from baselines import routing
    for method, cls, key in (("router-random", routing.RouterRandom, "p"), ("cascade", routing.Cascade, "tau"),
                             ("router-learned", routing.RouterLearned, "threshold")):
        pts, flops, setup = [], [], None
        for hp in cls.sweep:
            f, _ = run(task, method, data_dir, dict(hp), tag=f"_{hp[key]}")
            pts.append((f["metrics"]["call_rate"], f["metrics"]["accuracy"]))
            flops.append(f["metrics"]["edge_flops_per_example"])
            setup = {k: f["costs"][k] for k in ("setup_bytes_up", "setup_bytes_down", "setup_cloud_flops")}
        c = routing_curve(pts, ae, ac)
        print(f"{method}: APGR {c['apgr']:.3f} CPT50 {c['cpt50']:.3f} CPT80 {c['cpt80']:.3f} "
              f"AIQ {c['aiq']:.3f}  points {[(round(x, 3), round(y, 4)) for x, y in pts]}  "
              f"edge FLOPs/query {[round(x) for x in flops]}  setup {setup}", flush=True)


def loop_run(inst, cls, hp=None, seed=0):
    """One run through the InferLoop on a built instance (sealed as the runner seals
    it; no run directory): {'metrics', 'costs', 'validation'}."""
    from lsbench.harness import sealed
    from lsbench.harness.infer_loop import InferLoop
    from lsbench.harness.runner import merge_hparams
    from lsbench.metering.flops import count_jaxpr
    sealer = sealed.Sealer(sealed.guard_for("infer", inst), meter=count_jaxpr)
    sides = sealed.build_sides(cls, "infer", inst, merge_hparams(cls, hp or {}), sealer)
    loop = InferLoop(inst, sides, seed)
    loop.preflight()
    st = loop.init_state()
    for u in range(loop.num_units):
        st, _, _ = loop.run_unit(st, u)
    return loop.finish(st, [])


def arith3_curves(task, data_dir):
    from lsbench.models.cache import default_data_dir
    from lsbench.registry import load_task
    spec = load_task(task)
    inst = spec.build(data_dir or default_data_dir(), 0)
    print(f"\n## {task}: three-model cost-quality curves (cost = metered remote FLOPs / one cloud pass)")
    from baselines import routing3
    ref = loop_run(inst, routing3.CloudOnly3)
    m = ref["metrics"]
    ae, ac = m["acc_edge_ref"], m["acc_cloud_ref"]
    print(f"edge {ae:.4f}  mid {m['acc_mid_ref']:.4f} (cost {m['cost_mid_ref']:.3f})  cloud {ac:.4f}  "
          f"oracle {m['acc_oracle_ref']:.4f} (cost {m['cost_oracle_ref']:.3f}); cloud-only edge FLOPs "
          f"{ref['costs']['edge_flops']}")
    print("| method | APGR3 | CPT50 | CPT80 | AIQ | (cost, accuracy) per sweep point | best on validation |")
    print("|---|---|---|---|---|---|---|")
    for method, cls in (("router3-random", routing3.Random3), ("cascade3", routing3.Cascade3),
                        ("router3-learned", routing3.Learned3)):
        pts, val = [], []
        for i, hp in enumerate(cls.sweep):
            f = loop_run(inst, cls, dict(hp))
            pts.append((f["metrics"]["cost"], f["metrics"]["accuracy"]))
            val.append((f["validation"]["accuracy"] - f["validation"]["cost"] * (ac - ae), i, f["metrics"]))
        c = routing3_curve(pts, ae, ac)
        _, i, best = max(val)  # a cost-aware pick made on validation only: accuracy - cost x gap
        print(f"| {method} | {c['apgr3']:.3f} | {c['cpt50_3']:.3f} | {c['cpt80_3']:.3f} | {c['aiq3']:.3f} | "
              f"{[(round(x, 3), round(y, 4)) for x, y in pts]} | {dict(cls.sweep[i])}: test acc "
              f"{best['accuracy']:.4f} at cost {best['cost']:.3f} |", flush=True)


def overlap_table():
    from lsbench.data import arith, pcfg, textsplit
    from tasks import infer_arith, infer_pcfg
    print("\n## train/test overlap of the generated text tasks (share of test examples found in train)")
    print("| task | before: independent draws | after: content-disjoint splits |")
    print("|---|---|---|")
    for spec in (infer_arith.TASK, infer_arith.SMALL):
        c = spec.config
        old = arith.splits_v1(c["data_seed"], c["n_train"], c["n_calib"], c["n_test"], c["max_depth"], c["ops"])
        new = arith.splits(c["data_seed"], c["n_train"], c["n_calib"], c["n_test"], c["max_depth"], c["ops"],
                           n_val=c["n_val"])
        d1 = old["test"]["depth"] == 1
        print(f"| {spec.name} (queries) | {textsplit.overlap(old['train']['x'], old['test']['x']):.3f} "
              f"(depth 1: {textsplit.overlap(old['train']['x'], old['test']['x'][d1]):.3f}) | "
              f"{textsplit.overlap(new['train']['x'], new['test']['x']):.3f} |")
    for spec in (infer_pcfg.TASK, infer_pcfg.SMALL):
        c = spec.config
        g, L, Lp = pcfg.make_grammar(c["grammar_seed"]), c["prompt_len"] + c["gen_len"], c["prompt_len"]
        tr, te = pcfg.generate(g, c["n_train"], L, c["data_seed"]), pcfg.generate(g, c["n_test"], L, c["data_seed"] + 1)
        new = pcfg.splits(g, L, Lp, c["data_seed"], {"train": c["n_train"], "calib": c["n_calib"],
                                                      "val": c["n_val"], "test": c["n_test"]})
        print(f"| {spec.name} (prompts; whole sequences) | {textsplit.overlap(tr[:, :Lp], te[:, :Lp]):.3f}; "
              f"{textsplit.overlap(tr, te):.3f} | {textsplit.overlap(new['train'][:, :Lp], new['test'][:, :Lp]):.3f}; "
              f"{textsplit.overlap(new['train'], new['test']):.3f} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--data_dir", default=None)
    ap.add_argument("--only", default="pcfg,arith,arith3,overlap")
    a = ap.parse_args()
    sfx = "-small" if a.small else ""
    if "pcfg" in a.only:
        pcfg_table(f"infer/pcfg-specdec{sfx}", a.data_dir)
    only = a.only.split(",")
    if "arith" in only:
        arith_curves(f"infer/arith-route{sfx}", a.data_dir)
    if "arith3" in only:
        arith3_curves(f"infer/arith-route3{sfx}", a.data_dir)
    if "overlap" in only:
        overlap_table()


if __name__ == "__main__":
    main()
