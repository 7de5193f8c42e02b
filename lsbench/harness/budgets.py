"""Edge budgets: what a task allows one edge device to hold and compute, and
their enforcement.

A task declares ``edge_budgets`` on its instance, any of:

- ``param_bytes``: bytes of the edge model's parameters one edge holds;
- ``state_bytes``: bytes of one edge's persistent state;
- ``flops_per_example``: edge matmul FLOPs per example (inference: per test
  example; training: per local training example; planning: per step).

Each track loop measures what it can as ``loop.edge_footprint(state) -> {key:
int}``. The runner checks the footprint after ``init_state`` and again at the
end of every unit; a run over any budget stops with status ``over_budget``,
keeps what it measured (metrics, costs, ``budget_margins``) and is shown on
the leaderboard, never ranked. A budget the loop cannot measure is reported
as unmeasured (``used: null``) and not enforced. This module imports no JAX.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from lsbench.errors import TaskError

KEYS = ("param_bytes", "state_bytes", "flops_per_example")
WHAT = {"param_bytes": "edge parameter bytes", "state_bytes": "edge state bytes",
        "flops_per_example": "edge FLOPs per example"}


def validate(edge_budgets: Optional[Mapping[str, Any]], where: str = "task") -> dict:
    """The budgets as {key: int}; a bad key or value is the task's error (one line)."""
    out = {}
    for k, v in dict(edge_budgets or {}).items():
        if k not in KEYS:
            raise TaskError(f"{where}: unknown edge budget '{k}'; use {', '.join(KEYS)}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or \
                (isinstance(v, float) and not math.isfinite(v)):
            raise TaskError(f"{where}: edge budget {k} must be a non-negative number, got {v!r}")
        out[k] = int(v)
    return out


def _used(footprint, k):
    v = (footprint or {}).get(k)
    return None if v is None else int(v)


def check(edge_budgets: Mapping[str, int], footprint: Mapping[str, int]) -> list:
    """One line per budget the footprint exceeds (empty: within budget)."""
    out = []
    for k, limit in validate(edge_budgets).items():
        used = _used(footprint, k)
        if used is not None and used > limit:
            out.append(f"{WHAT[k]} {used:,} exceed the task's budget of {limit:,} ({k})")
    return out


def margins(edge_budgets: Mapping[str, int], footprint: Mapping[str, int]) -> dict:
    """{key: {limit, used, margin, ok}} per declared budget (``lsbench check``
    prints them; final.json keeps them as ``budget_margins``). ``used``/``margin``
    are None where the loop does not measure that key."""
    out = {}
    for k, limit in validate(edge_budgets).items():
        used = _used(footprint, k)
        out[k] = {"limit": limit, "used": used, "margin": None if used is None else limit - used,
                  "ok": None if used is None else used <= limit}
    return out


def footprint(loop, state) -> dict:
    """The loop's edge footprint ({} where the loop does not measure one)."""
    fn = getattr(loop, "edge_footprint", None)
    if fn is None:
        return {}
    return {k: int(v) for k, v in dict(fn(state) or {}).items() if v is not None}


def tree_bytes(tree) -> int:
    """Bytes of the array leaves of a pytree (arrays or ShapeDtypeStructs)."""
    from lsbench.harness.trees import nbytes
    return nbytes(tree)
