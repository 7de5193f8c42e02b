"""The FLOP meter against analytic counts and against XLA's cost analysis."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsbench.metering.flops import FlopError, FlopMeter, conv_pairs, count, count_jaxpr

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


def _real_taps(size, k, stride, lo, out):
    """Hand count along one axis: (output, tap) pairs that land on a real input element."""
    return sum(1 for o in range(out) for t in range(k) if 0 <= o * stride + t - lo < size)


def test_conv_forward_and_gradient_exact():
    N, H, W, C, K, k = 2, 8, 8, 3, 5, 3
    m = nn.Conv(K, (k, k), padding="SAME")
    x = jnp.ones((N, H, W, C))
    p = m.init(jax.random.PRNGKey(0), x)
    # SAME padding: taps on the zero border are not multiply-adds. Per axis: 6 outputs x 3 taps
    # + 2 border outputs x 2 taps = 22 (not 8 x 3 = 24).
    assert _real_taps(8, 3, 1, 1, 8) == 6 * 3 + 2 * 2
    fwd = 2 * N * 22 * 22 * C * K
    assert count(m.apply, p, x).matmul == fwd
    loss = lambda p, x: m.apply(p, x).sum()
    # dW and dx pair the same (output, tap) positions as the forward pass: exactly fwd each.
    assert count(jax.grad(loss), p, x).matmul == 2 * fwd
    assert count(jax.grad(loss, (0, 1)), p, x).matmul == 3 * fwd


def test_strided_conv_input_gradient_counts_no_dilation_zeros():
    N, H, C, K, k, s = 2, 8, 3, 4, 3, 2
    m = nn.Conv(K, (k, k), strides=(s, s), padding="SAME")
    x = jnp.ones((N, H, H, C))
    p = m.init(jax.random.PRNGKey(0), x)
    # XLA's SAME for stride 2 on 8: 4 outputs, padding (0, 1); the last output's third tap is padding.
    per_axis = 4 * 3 - 1
    assert _real_taps(8, 3, 2, 0, 4) == per_axis
    fwd = 2 * N * per_axis ** 2 * C * K
    assert count(m.apply, p, x).matmul == fwd
    loss = lambda p, x: m.apply(p, x).sum()
    dw = count(jax.grad(loss), p, x).matmul - fwd
    dx = count(jax.grad(loss, (0, 1)), p, x).matmul - fwd - dw
    # the input gradient runs over the stride-dilated output gradient: its zeros are not billed
    assert dw == fwd and dx == fwd


def test_transposed_conv_counts_real_multiply_adds():
    m = nn.ConvTranspose(4, (3, 3), strides=(2, 2), padding="VALID")
    x = jnp.ones((1, 5, 5, 3))
    p = m.init(jax.random.PRNGKey(0), x)
    # VALID transposed conv: every input element meets every kernel tap once: 5*5 x 3*3 x 3 x 4.
    assert count(m.apply, p, x).matmul == 2 * 25 * 9 * 3 * 4


def test_conv_pairs_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(400):
        size, taps, s, ld, rd = (int(v) for v in rng.integers(1, (12, 6, 4, 4, 3)))
        pad = tuple(int(v) for v in rng.integers(-2, 5, 2))
        L = (size - 1) * ld + 1
        full, span = pad[0] + L + pad[1], (taps - 1) * rd + 1
        if full < span:
            continue
        out = (full - span) // s + 1
        want = sum(1 for o in range(out) for t in range(taps)
                   if 0 <= o * s + t * rd - pad[0] < L and (o * s + t * rd - pad[0]) % ld == 0)
        assert conv_pairs(size, taps, s, pad, ld, rd, out) == want


def test_grouped_conv_exact():
    m = nn.Conv(6, (3, 3), padding="VALID", feature_group_count=3)
    x = jnp.ones((1, 7, 7, 6))
    p = m.init(jax.random.PRNGKey(0), x)
    fwd = 2 * 5 * 5 * 6 * 9 * 2  # out elems x window x in/group
    assert count(m.apply, p, x).matmul == fwd
    # the weight gradient of a grouped conv is a batch-grouped conv: the same multiply-adds
    assert count(jax.grad(lambda p, x: m.apply(p, x).sum(), (0, 1)), p, x).matmul == 3 * fwd


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
        m = nn.Conv(8, (3, 3), padding="SAME")  # neither XLA nor the meter bills zero-padding taps
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


# ---------------------------------------------------------------- one test per convention
def _one(prim, f, *args):
    """Count of the equations of primitive ``prim`` alone in f's jaxpr (sub-jaxprs included)."""
    from lsbench.metering.flops import _count_eqn

    def walk(j):
        out = []
        for e in j.eqns:
            if e.primitive.name == prim:
                out.append(e)
            for v in e.params.values():
                for s in (v if isinstance(v, (tuple, list)) else (v,)):
                    if hasattr(s, "eqns") or hasattr(s, "jaxpr"):
                        out += walk(getattr(s, "jaxpr", s))
        return out
    eqns = walk(jax.make_jaxpr(f)(*args).jaxpr)
    assert eqns, f"no {prim} in the program"
    from lsbench.metering.flops import FlopCount
    tot = FlopCount()
    for e in eqns:
        tot = tot + _count_eqn(e, {})
    return tot


