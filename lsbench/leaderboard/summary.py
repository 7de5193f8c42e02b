"""Per-task rows (one per method and sweep point), the cost-aware score and
ranking (one row per method, its points beneath), track summaries and
per-track cost-to-target."""
from __future__ import annotations

import math

import numpy as np

from lsbench.leaderboard import scoring
from lsbench.leaderboard.load import group
from lsbench.leaderboard.stats import mean_ci, wilson

COST_AXES = ("bytes", "edge_flops", "cloud_flops")   # cost-to-target axes
RATE_METRICS = ("success",)   # success rates over episodes: Wilson intervals


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
    spec = scoring.spec_for(f["task"], f["track"])
    return {"task": f["task"], "track": f["track"], "task_version": f["task_version"],
            "primary_metric": f["primary_metric"], "higher_is_better": f["higher_is_better"],
            "target": f.get("target"), "headline_profile": f.get("headline_profile"),
            "cloud_kind": next((r.final["cloud_kind"] for r in runs if "cloud_kind" in r.final), None),
            "score_spec": spec.as_dict(),
            "quality": spec.quality or f["primary_metric"],
            "quality_higher": spec.higher_is_better if spec.quality else f["higher_is_better"]}


def unranked_reason(final: dict):
    """Why a run is shown but never ranked (None if it may be ranked)."""
    if final.get("scrambled"):
        return "leak test"
    if final["status"] == "over_budget":
        return "over budget"
    if final.get("stopped_early"):
        return "partial (--max_units)"
    return None


def _interval(info, done):
    """(mean, lo, hi, half-width or None, kind) of the score's quality metric over seeds."""
    q = info["quality"]
    vals = [r.final["metrics"].get(q) for r in done]
    mean, hw, n = mean_ci(vals)
    if mean is None:
        return None, None, None, None, None
    if q in RATE_METRICS and all(r.final.get("unit") == "episode" and r.final.get("units") for r in done):
        k = sum(round(r.final["metrics"][q] * r.final["units"]) for r in done if r.final["metrics"].get(q) is not None)
        n_ep = sum(r.final["units"] for r in done if r.final["metrics"].get(q) is not None)
        lo, hi = wilson(k, n_ep)
        return mean, lo, hi, None, f"Wilson over {n_ep} episodes"
    if hw is None:
        return mean, None, None, None, None
    return mean, mean - hw, mean + hw, hw, "Student-t over seeds"


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
    axis = info["score_spec"]["axis"]
    qm, qlo, qhi, qhw, qkind = _interval(info, done)
    vals = [(r.final.get("validation") or {}).get(info["quality"]) for r in done]
    cost_vals = [scoring.axis_cost(r.final, axis) for r in done]
    cost_vals = [c for c in cost_vals if c is not None]
    row = {
        "task": info["task"], "method": method, "sweep_point": point,
        "reference": runs[0].final.get("reference"), "hparams": runs[0].final.get("hparams", {}),
        "unranked": unranked,
        "seeds": n, "runs": len(runs),
        "stopped_early": sum(bool(r.final.get("stopped_early")) for r in runs),
        "not_completed": sorted({r.final["status"] for r in runs} - {"completed"}),
        "mean": mean, "ci95": ci,
        "quality": qm, "quality_lo": qlo, "quality_hi": qhi, "quality_ci95": qhw, "quality_ci": qkind,
        "val": None if not vals or any(v is None for v in vals) else float(np.mean(vals)),
        "cost": float(np.median(cost_vals)) if cost_vals else None,
        "cost_spread": (max(cost_vals) - min(cost_vals)) / max(abs(float(np.median(cost_vals))), 1e-30)
        if cost_vals else None,
        "bytes_up": costs("bytes_up"), "bytes_down": costs("bytes_down"),
        "edge_flops": costs("edge_flops"), "cloud_flops": costs("cloud_flops"),
        "cloud_nodes": costs("cloud_nodes"), "setup_bytes_down": costs("setup_bytes_down"),
        "latency_mean_s": lat("latency_mean_s"), "latency_p95_s": lat("latency_p95_s"),
        "edge_energy_j": lat("edge_energy_j"),
        "wall_s": _mean([r.final["wall_s"] for r in use]),
        "reached": sum(bool((r.final.get("cost_to_target") or {}).get("reached")) for r in done),
        "to_target": {a: _to_target(runs, a) for a in COST_AXES},
        "metrics": {k: _mean([r.final["metrics"].get(k) for r in done])
                    for k in sorted({k for r in done for k in r.final["metrics"]})},
        "coincides": None,
    }
    bu, bd = row["bytes_up"], row["bytes_down"]
    row["bytes"] = None if bu is None or bd is None else bu + bd
    return row


def sort_rows(rows, higher_is_better: bool):
    """Points by method rank (set by ``score_task``), then by cost; the primary
    metric orders methods without a score. ``rank`` is the method's rank."""
    sign = -1 if higher_is_better else 1
    return sorted(rows, key=lambda r: (
        r.get("rank") is None, r.get("rank") or 0, r["mean"] is None, r["reference"] is not None,
        sign * (r["mean"] or 0.0) if r.get("rank") is None else 0.0, r["method"],
        r["cost"] if r["cost"] is not None else math.inf, r["sweep_point"]))


def _pt(r, use_val: bool) -> dict:
    return {"cost": r["cost"], "test": r["quality"], "val": r["val"] if use_val else r["quality"],
            "label": r["sweep_point"], "ci": r["quality_ci95"]}


