"""The FLOP meter against analytic counts and against XLA's cost analysis."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from lsbench.metering.flops import FlopError, FlopMeter, count

B, I, O = 4, 24, 10


def _dense():
    m = nn.Dense(O)
    x = jnp.ones((B, I))
    return m, m.init(jax.random.PRNGKey(0), x), x


def test_dense_forward_and_gradient_exact():
    m, p, x = _dense()
    fwd = 2 * B * I * O
    assert count(m.apply, p, x).matmul == fwd
    loss = lambda p, x: m.apply(p, x).sum()
    assert count(jax.grad(loss), p, x).matmul == 2 * fwd          # + dW
    assert count(jax.grad(loss, (0, 1)), p, x).matmul == 3 * fwd  # + dW + dx


def test_conv_forward_and_gradient_exact():
    N, H, W, C, K, k = 2, 8, 8, 3, 5, 3
    m = nn.Conv(K, (k, k), padding="SAME")
    x = jnp.ones((N, H, W, C))
    p = m.init(jax.random.PRNGKey(0), x)
    fwd = 2 * N * H * W * k * k * C * K
    assert count(m.apply, p, x).matmul == fwd
    loss = lambda p, x: m.apply(p, x).sum()
    assert count(jax.grad(loss), p, x).matmul == 2 * fwd
    assert count(jax.grad(loss, (0, 1)), p, x).matmul == 3 * fwd


def test_grouped_conv_exact():
    m = nn.Conv(6, (3, 3), padding="VALID", feature_group_count=3)
    x = jnp.ones((1, 7, 7, 6))
    p = m.init(jax.random.PRNGKey(0), x)
    assert count(m.apply, p, x).matmul == 2 * 5 * 5 * 6 * 9 * 2  # out elems x window x in/group


class Block(nn.Module):
    d: int
    heads: int
    ff: int

    @nn.compact
    def __call__(self, x):
        T = x.shape[1]
        h = nn.LayerNorm()(x)
        q, k, v = (nn.DenseGeneral((self.heads, self.d // self.heads), use_bias=False)(h) for _ in range(3))
        att = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(self.d // self.heads)
        att = jnp.where(jnp.tril(jnp.ones((T, T), bool)), att, -1e9)
        o = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(att), v)
        x = x + nn.DenseGeneral(self.d, axis=(-2, -1), use_bias=False)(o)
        h = nn.Dense(self.ff, use_bias=False)(nn.LayerNorm()(x))
        return x + nn.Dense(self.d, use_bias=False)(nn.gelu(h))


def _block():
    Bt, T, d, H, ff = 2, 6, 16, 4, 32
    m = Block(d, H, ff)
    x = jnp.ones((Bt, T, d))
    p = m.init(jax.random.PRNGKey(0), x)
    proj_in = 3 * 2 * Bt * T * d * d            # q, k, v from the block input
    inner = (2 * Bt * T * T * d) * 2             # scores, attention x values
    rest = 2 * Bt * T * d * d + 2 * 2 * Bt * T * d * ff  # output projection, MLP
    return m, p, x, proj_in, inner, rest


def test_transformer_block_forward_and_gradient_exact():
    m, p, x, proj_in, inner, rest = _block()
    assert count(m.apply, p, x).matmul == proj_in + inner + rest
    g = count(jax.grad(lambda p, x: m.apply(p, x).sum()), p, x).matmul
    # LayerNorm's scale sits before every matmul, so each one needs forward + dW + dx.
    assert g == 3 * (proj_in + inner + rest)
    # Gradient in the input only: weight matmuls need forward + dx; q.k and att.v need both grads.
    gx = count(jax.grad(lambda p, x: m.apply(p, x).sum(), 1), p, x).matmul
    assert gx == 2 * (proj_in + rest) + 3 * inner


def test_scan_counts_length_times_body():
    w = jnp.ones((8, 8))

    def body(c, _):
        return jnp.tanh(c @ w), None

    one = count(lambda c: body(c, None)[0], jnp.ones((3, 8)))
    for n in (1, 7, 20):
        got = count(lambda c: jax.lax.scan(body, c, None, length=n)[0], jnp.ones((3, 8)))
        assert got.matmul == n * one.matmul and got.total == n * one.total


def test_static_fori_loop_counts_like_scan():
    w = jnp.ones((8, 8))
    got = count(lambda c: jax.lax.fori_loop(0, 5, lambda i, c: c @ w, c), jnp.ones((2, 8)))
    assert got.matmul == 5 * 2 * 2 * 8 * 8


def test_cond_takes_the_most_expensive_branch():
    w = jnp.ones((8, 8))
    f = lambda p, c: jax.lax.cond(p, lambda c: c @ w @ w, lambda c: c @ w, c)
    assert count(f, True, jnp.ones((2, 8))).matmul == 2 * (2 * 2 * 8 * 8)


def test_remat_custom_jvp_and_jit_are_recursed():
    w = jnp.ones((8, 8))
    inner = lambda c: jax.nn.relu(c @ w)
    x = jnp.ones((2, 8))
    base = count(inner, x).matmul
    assert count(jax.checkpoint(inner), x).matmul == base
    assert count(jax.jit(inner), x).matmul == base
    assert count(lambda c: jax.nn.softplus(inner(c)) + jax.nn.gelu(c @ w), x).matmul == 2 * base


def test_unbounded_while_is_refused():
    f = lambda x: jax.lax.while_loop(lambda c: c.sum() < 100, lambda c: c @ jnp.ones((4, 4)), x)
    with pytest.raises(FlopError, match="while_loop"):
        count(f, jnp.ones((1, 4)))
    with pytest.raises(FlopError, match="^mine: "):
        FlopMeter().count("mine", f, jnp.ones((1, 4)))


def _mlp_loss(p, x):
    h = jax.nn.relu(x @ p["w1"] + p["b1"])
    return ((h @ p["w2"]) ** 2).sum()


@pytest.mark.parametrize("name", ["dense", "mlp", "mlp_grad", "conv", "block"])
def test_all_ops_count_agrees_with_xla_cost_analysis(name):
    if name == "dense":
        m, p, x = _dense()
        f, args = m.apply, (p, x)
    elif name in ("mlp", "mlp_grad"):
        p = {"w1": jnp.ones((32, 64)), "b1": jnp.ones((64,)), "w2": jnp.ones((64, 10))}
        f, args = (_mlp_loss if name == "mlp" else jax.grad(_mlp_loss)), (p, jnp.ones((16, 32)))
    elif name == "conv":
        m = nn.Conv(8, (3, 3), padding="VALID")  # XLA skips zero-padding taps; the meter bills them
        x = jnp.ones((2, 8, 8, 3))
        f, args = m.apply, (m.init(jax.random.PRNGKey(0), x), x)
    else:
        m, p, x, *_ = _block()
        f, args = m.apply, (p, x)
    xla = jax.jit(f).lower(*args).cost_analysis()
    xla = (xla[0] if isinstance(xla, (list, tuple)) else xla)["flops"]
    ours = count(f, *args).total
    assert abs(ours - xla) <= 0.10 * xla, (ours, xla)


def test_meter_caches_per_signature():
    traces = []

    def f(x):
        traces.append(x.shape)
        return x @ x.T

    meter = FlopMeter()
    a = meter.count("f", f, jnp.ones((3, 4)))
    assert meter.count("f", f, jnp.zeros((3, 4))) == a and len(traces) == 1
    b = meter.count("f", f, jnp.ones((5, 4)))
    assert len(traces) == 2 and b.matmul == 2 * 5 * 5 * 4 and a.matmul == 2 * 3 * 3 * 4
