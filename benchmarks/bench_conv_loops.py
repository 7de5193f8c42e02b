"""Why convolutional clients are slow inside compiled rounds on CPU: CPU seconds
for 250 local steps (50 clients x 5 steps, batch 10) of bench_throughput.py's
CNN, run (a) as top-level jitted calls, (b) inside lax.map + while_loop, (c)
lax.map + scan, (d) vmap + while_loop, (e) a top-level vmapped step (grouped
convolutions). XLA:CPU runs convolutions much slower inside loop bodies
(jax-ml/jax#12868). The same CNN with its convolutions written as im2col
matmuls (strided slices of the padded input, concatenated, times the kernel
reshaped to [k*k*c_in, c_out]: the same function, no convolution op) is timed
in the same loops, and so is the zoo's CNN (``train_zoo.tap_conv``, its default:
the same im2col per output region over real taps only, so no padding zeros are
multiplied or billed). CPU time, so other processes on the cores matter less.

    python benchmarks/bench_conv_loops.py
"""
import json
import time

import jax
import jax.numpy as jnp

from lsbench.models import train_zoo


def main():
    kw = dict(channels=(32, 64), kernels=(3, 3), strides=(2, 2), dense=128)
    m = train_zoo.cnn(10, (32, 32, 3), impl="xla", **kw)
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
    # The same CNN, convolutions as im2col matmuls (equal outputs: checked).
    def conv_im2col(x, w, b, stride):
        k = w.shape[0]
        xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        ho, wo = (x.shape[1] + 2 - k) // stride + 1, (x.shape[2] + 2 - k) // stride + 1
        cols = [xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
                for i in range(k) for j in range(k)]
        return jnp.concatenate(cols, -1) @ w.reshape(-1, w.shape[-1]) + b

    def apply_im2col(p, x):
        body = p["body"]
        for name in ("Conv_0", "Conv_1"):
            x = jax.nn.relu(conv_im2col(x, body[name]["kernel"], body[name]["bias"], 2))
        x = jax.nn.relu(x.reshape(x.shape[0], -1) @ body["Dense_0"]["kernel"] + body["Dense_0"]["bias"])
        return x @ p["head"]["Dense_0"]["kernel"] + p["head"]["Dense_0"]["bias"]

    xs = jax.random.normal(jax.random.PRNGKey(1), (10, 32, 32, 3))
    err = float(jnp.max(jnp.abs(apply_im2col(p, xs) - m.apply(p, xs))))
    assert err < 1e-3, err

    def loss2(p, x, y):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(apply_im2col(p, x)), y[:, None], 1))

    def step2(p, x, y):
        return jax.tree_util.tree_map(lambda a, b: a - 0.01 * b, p, jax.grad(loss2)(p, x, y))

    def client_while2(c):
        return jax.lax.while_loop(lambda cr: cr[0] < 5, lambda cr: (cr[0] + 1, step2(cr[1], *batch(c, cr[0]))),
                                  (0, p))[1]
    one2 = jax.jit(step2)

    def top_level2():
        q = p
        for c in range(50):
            q = p
            for s in range(5):
                q = one2(q, *batch(c, s))
        return q
    out["im2col: top-level jitted steps"] = cpu(top_level2)
    out["im2col: lax.map + while_loop"] = cpu(jax.jit(lambda: jax.lax.map(client_while2, jnp.arange(50))))
    out["im2col: vmap + while_loop"] = cpu(jax.jit(lambda: jax.vmap(client_while2)(jnp.arange(50))))
    vs2 = jax.jit(jax.vmap(step2))

    def top_vmap2():
        q = P
        for s in range(5):
            q = vs2(q, X[:, s * 10:(s + 1) * 10], Y[:, s * 10:(s + 1) * 10])
        return q
    out["im2col: top-level vmapped steps"] = cpu(top_vmap2)

    # The zoo's own CNN (train_zoo.tap_conv: per-region im2col over real taps only).
    mt = train_zoo.cnn(10, (32, 32, 3), impl="taps", **kw)
    assert float(jnp.max(jnp.abs(mt.apply(p, xs) - m.apply(p, xs)))) < 1e-3

    def step3(p, x, y):
        g = jax.grad(lambda p: -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(mt.apply(p, x)), y[:, None], 1)))
        return jax.tree_util.tree_map(lambda a, b: a - 0.01 * b, p, g(p))

    def client_while3(c):
        return jax.lax.while_loop(lambda cr: cr[0] < 5, lambda cr: (cr[0] + 1, step3(cr[1], *batch(c, cr[0]))),
                                  (0, p))[1]
    out["taps: lax.map + while_loop"] = cpu(jax.jit(lambda: jax.lax.map(client_while3, jnp.arange(50))))
    out["taps: vmap + while_loop"] = cpu(jax.jit(lambda: jax.vmap(client_while3)(jnp.arange(50))))
    print(json.dumps({"cpu_s_per_250_client_steps": out}))


if __name__ == "__main__":
    main()
