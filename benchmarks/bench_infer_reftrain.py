"""Reference-model training of the vision inference tasks: the old trainer (one
``lax.scan`` per epoch) against the new one (one jitted step per batch), back to
back in the same conditions, and each task tier's reference training cost.

  python benchmarks/bench_infer_reftrain.py [--steps 120] [--model cloud|edge|exit] [--data_dir DIR]

Prints wall and CPU seconds per trainer (the cores may be shared: CPU seconds
and the ratio are the figures to read), then the ``reference_training`` record
of each shapes task (wall_s, cpu_s, load_avg, steps, FLOPs), training the
models that are not cached yet.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from lsbench.models import vision  # noqa: E402


def scan_fit(loss_fn, params, x, y, *, steps, batch, lr, seed):
    """The trainer of task versions <= 2: a jitted lax.scan over an epoch's batches."""
    tx = optax.adam(optax.cosine_decay_schedule(lr, steps))
    opt = tx.init(params)

    @jax.jit
    def epoch(params, opt, xs, ys):
        def step(c, b):
            p, o = c
            loss, g = jax.value_and_grad(loss_fn)(p, *b)
            upd, o = tx.update(g, o, p)
            return (optax.apply_updates(p, upd), o), loss
        (params, opt), losses = jax.lax.scan(step, (params, opt), (xs, ys))
        return params, opt, losses.mean()
    idx = np.random.default_rng(seed).permutation(len(y))[: steps * batch].reshape(steps, batch)
    return epoch(params, opt, jnp.asarray(x[idx]), jnp.asarray(y[idx]))[0]


def timed(fn):
    t, c = time.time(), time.process_time()
    out = jax.block_until_ready(fn())
    return out, time.time() - t, time.process_time() - c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--model", default="cloud")
    ap.add_argument("--data_dir", default=None)
    ap.add_argument("--no_tasks", action="store_true")
    a = ap.parse_args()
    md = {"edge": vision.edge_cnn(), "cloud": vision.cloud_cnn(), "exit": vision.multi_exit()}[a.model]
    B = 64
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (a.steps * B, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, a.steps * B).astype(np.int32)
    loss = lambda p, xb, yb: vision.xent(md.run(p, xb), yb)  # noqa: E731
    p0 = md.init(jax.random.PRNGKey(0))
    print(f"## {md.name}, {a.steps} steps of batch {B} (compile included); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| trainer | wall s | CPU s |")
    print("|---|---|---|")
    _, w0, c0 = timed(lambda: scan_fit(loss, p0, x, y, steps=a.steps, batch=B, lr=3e-3, seed=0))
    print(f"| lax.scan per epoch (v2) | {w0:.1f} | {c0:.1f} |", flush=True)
    _, w1, c1 = timed(lambda: vision.fit(loss, p0, x, y, epochs=1, batch=B, lr=3e-3, seed=0))
    print(f"| jitted step per batch (v3) | {w1:.1f} | {c1:.1f} |")
    print(f"ratio: wall {w0 / w1:.1f}x, CPU {c0 / c1:.1f}x", flush=True)
    if a.no_tasks:
        return
    from lsbench.models.cache import default_data_dir
    from tasks import infer_shapes as T
    dd = a.data_dir or default_data_dir()
    print("\n| task | model | steps | TFLOPs | wall s | CPU s | load avg | edge acc | cloud acc | gap pt |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for spec in (T.SPLIT_SMALL, T.EXIT_SMALL, T.SPLIT, T.EXIT):
        inst = spec.build(dd, 0)
        e, c = inst.test["edge_correct"].mean(), inst.test["cloud_correct"].mean()
        for name, r in inst.reference_training.items():
            print(f"| {spec.name} | {name} | {r.get('steps')} | {r.get('flops', 0) / 1e12:.3f} | "
                  f"{r.get('wall_s')} | {r.get('cpu_s', '-')} | {r.get('load_avg', '-')} | {e:.3f} | {c:.3f} | "
                  f"{100 * (c - e):.1f} |", flush=True)


if __name__ == "__main__":
    main()