def test_scatter_counts_one_per_update_element():
    x, i, u = jnp.zeros((100, 8)), jnp.zeros((30,), jnp.int32), jnp.ones((30, 8))
    assert _one("scatter-add", lambda x, i, u: x.at[i].add(u), x, i, u).total == 30 * 8
    assert _one("scatter", lambda x, i, u: x.at[i].set(u), x, i, u).total == 30 * 8
    assert _one("scatter-mul", lambda x, i, u: x.at[i].multiply(u), x, i, u).total == 30 * 8


def test_reduce_window_counts_window_times_outputs():
    pool = lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 8, 8, 1), (1, 8, 8, 1), "VALID")
    assert count(pool, jnp.ones((1, 128, 128, 1))).total == 64 * 16 * 16   # 16,384
    avg = lambda x: nn.avg_pool(x, (3, 3), (1, 1), padding="SAME")
    assert _one("reduce_window_sum", avg, jnp.ones((2, 10, 10, 4))).total == 9 * 2 * 10 * 10 * 4
    # the max-pool gradient: one selection per window element, per window
    g = jax.grad(lambda x: nn.max_pool(x, (2, 2), (2, 2)).sum())
    assert _one("select_and_scatter_add", g, jnp.ones((1, 8, 8, 3))).total == 4 * 4 * 4 * 3


def test_sort_and_top_k():
    assert count(jnp.sort, jnp.ones((4, 1000))).total == 4 * 1000 * 10      # ceil(log2 1000) = 10
    assert _one("sort", jnp.argsort, jnp.ones((1000,))).total == 1000 * 10  # the carried iota is free
    assert count(lambda x: jax.lax.top_k(x, 5), jnp.ones((50000,))).total == 50000 * 3
    assert count(lambda x: jax.lax.top_k(x, 1), jnp.ones((3, 700))).total == 3 * 700  # k=1: one scan
    assert count(lambda x: jax.lax.top_k(x, 64), jnp.ones((256,))).total == 256 * 6


def test_cumulative_ops_count_n_and_gather_is_free():
    x = jnp.ones((64, 32))
    for f in (lambda x: jnp.cumsum(x, 0), lambda x: jnp.cumprod(x, 1), lambda x: jax.lax.cummax(x, 0)):
        assert count(f, x).total == 64 * 32
    dn = jax.lax.GatherDimensionNumbers(offset_dims=(1,), collapsed_slice_dims=(0,), start_index_map=(0,))
    g = lambda x, i: jax.lax.gather(x, i, dn, (1, 32), mode="promise_in_bounds")
    assert count(g, x, jnp.zeros((5, 1), jnp.int32)) == count(lambda x, i: x, x, None)


def test_elementwise_and_reductions():
    x = jnp.ones((16, 8))
    assert count(jnp.sin, x).total == 128 and count(jnp.sin, x).matmul == 0   # transcendental: 1
    assert count(lambda x: x ** 3, x).total == 128                            # integer_pow: 1
    assert count(lambda x: jnp.where(x > 0, x, 0.0), x).total == 2 * 128       # compare + select
    assert count(lambda x: x.sum(1), x).total == 128                           # 1 per input element
    assert count(lambda x: jnp.argmax(x, 0), x).total == 128


