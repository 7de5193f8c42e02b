"""Why convolutional clients are slow inside compiled rounds on CPU: CPU seconds
for 250 local steps (50 clients x 5 steps, batch 10) of bench_throughput.py's
CNN, run (a) as top-level jitted calls, (b) inside lax.map + while_loop, (c)
lax.map + scan, (d) vmap + while_loop, (e) a top-level vmapped step (grouped
convolutions). XLA:CPU runs convolutions much slower inside loop bodies
(jax-ml/jax#12868). CPU time, so other processes on the cores matter less.

    python benchmarks/bench_conv_loops.py
"""
import json
import time

import jax
import jax.numpy as jnp

from lsbench.models import train_zoo


def main():
    m = train_zoo.cnn(10, (32, 32, 3), channels=(32, 64), kernels=(3, 3), strides=(2, 2), dense=128)
    p = m.init(jax.random.PRNGKey(0))

    def loss(p, x, y):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(m.apply(p, x)), y[:, None], 1))

    def step(p, x, y):
        return jax.tree_util.tree_map(lambda a, b: a - 0.01 * b, p, jax.grad(loss)(p, x, y))

    X, Y = jnp.ones((50, 50, 32, 32, 3)), jnp.zeros((50, 50), jnp.int32)

    def batch(c, s):
        idx = s * 10 + jnp.arange(10)
        return X[c, idx], Y[c, idx]

    def client_while(c):
        return jax.lax.while_loop(lambda cr: cr[0] < 5, lambda cr: (cr[0] + 1, step(cr[1], *batch(c, cr[0]))),
                                  (0, p))[1]

    def client_scan(c):
        return jax.lax.scan(lambda q, s: (step(q, *batch(c, s)), None), p, jnp.arange(5))[0]

    def cpu(f):
        jax.block_until_ready(f())
        c0 = time.process_time()
        jax.block_until_ready(f())
        return round(time.process_time() - c0, 3)
    out = {}
    one = jax.jit(step)

    def top_level():
        q = p
        for c in range(50):
            q = p
            for s in range(5):
                q = one(q, *batch(c, s))
        return q
    out["top-level jitted steps"] = cpu(top_level)
    out["lax.map + while_loop"] = cpu(jax.jit(lambda: jax.lax.map(client_while, jnp.arange(50))))
    out["lax.map + scan"] = cpu(jax.jit(lambda: jax.lax.map(client_scan, jnp.arange(50))))
    out["vmap + while_loop"] = cpu(jax.jit(lambda: jax.vmap(client_while)(jnp.arange(50))))
    P = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (50,) + a.shape), p)
    vs = jax.jit(jax.vmap(step))

    def top_vmap():
        q = P
        for s in range(5):
            q = vs(q, X[:, s * 10:(s + 1) * 10], Y[:, s * 10:(s + 1) * 10])
        return q
    out["top-level vmapped steps"] = cpu(top_vmap)
    print(json.dumps({"cpu_s_per_250_client_steps": out}))


if __name__ == "__main__":
    main()