def _ref_point(rows, kinds, use_val, higher):
    """The reference's point (its sweep selected on validation, like any method); a
    reference over an edge budget (e.g. the fp32 cloud model on the edge) still counts."""
    pts = [_pt(r, use_val) for r in rows if (r["reference"] in kinds or r["method"] in kinds)
           and r["quality"] is not None and r["cost"] is not None and r.get("unranked") in (None, "over budget")]
    return scoring.select(pts, math.inf, higher)


def score_task(info, rows) -> dict:
    """Scores every method of a task and ranks them; sets each row's ``rank`` and
    ``coincides``. Returns the task's ``score`` block (grid, references, methods)."""
    spec = scoring.ScoreSpec(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in info["score_spec"].items()})
    higher = info["quality_higher"]
    usable = [r for r in rows if r["quality"] is not None and r["cost"] is not None and not r.get("unranked")]
    use_val = bool(usable) and all(r["val"] is not None for r in usable)
    refs = [r for r in rows if r["quality"] is not None and r["cost"] is not None and r["reference"] is not None
            and r.get("unranked") == "over budget" and (r["val"] is not None or not use_val)]
    out = {"axis": spec.axis, "quality": info["quality"], "higher_is_better": higher,
           "selected_on": "validation" if use_val else "test (no validation split in these results)",
           "lo": spec.lo, "hi": spec.hi, "points": spec.points, "edge_ref": list(spec.edge_ref),
           "cloud_ref": list(spec.cloud_ref), "anchor": None, "anchor_spread": None, "grid": [],
           "q_edge": None, "q_cloud": None, "methods": [], "note": None}
    edge = _ref_point(usable + refs, spec.edge_ref, use_val, higher)
    cloud = _ref_point(usable + refs, spec.cloud_ref, use_val, higher)
    for r in rows:
        r["rank"] = None
    if edge is None or cloud is None:
        missing = " and ".join("/".join(k) for k, p in ((spec.edge_ref, edge), (spec.cloud_ref, cloud)) if p is None)
        out["note"] = f"no score: the results hold no {missing} reference run"
    elif cloud["cost"] <= 0 or cloud["test"] == edge["test"]:
        out["note"] = ("no score: the cloud reference costs nothing on this axis" if cloud["cost"] <= 0
                       else "no score: edge and cloud references have the same quality (no gap)")
    if out["note"]:
        return out
    cloud_row = next(r for r in usable + refs if (r["reference"] in spec.cloud_ref or r["method"] in spec.cloud_ref)
                     and r["sweep_point"] == cloud["label"])
    grid = scoring.budgets(cloud["cost"], spec)
    out.update(anchor=cloud["cost"], anchor_spread=cloud_row["cost_spread"], grid=[float(b) for b in grid],
               q_edge=edge["test"], q_cloud=cloud["test"], edge_point=edge["label"], cloud_point=cloud["label"])
    by_method: dict = {}
    for r in usable:
        by_method.setdefault(r["method"], []).append(r)
        if r["reference"] is None:
            r["coincides"] = next((name for name, ref in ((spec.edge_ref[0], edge), (spec.cloud_ref[0], cloud))
                                   if scoring.coincides(_pt(r, use_val), ref)), None)
    methods = []
    for m, rs in by_method.items():
        s = scoring.score_points([_pt(r, use_val) for r in rs], edge["test"], cloud["test"], grid, higher)
        methods.append({"method": m, "reference": rs[0]["reference"], **s,
                        "points": [r["sweep_point"] for r in sorted(rs, key=lambda r: r["cost"])],
                        "coinciding": [r["sweep_point"] for r in rs if r["coincides"]],
                        "seeds_min": min(r["seeds"] for r in rs)})
    ranked = sorted((m for m in methods if m["reference"] is None), key=scoring.rank_key)
    refs = sorted((m for m in methods if m["reference"] is not None), key=scoring.rank_key)
    for i, m in enumerate(ranked, 1):
        m["rank"] = i
        for r in by_method[m["method"]]:
            r["rank"] = i
    for m in refs:
        m["rank"] = None
    out["methods"] = ranked + refs
    return out


def summarize(runs) -> dict:
    """{task: {"info", "rows", "score"}} for every task in ``runs``."""
    out = {}
    for task, by_point in group(runs).items():
        all_runs = [r for rs in by_point.values() for r in rs]
        info = task_info(all_runs)
        rows = [make_row(info, m, p, rs) for (m, p), rs in by_point.items()]
        sc = score_task(info, rows)
        out[task] = {"info": info, "rows": sort_rows(rows, info["higher_is_better"]), "score": sc}
    return out


def track_summary(board) -> dict:
    """{track: [{method, mean, tasks: {task: score}, n}]}: the mean score over the
    track's tasks a method has a score on (per-task scores kept), best first."""
    out: dict = {}
    for task, t in board.items():
        for m in t["score"]["methods"]:
            if m["reference"] is not None or m["score"] is None:
                continue
            d = out.setdefault(t["info"]["track"], {}).setdefault(m["method"], {})
            d[task] = m["score"]
    res = {}
    for track, per in out.items():
        n_tasks = sum(1 for t in board.values() if t["info"]["track"] == track and t["score"]["methods"])
        rows = [{"method": m, "mean": float(np.mean(list(s.values()))), "n": len(s), "of": n_tasks,
                 "tasks": s} for m, s in per.items()]
        res[track] = sorted(rows, key=lambda r: (-r["mean"], r["method"]))
    return res


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
