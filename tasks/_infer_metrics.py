"""Metrics of the language inference tasks (arith-route, pcfg-specdec).

Routing curves (RouteLLM / RouterBench conventions): a curve is a list of
(call_rate, accuracy) points, one per sweep run. ``routing_curve`` anchors it
at (0, acc_edge) and (1, acc_cloud) when the sweep does not reach the ends and
returns
  auc   = trapezoid area under accuracy over call rate in [0, 1];
  apgr  = (auc - acc_edge) / (acc_cloud - acc_edge)   (random router: 0.5);
  cpt50, cpt80 = smallest call rate at which the piecewise-linear curve reaches
          acc_edge + x * (acc_cloud - acc_edge) (nan if it never does);
  aiq   = area under the non-decreasing upper convex hull of the points,
          extended flat to the largest cost, divided by that cost (RouterBench);
          the cost axis is the call rate unless ``costs`` are given.
"""
from __future__ import annotations

import math

import numpy as np


def routing_point(pred, y, sent, edge_correct, cloud_correct) -> dict:
    """Per-run metrics that need no other run. ``sent``: bool[N], any cloud call."""
    correct = np.asarray(pred) == np.asarray(y)
    acc = float(correct.mean())
    ae, ac = float(np.mean(edge_correct)), float(np.mean(cloud_correct))
    gap = ac - ae
    return {
        "accuracy": acc, "call_rate": float(np.mean(sent)),
        "acc_edge_ref": ae, "acc_cloud_ref": ac,
        "acc_oracle_ref": float(np.mean(np.asarray(edge_correct) | np.asarray(cloud_correct))),
        "gap_recovered": (acc - ae) / gap if abs(gap) > 1e-12 else float("nan"),
    }


def _curve(points, acc_edge, acc_cloud):
    pts = sorted((float(c), float(a)) for c, a in points)
    if not pts or pts[0][0] > 1e-9:
        pts.insert(0, (0.0, float(acc_edge)))
    if pts[-1][0] < 1 - 1e-9:
        pts.append((1.0, float(acc_cloud)))
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def _trapz(y, x):
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def cpt(points, acc_edge, acc_cloud, frac) -> float:
    """Call rate needed to recover ``frac`` of the edge->cloud gap (linear interpolation)."""
    c, a = _curve(points, acc_edge, acc_cloud)
    goal = acc_edge + frac * (acc_cloud - acc_edge)
    if a[0] >= goal:
        return float(c[0])
    for i in range(1, len(c)):
        if a[i] >= goal:
            t = (goal - a[i - 1]) / (a[i] - a[i - 1])
            return float(c[i - 1] + t * (c[i] - c[i - 1]))
    return float("nan")


def aiq(costs, accs) -> float:
    """RouterBench AIQ: area under the non-decreasing upper convex hull, over max cost."""
    pts = sorted(zip(np.asarray(costs, float), np.asarray(accs, float)))
    hull = []
    for p in pts:  # upper hull (monotone chain)
        while len(hull) >= 2 and ((hull[-1][0] - hull[-2][0]) * (p[1] - hull[-2][1])
                                  - (hull[-1][1] - hull[-2][1]) * (p[0] - hull[-2][0])) >= 0:
            hull.pop()
        hull.append(p)
    x = np.array([h[0] for h in hull])
    y = np.maximum.accumulate(np.array([h[1] for h in hull]))
    cmax = x[-1]
    if cmax <= 0:
        return float(y[-1])
    area = _trapz(y, x) + x[0] * y[0]  # flat to the left of the cheapest point
    return area / cmax


def routing_curve(points, acc_edge, acc_cloud, costs=None) -> dict:
    """APGR, CPT(50%), CPT(80%), AIQ and AUC of one method's (call_rate, accuracy) curve."""
    c, a = _curve(points, acc_edge, acc_cloud)
    auc = _trapz(a, c)
    gap = acc_cloud - acc_edge
    if costs is None:
        cost_axis, acc_axis = c, a
    else:
        cost_axis, acc_axis = np.asarray(costs, float), np.asarray([p[1] for p in points], float)
    return {
        "auc": auc,
        "apgr": (auc - acc_edge) / gap if abs(gap) > 1e-12 else float("nan"),
        "cpt50": cpt(points, acc_edge, acc_cloud, 0.5),
        "cpt80": cpt(points, acc_edge, acc_cloud, 0.8),
        "aiq": aiq(cost_axis, acc_axis),
    }


def leviathan_mat(alpha: float, gamma: int) -> float:
    """Expected tokens committed per target pass with i.i.d. acceptance alpha."""
    if abs(1 - alpha) < 1e-12:
        return float(gamma + 1)
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


def finite(d: dict) -> dict:
    """Drops non-finite values (final.json metrics must be numbers)."""
    return {k: float(v) for k, v in d.items() if v is not None and math.isfinite(float(v))}
