"""Pareto fronts: lower cost and a better metric dominate."""
from __future__ import annotations


def dominates(a, b, higher_is_better: bool = True) -> bool:
    """a = (costs tuple, value) dominates b: no worse everywhere, better somewhere."""
    (ca, va), (cb, vb) = a, b
    sign = 1 if higher_is_better else -1
    no_worse = all(x <= y for x, y in zip(ca, cb)) and sign * va >= sign * vb
    better = any(x < y for x, y in zip(ca, cb)) or sign * va > sign * vb
    return no_worse and better


def pareto_front(points, higher_is_better: bool = True) -> list[int]:
    """Indices of the non-dominated points, by increasing first cost.

    ``points``: sequence of (cost, value), cost a number or a tuple of numbers.
    Identical points are all kept (neither dominates the other).
    """
    pts = [((c,) if not isinstance(c, (tuple, list)) else tuple(c), v) for c, v in points]
    keep = [i for i, p in enumerate(pts)
            if not any(dominates(q, p, higher_is_better) for j, q in enumerate(pts) if j != i)]
    return sorted(keep, key=lambda i: (pts[i][0], i))
