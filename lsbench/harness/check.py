"""``lsbench check``: validate a plugin on the smallest task of its track.

Checks the manifest and signatures (registry), that every function traces
under jit with the right shapes (preflight), that two runs with the same seed
give identical metrics, bytes and FLOPs, and that the run stays in budget;
then prints a cost summary.
"""
from __future__ import annotations

import json
import sys
import tempfile

from lsbench.harness.runner import RunConfig, UsageError, execute
from lsbench.registry import PluginError, list_tasks, load_method, load_task


def pick_task(method: str, track_hint=None):
    """The smallest task (tier 'small' first) on which ``method`` resolves."""
    tasks = sorted(list_tasks().values(), key=lambda s: (s.tier != "small", s.name))
    errors = []
    for spec in tasks:
        if track_hint and spec.track != track_hint:
            continue
        try:
            load_method(method, spec)
            return spec
        except PluginError as e:
            errors.append(str(e))
    raise UsageError(f"no installed task fits method '{method}'"
                     + (f" ({errors[0]})" if errors else "") + "; pass --task")


def check_method(method: str, task=None, data_dir=None, units: int = 2, out=sys.stdout) -> int:
    spec = load_task(task) if task else pick_task(method)
    cls = load_method(method, spec)
    print(f"checking {cls.manifest.name} v{cls.manifest.version} (api {cls.manifest.api_version}) "
          f"on {spec.name}", file=out)
    finals = []
    for i in range(2):
        with tempfile.TemporaryDirectory() as d:
            cfg = RunConfig(task=spec.name if not task else task, method=method, seed=0,
                            workdir=f"{d}/run", data_dir=data_dir, max_units=units)
            finals.append(execute(cfg, log=lambda s: None))
    a, b = finals
    problems = []
    if a["status"] != "completed":
        problems.append(f"status is {a['status']}")
    if a["metrics"] != b["metrics"] or a["costs"] != b["costs"]:
        diff = {k: (a["costs"][k], b["costs"].get(k)) for k in a["costs"] if a["costs"][k] != b["costs"].get(k)}
        problems.append(f"not deterministic: same seed gave different results {diff or '(metrics)'}")
    print("costs: " + json.dumps(a["costs"], sort_keys=True), file=out)
    print(f"{a['primary_metric']} after {units} {a['unit']}s-units: "
          f"{a['metrics'].get(a['primary_metric'])}", file=out)
    if problems:
        for p in problems:
            print(f"FAIL: {p}", file=out)
        return 1
    print("OK: manifest, signatures, jit, shapes, determinism and budgets", file=out)
    return 0