def test_linear_algebra_textbook_counts():
    n = 64
    a = jnp.eye(n) * 2.0
    assert _one("cholesky", jnp.linalg.cholesky, a).matmul == -(-n ** 3 // 3)          # n^3/3
    assert _one("lu", jax.scipy.linalg.lu_factor, a).matmul == -(-2 * n ** 3 // 3)     # 2n^3/3
    assert _one("triangular_solve", lambda a, b: jax.scipy.linalg.solve_triangular(a, b, lower=True),
                a, jnp.ones((n, 3))).matmul == n * n * 3                              # n^2 per rhs
    assert _one("eigh", jnp.linalg.eigh, a).matmul == 9 * n ** 3                       # ~2.36M, not ~12k
    assert _one("svd", jnp.linalg.svd, a).matmul == (4 + 8 + 9) * n ** 3               # U, S, V full
    m_, k_ = 6, 4
    b = jnp.ones((m_, k_))
    assert _one("svd", lambda x: jnp.linalg.svd(x, full_matrices=False), b).matmul == 14 * 6 * 16 + 8 * 64
    assert _one("svd", lambda x: jnp.linalg.svd(x, compute_uv=False), b).matmul == -(-(4 * 6 * 16 * 3 - 4 * 64) // 3)
    # Householder QR, reduced: R = 2n^2(m - n/3), thin Q = 2mn^2 - 2n^3/3
    assert _one("qr", jnp.linalg.qr, b).matmul == -(-(2 * 16 * (3 * 6 - 4) + 2 * 6 * 16 * 3 - 2 * 64) // 3)


def test_fft_counts_5_n_log2_n():
    assert count(jnp.fft.fft, jnp.ones((3, 64), jnp.complex64)).matmul == 3 * 5 * 64 * 6
    assert _one("fft", jnp.fft.rfft, jnp.ones((64,))).matmul == 5 * 64 * 6 // 2


def test_pallas_kernel_counts_body_times_grid():
    from jax.experimental import pallas as pl

    def kern(x_ref, y_ref, o_ref):
        o_ref[...] = jnp.dot(x_ref[...], y_ref[...]) + 1.0

    def f(x, y):
        return pl.pallas_call(
            kern, out_shape=jax.ShapeDtypeStruct((64, 64), jnp.float32), grid=(2, 2),
            in_specs=[pl.BlockSpec((32, 64), lambda i, j: (i, 0)), pl.BlockSpec((64, 32), lambda i, j: (0, j))],
            out_specs=pl.BlockSpec((32, 32), lambda i, j: (i, j)), interpret=True)(x, y)
    got = count(f, jnp.ones((64, 64)), jnp.ones((64, 64)))
    assert got.matmul == 4 * (2 * 32 * 32 * 64) == 2 * 64 ** 3     # the whole matmul, not one block
    assert got.total == got.matmul + 4 * 32 * 32


def test_shard_map_counts_body_times_mesh_size():
    from jax.sharding import AbstractMesh, PartitionSpec as P
    mesh = AbstractMesh((4,), ("d",))
    f = jax.shard_map(lambda a: jax.lax.psum(a @ a.T, "d"), mesh=mesh, in_specs=P("d"), out_specs=P())
    got = count(f, jnp.ones((8, 4)))
    assert got.matmul == 4 * (2 * 2 * 2 * 4)       # each of 4 devices: [2,4] @ [4,2]
    assert got.total == got.matmul + 4 * 4         # psum: 1 per element per device


def test_custom_vjp_counts_the_primal_once():
    @jax.custom_vjp
    def g(x):
        return jnp.sin(x) @ x
    g.defvjp(lambda x: (g(x), x), lambda r, ct: (ct @ r,))
    x = jnp.ones((4, 4))
    assert count(g, x).matmul == 2 * 4 * 4 * 4
    assert count(jax.grad(lambda x: g(x).sum()), x).matmul == 2 * (2 * 4 * 4 * 4)   # fwd + bwd


def test_callbacks_and_unknown_primitives_are_refused():
    from jax.extend.core import Primitive
    cb = lambda x: jax.pure_callback(lambda v: v * 2, jax.ShapeDtypeStruct(x.shape, x.dtype), x)
    with pytest.raises(FlopError, match="'pure_callback' is a host callback"):
        count(cb, jnp.ones(3))
    from jax.experimental import io_callback
    io = lambda x: io_callback(lambda v: v, jax.ShapeDtypeStruct(x.shape, x.dtype), x)  # noqa: E731
    with pytest.raises(FlopError, match="io_callback"):
        count(io, jnp.ones(3))
    weird = Primitive("weird_op")
    weird.def_abstract_eval(lambda x: x)
    with pytest.raises(FlopError, match="^primitive 'weird_op' has no FLOP convention"):
        count(lambda x: weird.bind(x) + 1, jnp.ones(3))
    # FlopError is the harness's one-line plugin error; the Sealer names the side and function
    from lsbench.errors import FlopError as HarnessFlopError, PluginError
    from lsbench.harness.sealed import Sealer
    assert FlopError is HarnessFlopError and issubclass(FlopError, PluginError)
    with pytest.raises(FlopError, match="^edge function edge_query: primitive 'weird_op'"):
        Sealer(meter=count_jaxpr).flops("edge", "edge_query", lambda x: weird.bind(x), jnp.ones(3))


def test_every_primitive_has_a_convention_or_is_refused():
    """No primitive JAX defines is silently zero: each is free on purpose, counted, or refused."""
    import gc
    from types import SimpleNamespace
    from jax._src import core as _core
    from lsbench.metering import flops as F
    known = F.conventions()
    names = {o.name for o in gc.get_objects() if isinstance(o, _core.Primitive)}
    assert len(names) > 100
    for name in sorted(names - set(known)):
        eqn = SimpleNamespace(primitive=SimpleNamespace(name=name), params={}, invars=[], outvars=[])
        with pytest.raises(FlopError, match=f"'{name}'"):
            F._count_eqn(eqn, {})
    for name in F.FREE:
        eqn = SimpleNamespace(primitive=SimpleNamespace(name=name), params={}, invars=[], outvars=[])
        assert F._count_eqn(eqn, {}) == F.FlopCount()
    assert "gather" in F.FREE and "scatter-add" not in F.FREE and "while" in known
    assert not (F.FREE & F.ELEMENTWISE) and not (F.FREE & F.REDUCTIONS)
