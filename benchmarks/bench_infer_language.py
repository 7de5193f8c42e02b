"""Benchmark of the language inference tasks (not collected by pytest).

  python benchmarks/bench_infer_language.py [--small] [--data_dir DIR] [--only pcfg|arith]

Prints (1) per method on infer/pcfg-specdec (KV cache): wall time of the run
(build, setup, compile and generation), losslessness, MAT and per-token
acceptance (both from the harness's turn log), bytes per token and the
speed-up over cloud-only streaming per network profile (latency from metered
FLOPs, bytes and calls only: ``lsbench.metering.profiles``), i.e. the
crossover table; and (2) routing curves on infer/arith-route with APGR,
CPT(50%), CPT(80%) and AIQ per router, and each router's edge FLOPs per query
and setup bytes.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lsbench.harness.runner import RunConfig, execute  # noqa: E402
from lsbench.metering import profiles  # noqa: E402
from tasks._infer_metrics import routing_curve  # noqa: E402


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--data_dir", default=None)
    ap.add_argument("--only", default="pcfg,arith")
    a = ap.parse_args()
    sfx = "-small" if a.small else ""
    if "pcfg" in a.only:
        pcfg_table(f"infer/pcfg-specdec{sfx}", a.data_dir)
    if "arith" in a.only:
        arith_curves(f"infer/arith-route{sfx}", a.data_dir)


if __name__ == "__main__":
    main()
