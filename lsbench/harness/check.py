"""``lsbench check``: validate a plugin on the smallest task of its track.

1. The manifest and signatures (registry), sealing (each side traced alone,
   no callbacks, no foreign constants, no array work in constructors) and
   shapes (preflight).
2. Determinism: two runs with the same seed give identical metrics and costs.
3. A dynamic leak test: the method runs once more with every delivered payload
   replaced by random values of the same shapes and dtypes (``scramble``). If
   its quality then stays above the task's edge-only reference (keeping more
   than half of its real gain over edge-only), information went around the
   channel, and the method is flagged.
4. Budgets: the margin against each of the task's edge budgets, if declared.
"""
from __future__ import annotations

import json
import sys
import tempfile

from lsbench.errors import UsageError
from lsbench.harness.runner import RunConfig, execute
from lsbench.registry import PluginError, _entry_points, METHOD_GROUP, applies_to, list_tasks, \
    load_method, load_task

LEAK_ABS = 0.02     # scrambled quality may exceed edge-only by this much (noise)...
LEAK_KEPT = 0.5     # ...or keep at most this fraction of the method's real gain over edge-only


def pick_task(method):
    """The smallest task (tier 'small' first) on which ``method`` resolves."""
    tasks = sorted(list_tasks().values(), key=lambda s: (s.tier != "small", s.name))
    errors = []
    for spec in tasks:
        try:
            load_method(method, spec)
            return spec
        except PluginError as e:
            errors.append(str(e))
    raise UsageError(f"no installed task fits method '{method}'"
                     + (f" ({errors[-1]})" if errors else "") + "; pass --task")


def edge_reference(spec):
    """The registered edge-only reference of a task (``local`` in training), or None."""
    want = "local" if spec.track == "train" else "edge-only"
    for key, ep in sorted(_entry_points(METHOD_GROUP).items()):
        try:
            cls = ep.load()
        except Exception:  # noqa: BLE001
            continue
        man = getattr(cls, "manifest", None)
        if man is not None and man.reference == want and applies_to(cls, spec):
            return cls
    return None


def _run(spec, task, method, data_dir, units, **kw):
    with tempfile.TemporaryDirectory() as d:
        cfg = RunConfig(task=task or spec.name, method=method, seed=0, workdir=f"{d}/run",
                        data_dir=data_dir, max_units=units, **kw)
        return execute(cfg, log=lambda s: None)


def leak_verdict(real: float, scrambled: float, edge_only: float, higher_is_better=True):
    """(flagged, kept fraction) of the leak test; see the module docstring."""
    sign = 1.0 if higher_is_better else -1.0
    gain, kept_abs = sign * (real - edge_only), sign * (scrambled - edge_only)
    kept = kept_abs / gain if gain > 0 else (1.0 if kept_abs > 0 else 0.0)
    return (kept_abs > LEAK_ABS and kept > LEAK_KEPT), kept


def check_method(method, task=None, data_dir=None, units: int = 2, out=sys.stdout,
                 leak_test: bool = True, reference=None) -> int:
    """Runs the checks; returns 0 if all pass. ``reference``: the edge-only method
    to compare with (default: the task's registered edge-only reference)."""
    spec = load_task(task) if task else pick_task(method)
    cls = load_method(method, spec)
    man = cls.manifest
    print(f"checking {man.name} v{man.version} (api {man.api_version}) on {spec.name}", file=out)
    a = _run(spec, task, method, data_dir, units)
    b = _run(spec, task, method, data_dir, units)
    problems = []
    if a["status"] != "completed":
        problems.append(f"status is {a['status']}")
    if a["metrics"] != b["metrics"] or a["costs"] != b["costs"]:
        diff = {k: (a["costs"][k], b["costs"].get(k)) for k in a["costs"] if a["costs"][k] != b["costs"].get(k)}
        problems.append(f"not deterministic: same seed gave different results {diff or '(metrics)'}")
    pm = a["primary_metric"]
    print("costs: " + json.dumps(a["costs"], sort_keys=True), file=out)
    print(f"{pm} after {units} units: {a['metrics'].get(pm)}", file=out)
    for name, m in sorted((a.get("budget_margins") or {}).items()):
        print(f"budget {name}: used {m.get('used')} of {m.get('limit')} ({m.get('margin')} left)", file=out)
    ref = load_method(reference, spec) if reference is not None else edge_reference(spec)
    if leak_test and man.reference is None and ref is not None and a["status"] == "completed":
        s = _run(spec, task, method, data_dir, units, scramble=True)
        e = _run(spec, task, ref, data_dir, units)
        real, scr, edge = (f["metrics"].get(pm) for f in (a, s, e))
        if None not in (real, scr, edge):
            flagged, kept = leak_verdict(real, scr, edge, a["higher_is_better"])
            print(f"leak test: {pm} real {real:.4f}, with scrambled payloads {scr:.4f}, "
                  f"edge-only ({ref.manifest.name}) {edge:.4f}: keeps {kept:.0%} of its gain", file=out)
            if flagged:
                problems.append(f"quality stays above edge-only when every delivered payload is random "
                                f"({scr:.4f} > {edge:.4f}): the method takes information around the channel")
    if problems:
        for p in problems:
            print(f"FAIL: {p}", file=out)
        return 1
    print("OK: manifest, sealing, jit, shapes, determinism, leak test and budgets", file=out)
    return 0
