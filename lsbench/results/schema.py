"""The results schema (``final.json`` and ``metrics.jsonl``) and its validator.

Imports no JAX: the leaderboard uses it. ``validate_final`` raises
:class:`SchemaError` with a one-line reason naming the file and the key.
"""
from __future__ import annotations

import json
import math
import os

SCHEMA = "lsbench.final/1"
BENCHMARK_VERSION = "1.0"
STATUSES = ("completed", "failed", "diverged", "over_budget")
TRACKS = ("train", "infer", "plan")
COST_KEYS = ("bytes_up", "bytes_down", "messages", "edge_flops", "cloud_flops")
# Optional integer costs (all-ops FLOPs, setup, edge<->edge, solver nodes).
EXTRA_COST_KEYS = ("edge_flops_all", "cloud_flops_all", "setup_bytes_up",
                   "setup_bytes_down", "setup_edge_flops", "setup_cloud_flops",
                   "peer_bytes", "cloud_nodes")

REQUIRED = {
    "schema": str, "benchmark_version": str, "status": str, "task": str,
    "task_version": str, "track": str, "method": str, "seed": int,
    "primary_metric": str, "higher_is_better": bool, "metrics": dict,
    "costs": dict, "derived": dict, "wall_s": (int, float),
}
# Optional keys and their types.
OPTIONAL = {
    "method_version": str, "reference": (str, type(None)), "hparams": dict,
    "sweep_point": (str, type(None)), "cost_to_target": dict,
    "headline_profile": str, "unit": str, "units": int, "cloud_kind": str,
    "error": str, "lsbench_version": str, "stopped_early": bool, "target": (int, float, type(None)),
    # raw counts the derived figures come from (lsbench.results.derive), the edge
    # budgets' margins and violations, and measured program wall times (never ranked)
    "derive_inputs": dict, "budget_margins": dict, "budget_violations": list, "measured": dict,
    # the same metrics on the task's validation split (selection reads these, never test)
    "validation": dict,
}


class SchemaError(ValueError):
    pass


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_final(d: dict, where: str = "final.json") -> dict:
    """Checks a parsed final.json; returns it or raises SchemaError."""
    if not isinstance(d, dict):
        raise SchemaError(f"{where}: top level is not a JSON object")
    for k, t in REQUIRED.items():
        if k not in d:
            raise SchemaError(f"{where}: missing required key '{k}'")
        if not isinstance(d[k], t) or (t is int and isinstance(d[k], bool)):
            raise SchemaError(f"{where}: key '{k}' has type {type(d[k]).__name__}")
    for k, t in OPTIONAL.items():
        if k in d and not isinstance(d[k], t):
            raise SchemaError(f"{where}: key '{k}' has type {type(d[k]).__name__}")
    if d["schema"] != SCHEMA:
        raise SchemaError(f"{where}: schema '{d['schema']}' is not '{SCHEMA}'")
    if d["status"] not in STATUSES:
        raise SchemaError(f"{where}: status '{d['status']}' not in {STATUSES}")
    if d["track"] not in TRACKS:
        raise SchemaError(f"{where}: track '{d['track']}' not in {TRACKS}")
    for k in COST_KEYS:
        v = d["costs"].get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise SchemaError(f"{where}: costs.{k} must be a non-negative integer")
    for k, v in d["costs"].items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise SchemaError(f"{where}: costs.{k} must be a non-negative integer")
    for k, v in d["metrics"].items():
        if v is not None and not _num(v):
            raise SchemaError(f"{where}: metrics.{k} is not a number")
    if d["status"] == "completed":
        pm = d["metrics"].get(d["primary_metric"])
        if pm is None or not math.isfinite(pm):
            raise SchemaError(f"{where}: primary metric '{d['primary_metric']}' "
                              "missing or not finite in a completed run")
    for prof, vals in d["derived"].items():
        if prof == "modelled":  # every derived figure is modelled from counts and profiles
            if vals is not True:
                raise SchemaError(f"{where}: derived.modelled must be true")
            continue
        if not isinstance(vals, dict) or not all(_num(v) for v in vals.values()):
            raise SchemaError(f"{where}: derived.{prof} must map names to numbers")
    return d


def load_final(path: str) -> dict:
    try:
        with open(path) as f:
            d = json.load(f)
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except OSError as e:
        raise SchemaError(f"{path}: cannot read ({e.strerror})") from None
    return validate_final(d, path)


def load_metrics(path: str) -> list[dict]:
    """Reads metrics.jsonl; every line must be a JSON object with an int 'step'."""
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                raise SchemaError(f"{path}: line {i} is not valid JSON (truncated file?)") from None
            if not isinstance(r, dict) or not isinstance(r.get("step"), int):
                raise SchemaError(f"{path}: line {i} lacks an integer 'step'")
            rows.append(r)
    return rows


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of final.json, from the tables above: the
    published leaderboard/schema/final.schema.json (tests keep the two equal)."""
    def typ(t):
        ts = t if isinstance(t, tuple) else (t,)
        names = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object",
                 list: "array", type(None): "null"}
        out = sorted({names[x] for x in ts})
        if "number" in out and "integer" in out:
            out.remove("integer")
        return {"type": out[0] if len(out) == 1 else out}
    count = {"type": "integer", "minimum": 0}
    props = {k: typ(t) for k, t in {**REQUIRED, **OPTIONAL}.items()}
    props["schema"] = {"const": SCHEMA}
    props["status"] = {"enum": list(STATUSES)}
    props["track"] = {"enum": list(TRACKS)}
    props["seed"] = {"type": "integer"}
    props["costs"] = {"type": "object", "required": list(COST_KEYS),
                      "properties": {k: count for k in COST_KEYS + EXTRA_COST_KEYS},
                      "additionalProperties": count}
    num_or_null = {"type": ["number", "null"]}
    props["metrics"] = {"type": "object", "additionalProperties": num_or_null}
    props["validation"] = {"type": "object", "additionalProperties": num_or_null}
    props["derived"] = {"type": "object", "properties": {"modelled": {"const": True}},
                        "additionalProperties": {"type": "object", "additionalProperties": {"type": "number"}}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://lsbench.invalid/schema/final.schema.json",
        "title": f"lsbench run result ({SCHEMA})",
        "description": "One run's final.json, as lsbench/results/schema.py validates it. A completed run "
                       "also has a finite number at metrics[primary_metric].",
        "type": "object", "required": list(REQUIRED), "properties": props, "additionalProperties": True,
    }
