"""The cost-aware score of a method on a task (JAX-free).

Each task has a *score spec* (``spec_for``): its quality metric, its headline
cost axis, its edge and cloud references and its budget range. A method's
score is the mean, over a fixed log-spaced grid of budgets on that axis, of the
edge->cloud gap it recovers within each budget:

    recovered(b) = (q(b) - q_edge) / (q_cloud - q_edge)

where q(b) is the test quality of the operating point selected, among the
method's points whose cost is <= b, by its *validation* quality (ties: lower
cost, then label). A budget below every point counts as q_edge (0 recovered).
Scores may exceed 1 (a method beats the cloud) or fall below 0 (its cheapest
affordable point is worse than the edge alone). This is RouteLLM's APGR /
RouterBench's AIQ, on each task's own cost axis.

The grid. ``budgets = anchor * logspace(log10(lo), log10(hi), points)``, where
``anchor`` is the cloud reference's cost on the axis (default lo=1%, hi=100%,
20 points). It must be fixed per task version, so it never depends on the
*other* methods in a results folder: the anchor is read from the cloud
reference's runs only, and costs are exact metered counts of a program that is
deterministic given the task version and seed (latency is modelled from those
counts, also exactly). The anchor is the median over the reference's seeds;
``anchor_spread`` records its relative range (0 on every task today), and the
board shows it when it is not 0. Adding a method to a results folder therefore
never changes another method's score (tests/test_score.py checks it).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import math
from typing import Optional

import numpy as np

AXES = {
    "bytes": "bytes up + down per run (B)",
    "cloud_flops": "cloud FLOPs per run (FLOP)",
    "edge_flops": "edge FLOPs per run (FLOP)",
    "cloud_work": "cloud work per run (solver nodes, or cloud FLOPs for a learned cloud)",
    "latency": "modelled latency per example at the headline profile (s)",
    "setup_bytes_down": "setup bytes down per run (e.g. the edge model shipped once) (B)",
}
REL_TOL = 1e-9      # a cost equal to a budget up to float rounding is within it


@dataclasses.dataclass(frozen=True)
class ScoreSpec:
    axis: str = "bytes"                 # a key of AXES, or "metric:<key>" (a cost the task reports)
    quality: Optional[str] = None       # a metric key; None: the task's primary metric
    higher_is_better: Optional[bool] = None   # None: the task's (only read when quality is None)
    edge_ref: tuple = ("edge-only",)    # reference kinds (or method names) that give q_edge ...
    cloud_ref: tuple = ("cloud-only",)  # ... and q_cloud and the anchor
    lo: float = 0.01                    # lowest budget, as a fraction of the anchor
    hi: float = 1.0                     # highest budget
    points: int = 20

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


_TRAIN = ScoreSpec(axis="bytes", edge_ref=("local",), cloud_ref=("centralized",), lo=0.01, hi=10.0)
# Task name patterns (fnmatch) -> spec; the first match wins, then the track's default.
# Training: uploading all the data (centralized) is the cloud reference and federated
# methods usually send more than the data, so the grid runs to 10x its bytes.
SPECS = (
    ("infer/arith-route*", ScoreSpec(axis="cloud_flops", quality="accuracy", higher_is_better=True)),
    ("infer/shapes-exit*", ScoreSpec(axis="cloud_flops", quality="accuracy", higher_is_better=True)),
    ("infer/shapes-split*", ScoreSpec(axis="latency", quality="accuracy", higher_is_better=True)),
    ("infer/pcfg-specdec*", ScoreSpec(axis="latency", quality="token_match_greedy", higher_is_better=True)),
    # planning v3: every cloud planner is metered JAX code, so cloud FLOPs are the cloud's work
    ("plan/*", ScoreSpec(axis="cloud_flops", quality="success", higher_is_better=True)),
    ("compress/*", ScoreSpec(axis="setup_bytes_down", quality="accuracy", higher_is_better=True)),
    # PEFT: how much of full federated fine-tuning's gain over local training a method keeps, per byte
    ("adapt/*", ScoreSpec(axis="bytes", edge_ref=("local",), cloud_ref=("fedavg-full",))),
    ("train/*", _TRAIN),
)
TRACK_DEFAULT = {"train": _TRAIN, "infer": ScoreSpec(axis="cloud_flops"), "plan": ScoreSpec(axis="cloud_flops")}


def spec_for(task: str, track: str) -> ScoreSpec:
    for pat, spec in SPECS:
        if fnmatch.fnmatch(task, pat):
            return spec
    return TRACK_DEFAULT.get(track, ScoreSpec())


def axis_cost(final: dict, axis: str) -> Optional[float]:
    """One run's cost on ``axis`` (None if the run does not report it)."""
    c = final.get("costs") or {}
    if axis == "bytes":
        return float(c["bytes_up"] + c["bytes_down"]) if "bytes_up" in c and "bytes_down" in c else None
    if axis == "cloud_work":
        axis = "cloud_nodes" if final.get("cloud_kind") == "solver" else "cloud_flops"
    if axis in ("cloud_flops", "edge_flops", "cloud_nodes"):
        return None if c.get(axis) is None else float(c[axis])
    if axis == "latency":
        v = (final.get("derived") or {}).get(final.get("headline_profile") or "", {})
        v = v.get("latency_mean_s") if isinstance(v, dict) else None
        return None if v is None else float(v)
    if axis in c:
        return float(c[axis])
    if axis.startswith("metric:"):
        v = (final.get("metrics") or {}).get(axis[7:])
        return None if v is None else float(v)
    raise ValueError(f"unknown cost axis '{axis}'; use one of {', '.join(AXES)} or metric:<key>")


