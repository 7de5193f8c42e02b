"""Intervals over seeds (scipy.stats): Student-t for means, Wilson for success rates."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats


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
    return m, float(stats.t.ppf((1 + level) / 2, n - 1)) * s / math.sqrt(n), n


def wilson(successes: int, trials: int, level: float = 0.95):
    """(low, high) Wilson score interval of a success rate (None for no trials)."""
    if trials <= 0:
        return None
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(level, method="wilson")
    return float(ci.low), float(ci.high)
