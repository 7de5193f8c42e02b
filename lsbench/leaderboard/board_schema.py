"""The JSON Schema of board.json (what `lsbench leaderboard` writes), published with
final.json's under leaderboard/schema/ (``build`` writes both beside the site)."""
from __future__ import annotations

import json
import os

from lsbench.results import schema as final_schema

NUM = {"type": ["number", "null"]}
STR = {"type": ["string", "null"]}
INT = {"type": "integer"}


def _obj(required, props, extra=True) -> dict:
    return {"type": "object", "required": list(required), "properties": props, "additionalProperties": extra}


def board_schema(board_schema_id: str) -> dict:
    info = _obj(("task", "track", "task_version", "primary_metric", "higher_is_better", "quality",
                 "quality_higher", "score_spec"),
                {"task": {"type": "string"}, "track": {"enum": list(final_schema.TRACKS)},
                 "task_version": {"type": "string"}, "primary_metric": {"type": "string"},
                 "higher_is_better": {"type": "boolean"}, "quality": {"type": "string"},
                 "quality_higher": {"type": "boolean"}, "target": NUM, "headline_profile": STR,
                 "cloud_kind": STR, "score_spec": {"type": "object"}})
    row = _obj(("method", "sweep_point", "reference", "rank", "seeds", "runs", "quality", "quality_lo",
                "quality_hi", "val", "cost", "mean", "ci95", "hparams", "metrics", "coincides"),
               {"method": {"type": "string"}, "sweep_point": {"type": "string"}, "reference": STR,
                "rank": {"type": ["integer", "null"], "minimum": 1}, "seeds": INT, "runs": INT,
                "quality": NUM, "quality_lo": NUM, "quality_hi": NUM, "quality_ci": STR, "val": NUM,
                "cost": NUM, "mean": NUM, "ci95": NUM, "hparams": {"type": "object"},
                "metrics": {"type": "object", "additionalProperties": NUM}, "coincides": STR,
                "unranked": STR})
    method = _obj(("method", "reference", "rank", "score", "cost", "points"),
                  {"method": {"type": "string"}, "reference": STR, "rank": {"type": ["integer", "null"]},
                   "score": NUM, "cost": NUM, "points": {"type": "array", "items": {"type": "string"}},
                   "recovered": {"type": "array", "items": {"type": "number"}},
                   "picks": {"type": "array", "items": STR},
                   "coinciding": {"type": "array", "items": {"type": "string"}}})
    score = _obj(("axis", "quality", "selected_on", "lo", "hi", "points", "anchor", "grid", "q_edge", "q_cloud",
                  "methods", "note"),
                 {"axis": {"type": "string"}, "quality": {"type": "string"}, "selected_on": {"type": "string"},
                  "lo": {"type": "number"}, "hi": {"type": "number"}, "points": INT, "anchor": NUM,
                  "anchor_spread": NUM, "grid": {"type": "array", "items": {"type": "number"}},
                  "q_edge": NUM, "q_cloud": NUM, "methods": {"type": "array", "items": method}, "note": STR})
    task = _obj(("info", "rows", "score"), {"info": info, "rows": {"type": "array", "items": row}, "score": score,
                                            "plots": {"type": "array", "items": {"type": "string"}}})
    track_row = _obj(("method", "mean", "n", "of", "tasks"),
                     {"method": {"type": "string"}, "mean": {"type": "number"}, "n": INT, "of": INT,
                      "tasks": {"type": "object", "additionalProperties": {"type": "number"}}})
    meta = _obj(("version", "command", "date", "provenance", "publish"),
                {"version": {"type": "string"}, "command": {"type": "string"}, "date": {"type": "string"},
                 "publish": {"type": "boolean"},
                 "provenance": _obj(("revisions", "dirty", "code_revisions", "allow_mixed"),
                                    {"revisions": {"type": "object", "additionalProperties": INT},
                                     "dirty": {"type": "array", "items": {"type": "string"}},
                                     "code_revisions": INT, "allow_mixed": {"type": "boolean"}})})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://lsbench.invalid/schema/board.schema.json",
        "title": f"lsbench leaderboard ({board_schema_id})",
        "description": "board.json: per task its score spec, budget grid, references, ranked methods (score, "
                       "rank, points) and operating points (quality with 95% interval, validation quality, "
                       "headline cost, all costs); per track the mean score; performance profiles; provenance.",
        **_obj(("schema", "meta", "tasks", "tracks", "profiles", "suite_failures"),
               {"schema": {"const": board_schema_id}, "meta": meta,
                "tasks": {"type": "object", "additionalProperties": task},
                "tracks": {"type": "object", "additionalProperties": {"type": "array", "items": track_row}},
                "profiles": {"type": "object"}, "suite_failures": {"type": "array"}}),
    }


def write(out_dir: str, board_schema_id: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, s in (("final.schema.json", final_schema.json_schema()), ("board.schema.json",
                                                                       board_schema(board_schema_id))):
        p = os.path.join(out_dir, name)
        with open(p, "w") as f:
            json.dump(s, f, indent=1, sort_keys=True)
            f.write("\n")
        paths.append(p)
    return paths
