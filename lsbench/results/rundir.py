"""A run directory: manifest.json, metrics.jsonl (append-only), final.json.

Writes are atomic (temp file + rename), so an interrupted run never leaves a
half-written JSON; metrics.jsonl is truncated back to the checkpointed step
on resume, so rows are never duplicated.
"""
from __future__ import annotations

import json
import math
import os
import tempfile

from lsbench.results import schema


def _clean(v):
    """JSON-safe: numpy scalars -> Python, NaN/Inf -> None."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_json(path: str, obj) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(_clean(obj), f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunDir:
    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.metrics_path = os.path.join(self.path, "metrics.jsonl")
        self.final_path = os.path.join(self.path, "final.json")
        self.manifest_path = os.path.join(self.path, "manifest.json")
        self.ckpt_path = os.path.join(self.path, "ckpt")

    def exists(self) -> bool:
        return os.path.isdir(self.path) and bool(os.listdir(self.path))

    def write_manifest(self, manifest: dict) -> None:
        write_json(self.manifest_path, manifest)

    def append_metrics(self, row: dict) -> None:
        os.makedirs(self.path, exist_ok=True)
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(_clean(row), sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def truncate_metrics(self, max_step: int) -> None:
        """Keeps only rows with step <= max_step (and drops a torn last line)."""
        if not os.path.exists(self.metrics_path):
            return
        keep = []
        with open(self.metrics_path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break
                if row.get("step", 0) <= max_step:
                    keep.append(line if line.endswith("\n") else line + "\n")
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            f.writelines(keep)
        os.replace(tmp, self.metrics_path)

    def read_metrics(self) -> list[dict]:
        return schema.load_metrics(self.metrics_path)

    def write_final(self, final: dict) -> None:
        final = _clean(final)
        schema.validate_final(final, self.final_path)
        write_json(self.final_path, final)
