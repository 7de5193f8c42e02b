"""Benchmark of the language inference tasks (not collected by pytest).

  python tests/bench_infer_language.py [--small] [--data_dir DIR]

Prints (1) wall time of a 64-token generation for 256 prompts per method on
infer/pcfg-specdec (KV cache; issue target: < 60 s per method on 2 CPU cores)
with MAT, acceptance and the modelled speed-up per network profile (the
crossover table), and (2) routing curves on infer/arith-route with APGR,
CPT(50%), CPT(80%) and AIQ per router.
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--data_dir", default=None)
    a = ap.parse_args()
    sfx = "-small" if a.small else ""
    task = f"infer/pcfg-specdec{sfx}"
    nets = list(profiles.networks())
    print(f"## {task}: wall s (incl. build and compile), MAT, acceptance, speed-up per profile")
    print("| method | wall_s | lossless | mat | accept | " + " | ".join(f"x{n}" for n in nets) + " |")
    rows = [("cloud-only", None), ("edge-only", None)] + [("specdec", {"gamma": g}) for g in (1, 2, 4, 8)] \
        + [("specdec", {"gamma": 4, "temperature": 1.0}), ("specdec-topk", {"gamma": 4})]
    for method, hp in rows:
        f, wall = run(task, method, a.data_dir, hp, tag="_".join(f"{k}{v}" for k, v in (hp or {}).items()))
        m = f["metrics"]
        print(f"| {method} {hp or ''} | {wall:.1f} | {m.get('lossless', 0):.0f} | {m.get('mat', 1):.2f} | "
              f"{m.get('acceptance_rate', float('nan')):.2f} | "
              + " | ".join(f"{m[f'speedup_{n}']:.2f}" for n in nets) + " |", flush=True)
    task = f"infer/arith-route{sfx}"
    print(f"\n## {task}: routing curves")
    ref, _ = run(task, "cloud-only", a.data_dir)
    ae, ac = ref["metrics"]["acc_edge_ref"], ref["metrics"]["acc_cloud_ref"]
    print(f"edge {ae:.3f}  cloud {ac:.3f}  oracle {ref['metrics']['acc_oracle_ref']:.3f}")
    from baselines import routing
    for method, cls, key in (("router-random", routing.RouterRandom, "p"), ("cascade", routing.Cascade, "tau"),
                             ("router-learned", routing.RouterLearned, "threshold")):
        pts = []
        for hp in cls.sweep:
            f, _ = run(task, method, a.data_dir, dict(hp), tag=f"_{hp[key]}")
            pts.append((f["metrics"]["call_rate"], f["metrics"]["accuracy"]))
        c = routing_curve(pts, ae, ac)
        print(f"{method}: APGR {c['apgr']:.3f} CPT50 {c['cpt50']:.3f} CPT80 {c['cpt80']:.3f} "
              f"AIQ {c['aiq']:.3f}  points {[(round(x, 2), round(y, 3)) for x, y in pts]}", flush=True)


if __name__ == "__main__":
    main()
