"""AlgoPerf-style performance profiles over cost-to-target.

For each task t and method m with cost c[m, t] (inf when m never reached the
target): r[m, t] = c[m, t] / min_m c[m, t]. Where the best cost is 0, methods
that also cost 0 get r = 1 and the others r = inf. rho_m(tau) is the fraction
of tasks with r[m, t] <= tau. The score is the area under rho_m over
log10(tau) in [1, tau_max], normalised to [0, 1] (1: best on every task).
"""
from __future__ import annotations

import math

import numpy as np


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


def profile(costs: dict, tau_max: float | None = None, points: int = 200):
    """Returns {methods, tasks, ratios, tau, rho[M, P], score[M]}.

    tau runs log-spaced from 1 to tau_max (default: the largest finite ratio,
    at least 2); the score is the normalised area under rho over log10(tau).
    """
    methods, tasks, r = ratios(costs)
    finite = r[np.isfinite(r)]
    if tau_max is None:
        tau_max = max(2.0, float(finite.max()) * 1.05 if finite.size else 2.0)
    tau = np.logspace(0, math.log10(tau_max), points)
    nt = max(len(tasks), 1)
    rho = np.array([[(r[i] <= t).sum() / nt for t in tau] for i in range(len(methods))]).reshape(
        len(methods), points)
    x = np.log10(tau)
    span = x[-1] - x[0]
    score = (np.array([np.sum((rho[i, 1:] + rho[i, :-1]) / 2 * np.diff(x)) / span
                       for i in range(len(methods))]) if len(methods) else np.zeros(0))
    return {"methods": methods, "tasks": tasks, "ratios": r, "tau": tau, "rho": rho, "score": score}
