"""Benchmark: training rounds per second of one method on one task, and the
billed FLOP/s as a share of this machine's fp32 matmul peak (measured in the
same run).

Builds the task and the sealed sides as ``lsbench run`` does, runs ``--warmup``
rounds (compilation), then times ``--rounds`` rounds. Rounds are driven the way
the runner drives them: ``loop.run_units`` (rounds scanned between evaluations)
when the loop has it, else one ``loop.run_unit`` per round. FLOPs are the
billed ones (``edge_flops + cloud_flops``: matmul FLOPs of real examples).
The peak: the best of ``--peak_reps`` jitted N x N fp32 matmuls.

    python benchmarks/bench_round_rate.py [--task=train/mnist1d] [--method=fedavg] [--backend=vmap]
    python benchmarks/bench_round_rate.py --rev=2cef80a     # the per-round loop before #19
    python benchmarks/bench_round_rate.py --bucket=2        # clients in buckets of 2 by step count
"""
import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np


def matmul_peak(n: int = 1024, reps: int = 20) -> float:
    """Measured fp32 matmul FLOP/s (best of ``reps`` calls of a jitted n x n @ n x n)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(f(a, a))
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a, a))
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def _loop_class(rev):
    """TrainLoop of the working tree, or of git revision ``rev`` (side-by-side figures)."""
    if not rev:
        from lsbench.harness.train_loop import TrainLoop
        return TrainLoop
    import importlib.util
    import subprocess
    import tempfile
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = subprocess.run(["git", "-C", root, "show", f"{rev}:lsbench/harness/train_loop.py"],
                         capture_output=True, text=True, check=True).stdout
    path = os.path.join(tempfile.mkdtemp(prefix="lsbench-ref-"), "train_loop_ref.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("train_loop_ref", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.TrainLoop


def make_loop(task, method, backend, data_dir, seed=0, rev=None, bucket=None):
    from lsbench.harness import sealed
    from lsbench.harness.runner import merge_hparams
    from lsbench.metering.flops import count_jaxpr
    from lsbench.registry import load_method, load_task
    spec = load_task(task)
    inst = spec.build(data_dir, seed)
    cls = load_method(method, spec)
    sides = sealed.build_sides(cls, "train", inst, merge_hparams(cls, None),
                               sealed.Sealer(sealed.guard_for("train", inst), meter=count_jaxpr))
    kw = {} if bucket is None else {"bucket": bucket}  # clients per bucket (TrainLoop.bucket)
    return _loop_class(rev)(inst, sides, seed, backend=backend, **kw)


def drive(loop, state, start, end):
    """Rounds [start, end) as the runner drives them; returns the state."""
    if hasattr(loop, "run_units"):
        state, rows, ok = loop.run_units(state, start, end)[:3]
    else:
        for r in range(start, end):
            state, _, _ = loop.run_unit(state, r)
    jax.block_until_ready(jax.tree_util.tree_leaves(state["cloud"]))
    return state


def billed(state):
    c = state["costs"]
    return int(c["edge_flops"]) + int(c["cloud_flops"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="train/mnist1d")
    ap.add_argument("--method", default="fedavg")
    ap.add_argument("--backend", default="vmap")
    ap.add_argument("--data_dir", default=os.environ.get("LSBENCH_DATA_DIR", "~/.cache/lsbench"))
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3, help="timed blocks of --rounds; the best is kept")
    ap.add_argument("--rev", default=None, help="time the train loop of this git revision instead")
    ap.add_argument("--peak_reps", type=int, default=20)
    ap.add_argument("--bucket", type=int, default=None, help="clients per bucket, sorted by step count (0: off)")
    a = ap.parse_args()
    loop = make_loop(a.task, a.method, a.backend, os.path.expanduser(a.data_dir), rev=a.rev, bucket=a.bucket)
    state = loop.init_state()
    t0 = time.perf_counter()
    state = drive(loop, state, 0, a.warmup)
    warm_s = time.perf_counter() - t0
    best, best_cpu, per_round_flops, r = float("inf"), float("inf"), 0, a.warmup
    for _ in range(a.repeats):
        f0 = billed(state)
        t0, c0 = time.perf_counter(), time.process_time()
        state = drive(loop, state, r, r + a.rounds)
        dt = time.perf_counter() - t0
        best, best_cpu = min(best, dt), min(best_cpu, time.process_time() - c0)
        per_round_flops = (billed(state) - f0) / a.rounds
        r += a.rounds
    peak = matmul_peak(reps=a.peak_reps)
    ms = 1000 * best / a.rounds
    out = {"rev": a.rev or "working tree", "bucket": getattr(loop, "bucket", None), "task": a.task, "method": a.method, "backend": a.backend, "cpus": os.cpu_count(),
           "platform": jax.default_backend(), "warmup_rounds": a.warmup, "warmup_s": round(warm_s, 2),
           "timed_rounds": a.rounds, "ms_per_round": round(ms, 3),
           "billed_flops_per_round": int(per_round_flops),
           "matmul_peak_gflops": round(peak / 1e9, 2),
           "achieved_gflops": round(per_round_flops / (ms / 1000) / 1e9, 3),
           "pct_of_peak": round(100 * per_round_flops / (ms / 1000) / peak, 2),
           # CPU time of this process (all threads), robust to other processes on the cores
           "cpu_ms_per_round": round(1000 * best_cpu / a.rounds, 3)}
    print(json.dumps(out))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
