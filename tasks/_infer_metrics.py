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

Three models (edge, mid at an edge server, cloud: ``infer/arith-route3``).
A call rate no longer measures cost (a mid call costs less than a cloud call,
a cascade may pay both), so the cost axis is the **normalised remote cost**
of a query, from the harness's own meter:
  cost_i = (cloud-side matmul FLOPs billed to query i) / F_cloud,
where F_cloud is one forward pass of the cloud model over a query (cloud-only
costs 1, a mid-only router F_mid / F_cloud, a cascade through mid to the
cloud 1 + F_mid / F_cloud); a run's ``cost`` is the mean over queries. With
two models and a router that calls the cloud once per sent query, cost equals
the call rate, so the definitions below reduce to the two-model ones.
``routing3_curve`` takes one (cost, accuracy) point per sweep run, anchors
(0, acc_edge) and (1, acc_cloud) as above, and returns
  apgr3 = (integral over c in [0, 1] of A(c) - acc_edge) / (acc_cloud - acc_edge),
          A the piecewise-linear curve through the points, cut at c = 1
          (random routing between edge and cloud alone: 0.5; random routing
          over three models: the area under the hull of the three models'
          (cost, accuracy) points, above 0.5 when the mid model is efficient);
  cpt50_3, cpt80_3 = smallest normalised cost at which A reaches acc_edge + x gap
          (the curve may go beyond 1);
  aiq3  = AIQ with the normalised cost as the cost axis.
Per run, ``routing3_point`` also reports each model's accuracy alone, the
oracle's (the cheapest model that is right: acc_oracle_ref, cost_oracle_ref)
and ``cost_mid_ref`` = F_mid / F_cloud.
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


def routing3_point(pred, y, log, qflops, correct) -> dict:
    """Per-run metrics of a three-model routing run (see the module docstring).
    ``qflops``: matmul FLOPs of one query's forward pass per model; ``correct``:
    per-example correctness of each model alone (edge, mid, cloud)."""
    ok = np.asarray(pred) == np.asarray(y)
    fc = float(qflops["cloud"])
    cost = np.asarray(log["cloud_flops"]).sum(0) / fc
    ce, cm, cc = (np.asarray(correct[r], bool) for r in ("edge", "mid", "cloud"))
    ae, am, ac = float(ce.mean()), float(cm.mean()), float(cc.mean())
    r_mid = qflops["mid"] / fc
    oracle_cost = np.where(ce, 0.0, np.where(cm, r_mid, np.where(cc, 1.0, 0.0)))
    gap = ac - ae
    return {
        "accuracy": float(ok.mean()), "cost": float(cost.mean()),
        "call_rate": float(np.asarray(log["sent"]).any(0).mean()),
        "acc_edge_ref": ae, "acc_mid_ref": am, "acc_cloud_ref": ac,
        "acc_oracle_ref": float((ce | cm | cc).mean()), "cost_oracle_ref": float(oracle_cost.mean()),
        "cost_mid_ref": float(r_mid),
        "gap_recovered": (float(ok.mean()) - ae) / gap if abs(gap) > 1e-12 else float("nan"),
    }


def routing3_curve(points, acc_edge, acc_cloud) -> dict:
    """APGR, CPT(50/80%) and AIQ of a three-model curve of (normalised cost, accuracy) points."""
    c, a = _curve(points, acc_edge, acc_cloud)
    if c[-1] > 1:  # cut at c = 1 for the area
        i = int(np.searchsorted(c, 1.0))
        a1 = a[i - 1] + (a[i] - a[i - 1]) * (1.0 - c[i - 1]) / (c[i] - c[i - 1]) if c[i] > 1 else a[i]
        cc, aa = np.append(c[:i], 1.0), np.append(a[:i], a1)
    else:
        cc, aa = c, a
    gap = acc_cloud - acc_edge
    auc = _trapz(aa, cc)
    return {"auc3": auc, "apgr3": (auc - acc_edge) / gap if abs(gap) > 1e-12 else float("nan"),
            "cpt50_3": cpt(points, acc_edge, acc_cloud, 0.5), "cpt80_3": cpt(points, acc_edge, acc_cloud, 0.8),
            "aiq3": aiq([p[0] for p in points], [p[1] for p in points])}


def leviathan_mat(alpha: float, gamma: int) -> float:
    """Expected tokens committed per target pass with i.i.d. acceptance alpha."""
    if abs(1 - alpha) < 1e-12:
        return float(gamma + 1)
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


def finite(d: dict) -> dict:
    """Drops non-finite values (final.json metrics must be numbers)."""
    return {k: float(v) for k, v in d.items() if v is not None and math.isfinite(float(v))}
