"""Mean and Student-t confidence intervals over seeds (no SciPy needed)."""
from __future__ import annotations

import math

import numpy as np


def t_pdf(x, df: float):
    c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return np.exp(c - (df + 1) / 2 * np.log1p(np.asarray(x, float) ** 2 / df))


def t_cdf(t: float, df: float) -> float:
    """Student-t CDF by Simpson integration of the density from 0 to |t|."""
    a = abs(t)
    if a == 0:
        return 0.5
    # Integrate in u = atan(x) to tame the heavy tails: dx = (1 + x^2) du.
    n = 4000
    u = np.linspace(0.0, math.atan(a), n + 1)
    x = np.tan(u)
    f = t_pdf(x, df) * (1 + x * x)
    h = u[1] - u[0]
    area = h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
    return 0.5 + math.copysign(float(area), t)


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with df degrees of freedom (bisection)."""
    if not 0 < p < 1:
        raise ValueError(f"quantile level {p} must lie in (0, 1)")
    if p == 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    target = max(p, 1 - p)
    while t_cdf(hi, df) < target:
        hi *= 2
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < target else (lo, mid)
    q = (lo + hi) / 2
    return q if p > 0.5 else -q


def mean_ci(values, level: float = 0.95):
    """(mean, half-width, n) of ``values``; half-width is None for n < 2.

    half-width = t_{(1+level)/2, n-1} * s / sqrt(n), s the sample std (ddof=1).
    """
    v = np.asarray([x for x in values if x is not None], float)
    n = len(v)
    if n == 0:
        return None, None, 0
    m = float(v.mean())
    if n < 2:
        return m, None, n
    s = float(v.std(ddof=1))
    return m, t_quantile((1 + level) / 2, n - 1) * s / math.sqrt(n), n
