"""Figures (matplotlib, Agg): metric vs cost per task, and performance profiles."""
from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lsbench.leaderboard.pareto import pareto_front  # noqa: E402

AXES = {"bytes": "bytes up + down per run (B)", "edge_flops": "edge FLOPs per run (FLOP)",
        "cloud_flops": "cloud FLOPs per run (FLOP)"}


def _scale(ax, vals, which="x"):
    """Log scale when positive costs span two decades or more (symlog if zeros)."""
    pos = [v for v in vals if v and v > 0]
    if len(pos) < 2 or max(pos) / min(pos) < 100:
        return
    setter = ax.set_xscale if which == "x" else ax.set_yscale
    if any(v == 0 for v in vals):
        setter("symlog", linthresh=10 ** math.floor(math.log10(min(pos))))
    else:
        setter("log")


def _save(fig, base) -> list[str]:
    os.makedirs(os.path.dirname(base), exist_ok=True)
    paths = [base + ".png", base + ".svg"]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def metric_vs_cost(task, axis: str, base: str) -> list[str]:
    """Primary metric against one cost: a curve per method over its sweep points,
    references as stars (not ranked), and the Pareto front of the ranked points."""
    info, rows = task["info"], [r for r in task["rows"] if r["mean"] is not None and r[axis] is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cmap = plt.get_cmap("tab10")
    for i, m in enumerate(methods):
        pts = sorted((r for r in rows if r["method"] == m), key=lambda r: r[axis])
        x = [r[axis] for r in pts]
        y = [r["mean"] for r in pts]
        err = [r["ci95"] or 0.0 for r in pts]
        ref = pts[0]["reference"]
        ax.errorbar(x, y, yerr=err, color=cmap(i % 10), marker="*" if ref else "o",
                    markersize=11 if ref else 5, linestyle=":" if ref else "-", capsize=2,
                    label=f"{m} ({ref}, not ranked)" if ref else m)
    ranked = [r for r in rows if r["reference"] is None and not r.get("unranked")]
    front = pareto_front([(r[axis], r["mean"]) for r in ranked], info["higher_is_better"])
    if front:
        fx = [ranked[i][axis] for i in front]
        fy = [ranked[i]["mean"] for i in front]
        ax.step(fx, fy, where="post", color="black", linestyle="--", linewidth=1, label="Pareto front")
    _scale(ax, [r[axis] for r in rows])
    ax.set_xlabel(AXES[axis])
    arrow = "higher is better" if info["higher_is_better"] else "lower is better"
    ax.set_ylabel(f"{info['primary_metric']} ({arrow})")
    ax.set_title(f"{info['task']} v{info['task_version']}", fontsize=10)
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no completed runs", ha="center", transform=ax.transAxes)
    return _save(fig, base)


def perf_profile_plot(prof, track: str, axis: str, base: str) -> list[str]:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, m in enumerate(prof["methods"]):
        ax.step(prof["tau"], prof["rho"][i], where="post", label=f"{m} (score {prof['score'][i]:.3f})")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"τ: ratio to the best {AXES[axis].split(' per')[0]} to reach the target")
    ax.set_ylabel("fraction of tasks within τ of the best")
    ax.set_title(f"{track} track: performance profile over {len(prof['tasks'])} task(s)", fontsize=10)
    ax.grid(alpha=0.3)
    if prof["methods"]:
        ax.legend(fontsize=7, loc="lower right")
    return _save(fig, base)


