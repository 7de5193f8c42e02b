"""The zoo CNN's convolutions without a convolution op (#19: XLA:CPU runs
convolutions several times slower inside loop bodies): ``train_zoo.tap_conv``
computes the convolution's function with the same parameters, and the FLOP meter
bills its matmuls exactly the analytic convolution count (real multiply-adds, no
padding zeros), forward and gradient."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsbench.metering.flops import conv_pairs, count
from lsbench.models import train_zoo

CASES = [  # (input shape, cnn kwargs): 2-D and 1-D zoo CNNs (smaller), odd sizes
    pytest.param((16, 16, 3), dict(channels=(4, 8), kernels=(3, 3), strides=(2, 2), dense=8),
                 marks=pytest.mark.slow),
    ((40,), dict(channels=(8, 8, 8), kernels=(5, 3, 3), strides=(2, 2, 2))),
    pytest.param((9, 7), dict(channels=(4, 6), kernels=(3, 5), strides=(1, 3)), marks=pytest.mark.slow),
]


def _analytic_forward(shape, kw, n, classes):
    """2 x real multiply-adds of every conv (per spatial dim: conv_pairs, padding 1),
    plus the dense layers."""
    sizes, cin, total = list(shape[:2] if len(shape) == 3 else shape), shape[-1] if len(shape) == 3 else 1, 0
    for ch, k, s in zip(kw["channels"], kw["kernels"], kw["strides"]):
        total += 2 * n * ch * cin * math.prod(conv_pairs(L, k, s, (1, 1)) for L in sizes)
        sizes, cin = [(L + 2 - k) // s + 1 for L in sizes], ch
    feat = cin * math.prod(sizes)
    if kw.get("dense"):
        total += 2 * n * feat * kw["dense"]
        feat = kw["dense"]
    return total + 2 * n * feat * classes


@pytest.mark.parametrize("shape,kw", CASES)
def test_tap_conv_is_the_convolution_billed_exactly(shape, kw):
    taps = train_zoo.cnn(10, shape, impl="taps", **kw)
    xla = train_zoo.cnn(10, shape, impl="xla", **kw)
    p = taps.init(jax.random.PRNGKey(0))
    q = xla.init(jax.random.PRNGKey(0))
    for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(q)):  # same initial weights
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert jax.tree_util.tree_structure(p) == jax.tree_util.tree_structure(q)
    x = jax.random.normal(jax.random.PRNGKey(1), (3,) + shape)
    np.testing.assert_allclose(np.asarray(jax.jit(taps.apply)(p, x)), np.asarray(jax.jit(xla.apply)(p, x)),
                               rtol=1e-4, atol=1e-5)
    assert "conv_general_dilated" not in str(jax.make_jaxpr(taps.apply)(p, x))
    fwd = count(taps.apply, p, x)
    assert fwd.matmul == count(xla.apply, p, x).matmul == _analytic_forward(shape, kw, 3, 10)

    def grad(m):
        return jax.grad(lambda p, x: jnp.sum(m.apply(p, x) ** 2))
    assert count(grad(taps), p, x).matmul == count(grad(xla), p, x).matmul  # the gradient billed alike