def budgets(anchor: float, spec: ScoreSpec) -> np.ndarray:
    if spec.points == 1:
        return np.array([anchor * spec.hi])
    return anchor * np.logspace(math.log10(spec.lo), math.log10(spec.hi), spec.points)


def select(points, budget: float, higher: bool):
    """The point picked within ``budget``: best validation quality, then lower cost,
    then label. ``points``: dicts with cost, val, label. None if none fits."""
    ok = [p for p in points if p["cost"] is not None and p["cost"] <= budget * (1 + REL_TOL)]
    if not ok:
        return None
    sign = -1 if higher else 1
    return min(ok, key=lambda p: (sign * p["val"], p["cost"], p["label"]))


def score_points(points, q_edge: float, q_cloud: float, grid, higher: bool) -> dict:
    """{score, recovered[B], picks[B] (labels), cost}: the score of one method's
    ``points`` (dicts with cost, val, test, label) on ``grid``. ``cost``: the cost
    of the point picked at the highest budget (the ranking's tie-break)."""
    gap = q_cloud - q_edge
    rec, picks = [], []
    for b in grid:
        p = select(points, float(b), higher)
        picks.append(None if p is None else p["label"])
        rec.append(0.0 if p is None else (p["test"] - q_edge) / gap)
    top = select(points, float(grid[-1]), higher) if len(grid) else None
    return {"score": float(np.mean(rec)) if rec else None, "recovered": rec, "picks": picks,
            "cost": None if top is None else top["cost"]}


def coincides(p: dict, ref: dict) -> bool:
    """A point is a reference under another name: the same cost (1%) and test quality."""
    if p["cost"] is None or ref["cost"] is None:
        return False
    scale = max(abs(ref["cost"]), 1e-30)
    tol_q = max(ref.get("ci") or 0.0, 1e-9)
    return abs(p["cost"] - ref["cost"]) <= 0.01 * scale and abs(p["test"] - ref["test"]) <= tol_q


def rank_key(m: dict):
    """Score (higher first), then cost, then name."""
    s = m.get("score")
    c = m.get("cost")
    return (-s if s is not None else math.inf, c if c is not None else math.inf, m["method"])
