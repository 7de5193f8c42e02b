"""AlgoPerf-style performance profiles over cost-to-target.

For each task t and method m with cost c[m, t] (inf when m never reached the
target): r[m, t] = c[m, t] / min_m c[m, t]. Where the best cost is 0, methods
that also cost 0 get r = 1 and the others r = inf. rho_m(tau) is the fraction
of tasks with r[m, t] <= tau. The score is the area under rho_m over tau in
[1, R_MAX], integrated linearly (as AlgoPerf does) and divided by R_MAX - 1:
1 means best on every task; the range is fixed, so it does not depend on the
ratios in a results folder.
"""
from __future__ import annotations

import math

import numpy as np

R_MAX = 4.0


def ratios(costs: dict) -> tuple[list[str], list[str], np.ndarray]:
    """costs: {method: {task: cost or inf}} -> (methods, tasks, r[M, T])."""
    methods = sorted(costs)
    tasks = sorted({t for per in costs.values() for t in per})
    c = np.array([[float(costs[m].get(t, math.inf)) for t in tasks] for m in methods], float)
    r = np.full_like(c, math.inf)
    for j in range(len(tasks)):
        best = c[:, j].min() if len(methods) else math.inf
        if not math.isfinite(best):
            continue
        if best > 0:
            r[:, j] = c[:, j] / best
        else:
            r[:, j] = np.where(c[:, j] == 0, 1.0, math.inf)
    return methods, tasks, r


def profile(costs: dict, r_max: float = R_MAX, points: int = 301):
    """Returns {methods, tasks, ratios, tau, rho[M, P], score[M], r_max}.

    tau runs linearly from 1 to r_max; the score is the exact area under the
    step function rho over [1, r_max], divided by r_max - 1.
    """
    methods, tasks, r = ratios(costs)
    tau = np.linspace(1.0, r_max, points)
    nt = max(len(tasks), 1)
    rho = np.array([[(r[i] <= t).sum() / nt for t in tau] for i in range(len(methods))]).reshape(
        len(methods), points)
    # exact area of the step: each task within r_max contributes (r_max - max(r, 1)) / nt
    score = np.array([sum(max(r_max - max(x, 1.0), 0.0) for x in r[i] if math.isfinite(x)) / nt / (r_max - 1)
                      for i in range(len(methods))]) if len(methods) else np.zeros(0)
    return {"methods": methods, "tasks": tasks, "ratios": r, "tau": tau, "rho": rho, "score": score,
            "r_max": r_max}
