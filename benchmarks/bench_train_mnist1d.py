"""Benchmark + external sanity checks for the training track (CPU is fine).

Runs, each through the real harness (`lsbench.harness.runner.execute`):
  1. full default ``train/mnist1d`` FedAvg (wall time; goal < 3 min on 2 CPU cores);
  2. ``local`` and ``centralized`` on ``train/mnist1d`` (FedAvg must land between);
  3. centralized MLP / CNN on MNIST-1D's published 4k/1k setup (README: 68% / 94%);
  4. FedAvg vs FedProx (mu=1) on ``train/synthetic-stragglers`` (FedProx paper).
Prints one JSON object; ``--only=speed`` runs just (1).

    python benchmarks/bench_train_mnist1d.py --data_dir=/tmp/lsbench-data [--only=speed]
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lsbench.harness.runner import RunConfig, execute  # noqa: E402


def run(task, method, data_dir, hparams=None):
    with tempfile.TemporaryDirectory() as wd:
        t0 = time.time()
        final = execute(RunConfig(task=task, method=method, workdir=wd, data_dir=data_dir, hparams=hparams),
                        log=lambda *a: None)
        wall = time.time() - t0
    m, c = final["metrics"], final["costs"]
    out = {"wall_s": round(wall, 1), "edge_accuracy": round(m["edge_accuracy"], 4),
           "bytes_up": c["bytes_up"], "bytes_down": c["bytes_down"], "edge_flops": c["edge_flops"]}
    for k in ("cloud_accuracy", "edge_personal_accuracy"):
        if k in m:
            out[k] = round(m[k], 4)
    print(task, method, out, file=sys.stderr, flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data_dir", default=os.environ.get("LSBENCH_DATA_DIR", "~/.cache/lsbench"))
    ap.add_argument("--only", default="all", choices=["all", "speed"])
    a = ap.parse_args()
    from tasks.train_mnist1d import TASK  # builds the data once, outside the timed runs
    t0 = time.time()
    TASK.build(a.data_dir, 0)
    res = {"data_build_s": round(time.time() - t0, 1), "cpus": os.cpu_count()}
    res["fedavg"] = run("train/mnist1d", "fedavg", a.data_dir)
    if a.only == "all":
        res["local"] = run("train/mnist1d", "local", a.data_dir)
        res["centralized_edge"] = run("train/mnist1d", "centralized", a.data_dir, {"train_cloud": False})
        res["sanity_centralized_4k"] = run("tasks.train_mnist1d:SANITY", "centralized", a.data_dir)
        hp = {"lr": 0.01, "momentum": 0.0}
        res["stragglers_fedavg"] = run("train/synthetic-stragglers", "fedavg", a.data_dir, hp)
        res["stragglers_fedprox_mu1"] = run("train/synthetic-stragglers", "fedprox", a.data_dir, dict(hp, mu=1.0))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
