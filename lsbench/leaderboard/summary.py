"""Per-task rows (one per method and sweep point) and per-track cost-to-target."""
from __future__ import annotations

import math

import numpy as np

from lsbench.leaderboard.load import group
from lsbench.leaderboard.stats import mean_ci

COST_AXES = ("bytes", "edge_flops", "cloud_flops")   # cost-to-target axes


def _mean(vals):
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def _to_target(runs, axis):
    """Median over seeds of the cost to reach the target (inf if missed)."""
    vals = []
    for r in runs:
        c = r.final.get("cost_to_target") or {}
        v = c.get(axis) if c.get("reached") else None
        vals.append(math.inf if v is None or r.final["status"] != "completed" else float(v))
    return float(np.median(vals)) if vals else math.inf


def task_info(runs) -> dict:
    f = runs[0].final
    return {"task": f["task"], "track": f["track"], "task_version": f["task_version"],
            "primary_metric": f["primary_metric"], "higher_is_better": f["higher_is_better"],
            "target": f.get("target"), "headline_profile": f.get("headline_profile"),
            "cloud_kind": next((r.final["cloud_kind"] for r in runs if "cloud_kind" in r.final), None)}


def unranked_reason(final: dict):
    """Why a run is shown but never ranked (None if it may be ranked)."""
    if final.get("scrambled"):
        return "leak test"
    if final["status"] == "over_budget":
        return "over budget"
    if final.get("stopped_early"):
        return "partial (--max_units)"
    return None


def make_row(info, method, point, runs) -> dict:
    full = [r for r in runs if r.final["status"] == "completed" and unranked_reason(r.final) is None]
    shown = [r for r in runs if r.final["status"] in ("completed", "over_budget")]
    done = full or shown
    use = done or runs
    pm = info["primary_metric"]
    mean, ci, n = mean_ci([r.final["metrics"].get(pm) for r in done])
    unranked = None if full else next((unranked_reason(r.final) for r in done
                                        if unranked_reason(r.final)), None)
    costs = lambda k: _mean([r.final["costs"].get(k) for r in use])  # noqa: E731
    prof = info["headline_profile"]
    lat = lambda k: _mean([r.final["derived"].get(prof, {}).get(k) for r in use])  # noqa: E731
    row = {
        "task": info["task"], "method": method, "sweep_point": point,
        "reference": runs[0].final.get("reference"), "hparams": runs[0].final.get("hparams", {}),
        "unranked": unranked,
        "seeds": n, "runs": len(runs),
        "stopped_early": sum(bool(r.final.get("stopped_early")) for r in runs),
        "not_completed": sorted({r.final["status"] for r in runs} - {"completed"}),
        "mean": mean, "ci95": ci,
        "bytes_up": costs("bytes_up"), "bytes_down": costs("bytes_down"),
        "edge_flops": costs("edge_flops"), "cloud_flops": costs("cloud_flops"),
        "cloud_nodes": costs("cloud_nodes"),
        "latency_mean_s": lat("latency_mean_s"), "latency_p95_s": lat("latency_p95_s"),
        "edge_energy_j": lat("edge_energy_j"),
        "wall_s": _mean([r.final["wall_s"] for r in use]),
        "reached": sum(bool((r.final.get("cost_to_target") or {}).get("reached")) for r in done),
        "to_target": {a: _to_target(runs, a) for a in COST_AXES},
        "metrics": {k: _mean([r.final["metrics"].get(k) for r in done])
                    for k in sorted({k for r in done for k in r.final["metrics"]})},
    }
    bu, bd = row["bytes_up"], row["bytes_down"]
    row["bytes"] = None if bu is None or bd is None else bu + bd
    return row


def sort_rows(rows, higher_is_better: bool):
    """Ranked rows by the primary metric, then references, then rows with no result."""
    sign = -1 if higher_is_better else 1
    ranked = sorted((r for r in rows if r["reference"] is None and r["mean"] is not None
                     and not r.get("unranked")),
                    key=lambda r: (sign * r["mean"], r["method"], r["sweep_point"]))
    refs = sorted((r for r in rows if (r["reference"] is not None or r.get("unranked"))
                   and r["mean"] is not None),
                  key=lambda r: (sign * r["mean"], r["method"]))
    rest = [r for r in rows if r["mean"] is None]
    for i, r in enumerate(ranked, 1):
        r["rank"] = i
    for r in refs + rest:
        r["rank"] = None
    return ranked + refs + rest


def summarize(runs) -> dict:
    """{task: {"info": ..., "rows": [...]}} for every task in ``runs``."""
    out = {}
    for task, by_point in group(runs).items():
        all_runs = [r for rs in by_point.values() for r in rs]
        info = task_info(all_runs)
        rows = [make_row(info, m, p, rs) for (m, p), rs in by_point.items()]
        out[task] = {"info": info, "rows": sort_rows(rows, info["higher_is_better"])}
    return out


def cost_to_target_by_track(board) -> dict:
    """{track: {axis: {method: {task: best cost over sweep points}}}}; references left out."""
    out: dict = {}
    for task, t in board.items():
        if t["info"]["target"] is None:
            continue
        for axis in COST_AXES:
            per = out.setdefault(t["info"]["track"], {}).setdefault(axis, {})
            for r in t["rows"]:
                if r["reference"] is not None:
                    continue
                d = per.setdefault(r["method"], {})
                d[task] = min(d.get(task, math.inf), r["to_target"][axis])
    for per_axis in out.values():   # every method appears on every task of its track
        for per in per_axis.values():
            tasks = {t for d in per.values() for t in d}
            for d in per.values():
                for t in tasks:
                    d.setdefault(t, math.inf)
    return out
