"""Benchmark: vmap vs loop client backends on one training round.

10 clients x 20 local steps (the spine issue's setting). Prints the median
wall time per round of each backend after compilation, and the ratio. The
method is built per side (sealed), as ``lsbench run`` does.

    python benchmarks/bench_client_backends.py [--task=train/digits] [--method=fedavg]
"""
import argparse
import dataclasses
import statistics
import time

import jax

from lsbench.harness import sealed
from lsbench.harness.runner import merge_hparams
from lsbench.harness.train_loop import TrainLoop
from lsbench.metering.flops import count_jaxpr
from lsbench.models.cache import default_data_dir
from lsbench.registry import load_method, load_task


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="train/digits")
    ap.add_argument("--method", default="fedavg")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    spec = load_task(a.task)
    inst = spec.build(default_data_dir(), 0)
    # every client does exactly `steps` steps
    sizes = dict(clients_per_round=a.clients, max_local_steps=a.steps, local_epochs=1e6)
    inst = dataclasses.replace(
        inst, **sizes, cloud_view=dataclasses.replace(inst.cloud_view, **sizes),
        edge_views={t: dataclasses.replace(v, **sizes) for t, v in inst.edge_views.items()})
    cls = load_method(a.method, spec)
    times = {}
    for backend in ("vmap", "loop"):
        sides = sealed.build_sides(cls, "train", inst, merge_hparams(cls, None),
                                   sealed.Sealer(sealed.guard_for("train", inst), meter=count_jaxpr))
        loop = TrainLoop(inst, sides, 0, backend=backend)
        state = loop.init_state()
        state, _, _ = loop.run_unit(state, 0)  # compile
        ts = []
        for r in range(1, a.repeats + 1):
            t0 = time.perf_counter()
            state, _, _ = loop.run_unit(state, r)
            jax.block_until_ready(state["cloud"])
            ts.append(time.perf_counter() - t0)
        times[backend] = statistics.median(ts)
        print(f"{backend:5s}: {1000 * times[backend]:8.1f} ms/round "
              f"({sum(loop.k.values())} clients x {int(loop.steps.max())} steps)")
    print(f"vmap speed-up over loop: {times['loop'] / times['vmap']:.1f}x")


if __name__ == "__main__":
    main()
