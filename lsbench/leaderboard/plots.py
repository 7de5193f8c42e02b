"""Figures (matplotlib, Agg): quality vs each of a task's cost axes, and
performance profiles. Frontiers are steps (the quality a budget buys), ticks
carry SI prefixes, legends sit outside the data, constant axes are not drawn."""
from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import EngFormatter, MaxNLocator  # noqa: E402

from lsbench.leaderboard import scoring  # noqa: E402

# axis -> (row key, label, SI unit)
AXES = {"bytes": ("bytes", "bytes up + down per run", "B"),
        "cloud_flops": ("cloud_flops", "cloud FLOPs per run", "FLOP"),
        "edge_flops": ("edge_flops", "edge FLOPs per run", "FLOP"),
        "cloud_nodes": ("cloud_nodes", "cloud solver nodes per run", ""),
        "latency": ("latency_mean_s", "modelled latency per example", "s"),
        "setup_bytes_down": ("setup_bytes_down", "setup bytes down per run", "B")}


def headline_key(score_axis: str, info) -> str:
    if score_axis == "cloud_work":
        return "cloud_nodes" if info.get("cloud_kind") == "solver" else "cloud_flops"
    return score_axis


def axes_for(task) -> list[str]:
    """The headline axis first, then every other axis that varies across the task's points."""
    info, rows = task["info"], task["rows"]
    head = headline_key(task["score"]["axis"], info)
    out = [head] if head in AXES else []
    for a, (key, _, _) in AXES.items():
        vals = {r.get(key) for r in rows if r.get(key) is not None and r["quality"] is not None}
        if a not in out and len(vals) > 1:
            out.append(a)
    return out


def _scale(ax, vals):
    """Log scale when positive costs span two decades or more (symlog if zeros)."""
    pos = [v for v in vals if v and v > 0]
    if len(pos) < 2 or max(pos) / min(pos) < 100:
        return
    if any(v == 0 for v in vals):
        lo = math.floor(math.log10(min(pos)))
        ax.set_xscale("symlog", linthresh=10 ** lo, linscale=0.4)
        step = max(1, (math.ceil(math.log10(max(pos))) - lo) // 6)   # at most ~7 labelled decades
        ax.set_xticks([0] + [10.0 ** e for e in range(lo, math.ceil(math.log10(max(pos))) + 1, step)])
    else:
        ax.set_xscale("log")


def _save(fig, base) -> list[str]:
    os.makedirs(os.path.dirname(base), exist_ok=True)
    paths = [base + ".png", base + ".svg"]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def frontier(pts, higher: bool):
    """Step vertices (cost, quality) of the quality each budget buys when the point is
    selected on validation: one vertex per cost at which the selection changes."""
    xs, ys, last = [], [], None
    for c in sorted({p["cost"] for p in pts}):
        p = scoring.select(pts, c, higher)
        if p is not None and p["label"] != last:
            xs.append(c)
            ys.append(p["test"])
            last = p["label"]
    return xs, ys


def quality_vs_cost(task, axis: str, base: str) -> list[str]:
    """The score's quality metric against one cost axis: each method's points (95%
    intervals) and its validation-selected frontier as a step; references as stars."""
    info, sc = task["info"], task["score"]
    key, label, unit = AXES[axis]
    rows = [r for r in task["rows"] if r["quality"] is not None and r.get(key) is not None]
    use_val = sc["selected_on"] == "validation"
    higher = info["quality_higher"]
    fig, ax = plt.subplots(figsize=(7.6, 4.2))
    cmap = plt.get_cmap("tab10")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    xmax = max((r[key] for r in rows), default=1.0)
    for i, m in enumerate(methods):
        pts = sorted((r for r in rows if r["method"] == m), key=lambda r: r[key])
        ref = pts[0]["reference"]
        col = cmap(i % 10)
        err = [[r["quality"] - (r["quality_lo"] if r["quality_lo"] is not None else r["quality"]) for r in pts],
               [(r["quality_hi"] if r["quality_hi"] is not None else r["quality"]) - r["quality"] for r in pts]]
        ax.errorbar([r[key] for r in pts], [r["quality"] for r in pts], yerr=err, color=col, linestyle="none",
                    marker="*" if ref else "o", markersize=12 if ref else 5, capsize=2,
                    label=f"{m} (reference)" if ref else m)
        if not ref and len(pts) > 1:
            xs, ys = frontier([{"cost": r[key], "test": r["quality"], "val": r["val"] if use_val else r["quality"],
                                "label": r["sweep_point"]} for r in pts], higher)
            ax.step(xs + [xmax], ys + ys[-1:], where="post", color=col, linewidth=1.2, alpha=0.8)
    grid = sc["grid"] if axis == headline_key(sc["axis"], info) else []
    if grid:
        ax.axvspan(grid[0], grid[-1], color="0.85", alpha=0.35, lw=0,
                   label=f"score's budget range ({len(grid)} budgets)")
    _scale(ax, [r[key] for r in rows] + ([grid[0], grid[-1]] if grid else []))
    if ax.get_xscale() == "linear":
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.xaxis.set_major_formatter(EngFormatter(unit=unit, places=None, sep=" "))
    ax.set_xlabel(f"{label} ({unit})" if unit else label)
    arrow = "higher is better" if higher else "lower is better"
    ax.set_ylabel(f"{info['quality']} ({arrow})")
    ax.set_title(f"{info['task']} v{info['task_version']}: {info['quality']} vs {label}", fontsize=9)
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.text(0.5, 0.5, "no completed runs", ha="center", transform=ax.transAxes)
    return _save(fig, base)


def perf_profile_plot(prof, track: str, axis: str, base: str) -> list[str]:
    fig, ax = plt.subplots(figsize=(7.6, 4.2))
    for i, m in enumerate(prof["methods"]):
        ax.step(prof["tau"], prof["rho"][i], where="post", label=f"{m} (score {prof['score'][i]:.3f})")
    ax.set_xlim(1, prof["r_max"])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"τ: ratio to the best {AXES[axis][1].split(' per')[0]} to reach the target")
    ax.set_ylabel("fraction of tasks within τ of the best")
    ax.set_title(f"{track} track: performance profile over {len(prof['tasks'])} task(s)", fontsize=9)
    ax.grid(alpha=0.3)
    if prof["methods"]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _save(fig, base)
