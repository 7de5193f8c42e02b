"""FLOP meter: counts FLOPs by walking a function's jaxpr, one documented
convention per primitive (the table is in ``docs/metering.md``).

Every primitive is either counted by a rule below, or listed as free (it only
moves, reinterprets or creates data), or refused with a one-line
:class:`lsbench.errors.FlopError` naming it. No primitive silently counts as
zero: a new JAX primitive is refused until it gets a convention here.

Two figures per program (1 multiply-add = 2 FLOPs throughout):

- ``matmul``: dense linear algebra: ``dot_general`` (2 x output elements x
  contracted size), convolutions (2 x the multiply-adds that touch a real input
  element: taps on padding, on the zeros a dilation or a transposition inserts,
  are not counted, in the forward pass as in the gradients), factorizations
  and solves (textbook counts), FFTs (5 N log2 N);
- ``total``: ``matmul`` plus everything else: element-wise ops 1 per output
  element (transcendentals too), reductions 1 per input element, windows
  (pooling) window size x outputs, scatters 1 per update element, sort
  n ceil(log2 n), top_k n max(1, ceil(log2 k)), cumulative ops n.

Control flow: ``scan`` counts body x length; ``cond``/``switch`` the most
expensive branch; ``while`` is refused (unknown trip count: use ``lax.scan`` or
``fori_loop`` with static bounds); Pallas kernels count body x grid size;
``shard_map`` bodies count body x mesh size; calls (jit, remat, custom_jvp /
custom_vjp, custom_linear_solve's solve) count their body once. Host callbacks
are refused.
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import jax
import numpy as np
from jax.extend import core as jcore

from lsbench.errors import FlopError

__all__ = ["FlopCount", "FlopError", "count", "count_jaxpr", "FlopMeter", "conv_pairs", "FREE",
           "ELEMENTWISE", "REDUCTIONS", "CALLS", "CALLBACKS", "conventions"]


@dataclasses.dataclass(frozen=True)
class FlopCount:
    matmul: int = 0
    total: int = 0

    def __add__(self, o: "FlopCount") -> "FlopCount":
        return FlopCount(self.matmul + o.matmul, self.total + o.total)

    def __mul__(self, k: int) -> "FlopCount":
        return FlopCount(self.matmul * int(k), self.total * int(k))

    __rmul__ = __mul__


ZERO = FlopCount()

# Free: primitives that only move, reinterpret, create or annotate data (and
# random bits: key handling and bit generation). Each name is listed on purpose.
FREE = frozenset("""
reshape broadcast_in_dim broadcast_to transpose squeeze expand_dims slice dynamic_slice
dynamic_update_slice concatenate pad gather rev convert_element_type bitcast_convert_type iota
copy copy_p split tile stack unstack zeros_like empty empty2 real imag complex
stop_gradient optimization_barrier name pvary sharding_constraint layout_constraint reshard
with_memory_space_constraint device_put inspect_sharding
random_seed random_wrap random_unwrap random_bits random_split random_fold_in random_clone
threefry2x32 threefry4x32 philox2x32 philox4x32 iota_2x32_shape rng_bit_generator rng_uniform
lu_pivots_to_permutation debug_print
axis_index program_id num_programs multiple_of get swap masked_load masked_swap new_ref
empty_ref free_ref freeze semaphore_read semaphore_signal semaphore_wait delay
all_gather all_gather_invariant ppermute all_to_all pbroadcast
create_token after_all shape_assertion dim_as_value dimension_size platform_index
""".split())

# Element-wise: 1 FLOP per output element (transcendentals and comparisons too).
ELEMENTWISE = frozenset("""
abs acos acosh add add_any and asin asinh atan atan2 atanh bessel_i0e bessel_i1e cbrt ceil clamp
clz conj cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1 floor ge gt igamma igamma_grad_a
igammac integer_pow is_finite le lgamma log log1p logistic lt max min mul mulhi ne neg nextafter
not or polygamma population_count pow random_gamma reciprocal reduce_precision
regularized_incomplete_beta rem round rsqrt select_n shift_left shift_right_arithmetic
shift_right_logical sign sin sinh sqrt square sub tan tanh xor zeta addupdate
""".split())

# Reductions: 1 FLOP per input element.
REDUCTIONS = frozenset("""
reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or reduce_xor argmax argmin
""".split())

# Cumulative ops: n (the operand's elements).
CUMULATIVE = frozenset("cumsum cumprod cummax cummin cumlogsumexp".split())

# Collectives inside shard_map that reduce: 1 FLOP per operand element per device.
COLLECTIVE_REDUCE = frozenset("psum psum_invariant pmax pmin reduce_scatter unreduced_psum".split())

# Calls: count the body once (the param holding it).
CALLS = {"pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
         "remat": "jaxpr", "remat2": "jaxpr", "checkpoint": "jaxpr", "custom_jvp_call": "call_jaxpr",
         "custom_vjp_call": "call_jaxpr", "custom_vjp_call_jaxpr": "fun_jaxpr",
         "custom_vmap_call": "call_jaxpr", "run_state": "jaxpr", "run_scoped": "jaxpr",
         "composite": "jaxpr", "named_call": "call_jaxpr"}

CALLBACKS = ("pure_callback", "io_callback", "debug_callback", "callback")

SCATTERS = frozenset("scatter scatter-add scatter_add scatter-sub scatter_sub scatter-mul scatter_mul "
                     "scatter-min scatter_min scatter-max scatter_max".split())


def _size(aval) -> int:
    return int(math.prod(getattr(aval, "shape", ())))


def _shape(v):
    return tuple(getattr(v.aval, "shape", ()))


def _ceil(x) -> int:
    return int(math.ceil(Fraction(x))) if not isinstance(x, int) else x


def _clog2(n: int) -> int:
    return (int(n) - 1).bit_length() if n > 1 else 0


# ------------------------------------------------------------------ dot and conv
def _dot_flops(eqn) -> int:
    (lc, _), _ = eqn.params["dimension_numbers"]
    lhs = _shape(eqn.invars[0])
    k = math.prod(lhs[d] for d in lc)
    return 2 * _size(eqn.outvars[0].aval) * int(k)


def _ragged_dot_flops(eqn) -> int:
    dn = eqn.params.get("ragged_dot_dimension_numbers")
    lc = dn.dot_dimension_numbers[0][0] if dn is not None else (len(_shape(eqn.invars[0])) - 1,)
    lhs = _shape(eqn.invars[0])
    return 2 * _size(eqn.outvars[0].aval) * int(math.prod(lhs[d] for d in lc))


def conv_pairs(size: int, taps: int, stride: int = 1, pad=(0, 0), lhs_dil: int = 1,
               rhs_dil: int = 1, out: int | None = None) -> int:
    """Along one spatial dimension: the number of (output position, kernel tap)
    pairs whose tap lands on a real input element, not on padding nor on a zero
    inserted by ``lhs_dil`` (input dilation: transposed convolutions, the input
    gradient of a strided convolution). ``rhs_dil`` spaces the taps apart
    (atrous) and inserts no multiply. Exact, in O(taps)."""
    lo, hi = int(pad[0]), int(pad[1])
    size, taps, stride, lhs_dil, rhs_dil = (int(v) for v in (size, taps, stride, lhs_dil, rhs_dil))
    if size <= 0 or taps <= 0:
        return 0
    L = (size - 1) * lhs_dil + 1                  # dilated input length
    span = (taps - 1) * rhs_dil + 1
    full = lo + L + hi
    n_out = max(0, (full - span) // stride + 1) if full >= span else 0
    if out is not None:
        n_out = int(out)
    if n_out == 0:
        return 0
    c = np.arange(taps, dtype=np.int64) * rhs_dil - lo     # position of tap k at output 0
    # outputs o with 0 <= o*stride + c <= L-1
    o_min = np.maximum(0, -(c // stride))                  # ceil(-c / stride)
    o_max = np.minimum(n_out - 1, (L - 1 - c) // stride)
    if lhs_dil == 1:
        return int(np.maximum(0, o_max - o_min + 1).sum())
    # and (o*stride + c) % lhs_dil == 0
    g = math.gcd(stride, lhs_dil)
    period = lhs_dil // g
    ok = (c % g) == 0
    inv = pow(stride // g, -1, period) if period > 1 else 0
    o0 = ((-(c // g)) * inv) % period if period > 1 else np.zeros_like(c)
    cnt = np.where(o_max >= o_min, (o_max - o0) // period - (o_min - 1 - o0) // period, 0)
    return int(np.where(ok, cnt, 0).sum())


def _conv_flops(eqn) -> int:
    p = eqn.params
    lhs, rhs, out = _shape(eqn.invars[0]), _shape(eqn.invars[1]), _shape(eqn.outvars[0])
    dn = p["dimension_numbers"]
    lspec, rspec, ospec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
    nsp = len(rspec) - 2
    strides = p.get("window_strides") or (1,) * nsp
    pads = p.get("padding") or ((0, 0),) * nsp
    ldil = p.get("lhs_dilation") or (1,) * nsp
    rdil = p.get("rhs_dilation") or (1,) * nsp
    pairs = 1
    for i in range(nsp):
        pairs *= conv_pairs(lhs[lspec[2 + i]], rhs[rspec[2 + i]], strides[i], pads[i], ldil[i], rdil[i],
                            out=out[ospec[2 + i]])
    # out batch x out features x input features per output feature x real (output, tap) pairs
    return 2 * out[ospec[0]] * out[ospec[1]] * rhs[rspec[1]] * pairs


# ------------------------------------------------------------------ linear algebra
def _mat(v):
    s = _shape(v)
    return int(math.prod(s[:-2])), int(s[-2]), int(s[-1])


def _geqrf(m, n) -> Fraction:
    return 2 * Fraction(n * n) * (m - Fraction(n, 3)) if m >= n else 2 * Fraction(m * m) * (n - Fraction(m, 3))


def _orgqr(m, n, k) -> Fraction:
    return 4 * m * n * k - 2 * (m + n) * k * k + Fraction(4 * k ** 3, 3)


def _svd(m, n, compute_uv, full) -> Fraction:
    if m < n:
        m, n = n, m
    if not compute_uv:
        return 4 * m * n * n - Fraction(4 * n ** 3, 3)
    if full:
        return 4 * m * m * n + 8 * m * n * n + 9 * n ** 3
    return 14 * m * n * n + 8 * n ** 3


def _linalg(eqn) -> int:
    name, p = eqn.primitive.name, eqn.params
    a = eqn.invars[0]
    if name == "cholesky":
        b, n, _ = _mat(a)
        return b * _ceil(Fraction(n ** 3, 3))
    if name == "cholesky_update":
        n = _shape(a)[-1]
        return int(math.prod(_shape(a)[:-2])) * 4 * n * n
    if name == "triangular_solve":
        b, m, _ = _mat(a)
        rhs = _shape(eqn.invars[1])
        r = rhs[-1] if p.get("left_side", False) else rhs[-2]
        return b * m * m * int(r)
    if name == "lu":
        b, m, n = _mat(a)
        f = m * n * n - Fraction(n ** 3, 3) if m >= n else n * m * m - Fraction(m ** 3, 3)
        return b * _ceil(f)
    if name in ("geqrf", "geqp3"):
        b, m, n = _mat(a)
        return b * _ceil(_geqrf(m, n))
    if name == "householder_product":
        b, m, n = _mat(a)
        k = _shape(eqn.invars[1])[-1]
        return b * _ceil(_orgqr(m, n, k))
    if name == "ormqr":
        b, _, k = _mat(a)
        _, m, n = _mat(eqn.invars[2]) if len(eqn.invars) > 2 else _mat(eqn.invars[1])
        left = p.get("left", True)
        return b * (2 * n * k * (2 * m - k) if left else 2 * m * k * (2 * n - k))
    if name == "qr":
        b, m, n = _mat(a)
        k = min(m, n)
        q_cols = m if p.get("full_matrices", False) else k
        return b * _ceil(_geqrf(m, n) + _orgqr(m, q_cols, k))
    if name == "eigh":
        b, n, _ = _mat(a)
        return b * 9 * n ** 3
    if name == "svd":
        b, m, n = _mat(a)
        return b * _ceil(_svd(m, n, p.get("compute_uv", True), p.get("full_matrices", True)))
    if name == "eig":
        b, n, _ = _mat(a)
        sets = int(bool(p.get("compute_left_eigenvectors"))) + int(bool(p.get("compute_right_eigenvectors")))
        return b * (10 + 15 * sets) * n ** 3
    if name == "schur":
        b, n, _ = _mat(a)
        return b * (25 if p.get("compute_schur_vectors", True) else 10) * n ** 3
    if name == "hessenberg":
        b, n, _ = _mat(a)
        return b * _ceil(Fraction(10 * n ** 3, 3))
    if name == "tridiagonal":
        b, n, _ = _mat(a)
        return b * _ceil(Fraction(4 * n ** 3, 3))
    if name == "tridiagonal_solve":
        rhs = _shape(eqn.invars[3])
        return int(math.prod(rhs[:-2])) * 8 * rhs[-2] * rhs[-1]
    if name == "symmetric_product":
        b, n, k = _mat(a)
        return b * n * (n + 1) * k
    raise AssertionError(name)


LINALG = frozenset("cholesky cholesky_update triangular_solve lu geqrf geqp3 householder_product ormqr qr "
                   "eigh svd eig schur hessenberg tridiagonal tridiagonal_solve symmetric_product".split())


def _fft(eqn) -> int:
    lengths = tuple(int(x) for x in eqn.params["fft_lengths"])
    n = math.prod(lengths)
    x = _shape(eqn.invars[0])
    batch = int(math.prod(x[:len(x) - len(lengths)]))
    kind = eqn.params.get("fft_type", 0)
    try:
        real = int(kind) in (2, 3)  # FftType: FFT, IFFT, RFFT, IRFFT
    except (TypeError, ValueError):
        real = "RFFT" in str(kind).upper()
    per = Fraction(5 * n) * Fraction(math.log2(n)) if n > 1 else Fraction(0)
    if real:
        per = per / 2
    return batch * _ceil(per)


# ------------------------------------------------------------------ walking
def _sub(v):
    if isinstance(v, jcore.ClosedJaxpr):
        return v.jaxpr
    if isinstance(v, jcore.Jaxpr):
        return v
    return None


def count_jaxpr(jaxpr, _memo=None) -> FlopCount:
    """FLOPs of a (Closed)Jaxpr; raises FlopError for anything it cannot meter."""
    jaxpr = _sub(jaxpr) or jaxpr
    memo = {} if _memo is None else _memo
    key = id(jaxpr)
    if key in memo:
        return memo[key][0]
    total = ZERO
    for eqn in jaxpr.eqns:
        total = total + _count_eqn(eqn, memo)
    memo[key] = (total, jaxpr)  # keep jaxpr alive so its id is not reused
    return total


def _both(f: int) -> FlopCount:
    return FlopCount(int(f), int(f))


def _other(f: int) -> FlopCount:
    return FlopCount(0, int(f))


def _count_eqn(eqn, memo) -> FlopCount:
    name = eqn.primitive.name
    p = eqn.params
    if name in FREE:
        return ZERO
    if name in ELEMENTWISE:
        return _other(sum(_size(v.aval) for v in eqn.outvars))
    if name in REDUCTIONS:
        return _other(sum(_size(v.aval) for v in eqn.invars))
    if name == "dot_general":
        return _both(_dot_flops(eqn))
    if name == "ragged_dot_general":
        return _both(_ragged_dot_flops(eqn))
    if name == "conv_general_dilated":
        return _both(_conv_flops(eqn))
    if name in LINALG:
        return _both(_linalg(eqn))
    if name == "fft":
        return _both(_fft(eqn))
    if name in CUMULATIVE:
        return _other(_size(eqn.invars[0].aval))
    if name in SCATTERS:
        return _other(_size(eqn.invars[2].aval))  # (operand, indices, updates)
    if name.startswith("reduce_window"):  # reduce_window_sum/max/min and the generic one
        win = math.prod(p["window_dimensions"])
        return _other(win * _size(eqn.outvars[0].aval))
    if name in ("select_and_scatter_add", "select_and_scatter"):
        win = math.prod(p["window_dimensions"])
        return _other(win * _size(eqn.invars[0].aval))  # window x source (one per window)
    if name == "select_and_gather_add":
        win = math.prod(p["window_dimensions"])
        return _other(win * _size(eqn.outvars[0].aval))
    if name == "reduce":
        body = count_jaxpr(p["computation"], memo).total if "computation" in p else 1
        return _other(_size(eqn.invars[0].aval) * max(1, body))
    if name == "sort":
        shp = _shape(eqn.invars[0])
        n = shp[p["dimension"]] if shp else 1
        rows = _size(eqn.invars[0].aval) // max(n, 1)
        return _other(rows * n * _clog2(n) * max(1, int(p.get("num_keys", 1))))
    if name in ("top_k", "approx_top_k"):
        shp = _shape(eqn.invars[0])
        axis = p.get("axis", p.get("reduction_dimension", -1))
        axis = -1 if axis is None else axis
        n = shp[axis] if shp else 1
        rows = _size(eqn.invars[0].aval) // max(n, 1)
        return _other(rows * n * max(1, _clog2(int(p["k"]))))
    if name in COLLECTIVE_REDUCE:
        return _other(sum(_size(v.aval) for v in eqn.invars))
    if name == "scan":
        return count_jaxpr(p["jaxpr"], memo) * p["length"]
    if name == "cond":
        counts = [count_jaxpr(b, memo) for b in p["branches"]]
        return FlopCount(max(c.matmul for c in counts), max(c.total for c in counts))
    if name == "while":
        raise FlopError("cannot meter a while_loop with an unknown trip count; "
                        "use lax.scan or fori_loop with static bounds")
    if name == "pallas_call":
        grid = tuple(p["grid_mapping"].grid)
        if not all(isinstance(g, (int, np.integer)) for g in grid):
            raise FlopError(f"cannot meter a Pallas kernel with a dynamic grid {grid}; use a static grid")
        return count_jaxpr(p["jaxpr"], memo) * int(math.prod(grid))
    if name == "shard_map":
        return count_jaxpr(p["jaxpr"], memo) * int(p["mesh"].size)
    if name == "custom_linear_solve":
        return count_jaxpr(p["jaxprs"].solve, memo)
    if name in CALLS and _sub(p.get(CALLS[name])) is not None:
        return count_jaxpr(p[CALLS[name]], memo)
    if name in CALLBACKS or name.endswith("_callback"):
        raise FlopError(f"primitive '{name}' is a host callback: its work cannot be metered "
                        "(callbacks are refused); compute it in jax.numpy")
    raise FlopError(f"primitive '{name}' has no FLOP convention (docs/metering.md lists them); "
                    "use jax.numpy/lax ops the meter knows, or ask for a convention")


def count(fn, *args) -> FlopCount:
    """FLOPs of one call ``fn(*args)`` (args may be arrays or ShapeDtypeStructs)."""
    return count_jaxpr(jax.make_jaxpr(fn)(*args))


def _signature(args):
    leaves, tree = jax.tree_util.tree_flatten(args)
    sig = []
    for leaf in leaves:
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            sig.append((tuple(leaf.shape), str(leaf.dtype)))
        else:  # static Python values are part of the signature
            sig.append(("py", repr(leaf)))
    return tree, tuple(sig)


class FlopMeter:
    """Counts each metered function once per input signature, then serves the cache."""

    def __init__(self):
        self._cache: dict = {}

    def count(self, name: str, fn, *args) -> FlopCount:
        key = (name,) + _signature(args)
        if key not in self._cache:
            try:
                self._cache[key] = count(fn, *args)
            except FlopError as e:
                raise FlopError(f"{name}: {e}") from None
        return self._cache[key]

    def __len__(self):
        return len(self._cache)


def conventions() -> dict:
    """{primitive: convention} for every primitive the meter knows (for docs and tests)."""
    out = {n: "free (data movement, RNG bits, annotation)" for n in FREE}
    out.update({n: "1 per output element" for n in ELEMENTWISE})
    out.update({n: "1 per input element" for n in REDUCTIONS})
    out.update({n: "n (operand elements)" for n in CUMULATIVE})
    out.update({n: "1 per update element" for n in SCATTERS})
    out.update({n: "textbook count (docs/metering.md)" for n in LINALG})
    out.update({n: "1 per operand element per device" for n in COLLECTIVE_REDUCE})
    out.update({n: "body once" for n in CALLS})
    out.update({
        "dot_general": "2 x output elements x contracted size",
        "ragged_dot_general": "2 x output elements x contracted size",
        "conv_general_dilated": "2 x real multiply-adds (no padding, dilation or transposition zeros)",
        "fft": "5 N log2 N per transform (real: half)",
        "reduce_window": "window size x outputs", "reduce_window_sum": "window size x outputs",
        "reduce_window_max": "window size x outputs", "reduce_window_min": "window size x outputs",
        "select_and_scatter_add": "window size x windows", "select_and_scatter": "window size x windows",
        "select_and_gather_add": "window size x outputs", "reduce": "input elements x body",
        "sort": "n ceil(log2 n) per sorted row (x keys)", "top_k": "n max(1, ceil(log2 k)) per row",
        "approx_top_k": "n max(1, ceil(log2 k)) per row", "scan": "body x length",
        "cond": "most expensive branch", "pallas_call": "body x grid size",
        "shard_map": "body x mesh size", "custom_linear_solve": "the solve body once",
        "while": "refused (unknown trip count)",
    })
    return out
