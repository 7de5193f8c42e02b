"""Throughput at the scale the FL field benchmarks, after pfl-research's
cross-device CIFAR-10 setup: 1,000 clients, 50 sampled per round, 50 examples
each, batch size 10 (5 local steps), 1 local epoch, FedAvg on a small CNN.

The data are synthetic, of CIFAR-10's shapes (32x32x3 float32, 10 classes): the
figure is speed, not accuracy. Rounds run through the harness's train loop
(sealed sides, channel, meter) exactly as ``lsbench run`` drives them. Reports
client updates per second and the billed edge FLOP/s (matmul and convolution
FLOPs of the client updates, per real example) as a share of this machine's
fp32 matmul peak, measured in the same run.

    python benchmarks/bench_throughput.py [--clients=1000] [--rounds=5] [--backend=vmap] [--conv=taps|xla|im2col]

``--conv``: how the CNN computes its convolutions (same parameters, outputs equal
to float tolerance): ``taps`` (the zoo's default, ``train_zoo.tap_conv``: one
matmul per kernel tap over real inputs only; billed exactly as the convolution),
``xla`` (``lax.conv``, which XLA:CPU runs slowly inside loop bodies,
jax-ml/jax#12868, ``bench_conv_loops.py``) or ``im2col`` (one matmul over padded
patches: its matmuls multiply the padding zeros, which the meter bills).
"""
import argparse
import dataclasses
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_round_rate import drive, matmul_peak  # noqa: E402


def conv_im2col(x, w, b, stride):
    """A 'SAME'-padded (1 pixel) k x k convolution as strided slices of the padded
    input, concatenated in (i, j, c_in) order, times the kernel as [k*k*c_in, c_out]."""
    import jax.numpy as jnp
    k = w.shape[0]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    ho, wo = (x.shape[1] + 2 - k) // stride + 1, (x.shape[2] + 2 - k) // stride + 1
    cols = [xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
            for i in range(k) for j in range(k)]
    return jnp.concatenate(cols, -1) @ w.reshape(-1, w.shape[-1]) + b


def apply_im2col(p, x):
    """``train_zoo.cnn(10, (32, 32, 3), channels=(32, 64), kernels=(3, 3), strides=(2, 2),
    dense=128)``'s apply, convolutions as im2col matmuls."""
    body = p["body"]
    for name in ("Conv_0", "Conv_1"):
        x = jax.nn.relu(conv_im2col(x, body[name]["kernel"], body[name]["bias"], 2))
    x = jax.nn.relu(x.reshape(x.shape[0], -1) @ body["Dense_0"]["kernel"] + body["Dense_0"]["bias"])
    return x @ p["head"]["Dense_0"]["kernel"] + p["head"]["Dense_0"]["bias"]


def spec(clients, per_round, n, batch, conv="xla"):
    from lsbench.models import train_zoo
    from lsbench.task import TaskSpec, TrainInstance
    from tasks._train_common import make_views

    def build(spec, data_dir, seed):
        rng = np.random.default_rng(seed)
        shape, k = (32, 32, 3), 10
        x = rng.standard_normal((clients, n) + shape, dtype=np.float32)
        y = rng.integers(0, k, (clients, n)).astype(np.int32)
        gx = rng.standard_normal((100,) + shape, dtype=np.float32)
        gy = rng.integers(0, k, 100).astype(np.int32)
        impl = conv if conv in ("xla", "taps") else "xla"
        cnn = train_zoo.cnn(k, shape, channels=(32, 64), kernels=(3, 3), strides=(2, 2), dense=128, impl=impl)
        if conv == "im2col":
            cnn = dataclasses.replace(cnn, name=cnn.name + "-im2col", apply=apply_im2col, stages=(), run=None)
        edge, cloud = make_views(spec, num_classes=k, input_shape=shape, models={"edge": cnn, "cloud": cnn},
                                 tiers={"full": 1.0}, num_clients=clients, max_client_n=n, dataset="synthetic",
                                 partition_kind="iid")
        return TrainInstance(
            edge_views=edge, cloud_view=cloud, train_x=x, train_y=y, train_n=np.full(clients, n),
            test_x=x[:, :1], test_y=y[:, :1], test_n=np.ones(clients, np.int32), global_test_x=gx,
            global_test_y=gy, client_tier=np.zeros(clients, np.int32), tiers=("full",), rounds=1000,
            clients_per_round=per_round, local_epochs=1.0, batch_size=batch, max_local_steps=n // batch,
            eval_every=1000)
    cfg = dict(clients_per_round=per_round, rounds=1000, local_epochs=1.0, batch_size=batch,
               max_local_steps=n // batch)
    return TaskSpec(name="bench/cifar10-shapes", version="1", track="train", description="synthetic",
                    primary_metric="edge_accuracy", config=cfg, builder=build)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--per_round", type=int, default=50)
    ap.add_argument("--examples", type=int, default=50)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--method", default="fedavg")
    ap.add_argument("--backend", default="vmap")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--conv", default="taps", choices=["taps", "xla", "im2col"],
                    help="taps: the zoo's tap_conv (its default); xla: lax.conv; im2col: padded patches")
    a = ap.parse_args()
    from lsbench.harness import sealed
    from lsbench.harness.runner import merge_hparams
    from lsbench.harness.train_loop import TrainLoop
    from lsbench.metering.flops import count_jaxpr
    from lsbench.registry import load_method
    s = spec(a.clients, a.per_round, a.examples, a.batch, a.conv)
    inst = s.build("", 0)
    cls = load_method(a.method, s)
    sides = sealed.build_sides(cls, "train", inst, merge_hparams(cls, None),
                               sealed.Sealer(sealed.guard_for("train", inst), meter=count_jaxpr))
    loop = TrainLoop(inst, sides, 0, backend=a.backend)
    loop.chunk = a.rounds  # one compiled scan per timed block
    state = loop.init_state()
    t0 = time.perf_counter()
    state = drive(loop, state, 0, a.warmup)
    warm = time.perf_counter() - t0
    f0 = int(state["costs"]["edge_flops"])
    t0, c0 = time.perf_counter(), time.process_time()
    state = drive(loop, state, a.warmup, a.warmup + a.rounds)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    flops = int(state["costs"]["edge_flops"]) - f0
    peak = matmul_peak()
    updates = a.rounds * sum(loop.k.values())
    print(json.dumps({
        "setup": f"{a.clients} clients, {a.per_round}/round, {a.examples} examples, batch {a.batch}, 1 epoch",
        "model": inst.cloud_view.models["edge"].name, "conv": a.conv, "method": a.method, "backend": a.backend,
        "cpus": os.cpu_count(), "platform": jax.default_backend(), "warmup_s": round(warm, 2),
        "timed_rounds": a.rounds, "s_per_round": round(dt / a.rounds, 4),
        "client_updates_per_s": round(updates / dt, 2),
        "edge_gflop_per_round": round(flops / a.rounds / 1e9, 3),
        "achieved_gflops": round(flops / dt / 1e9, 2), "matmul_peak_gflops": round(peak / 1e9, 2),
        "pct_of_peak": round(100 * flops / dt / peak, 1),
        # CPU time of this process (all threads): robust to other processes sharing the cores
        "cpu_s_per_round": round(cpu / a.rounds, 4), "client_updates_per_cpu_s": round(updates / cpu, 2),
        "gflop_per_cpu_s": round(flops / cpu / 1e9, 2)}))


if __name__ == "__main__":
    main()
