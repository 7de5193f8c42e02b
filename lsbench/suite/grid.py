"""Presets (JSON, shipped in lsbench/suite/presets or any file path) and their
expansion into a grid of runs.

A preset::

    {"name": "demo", "description": "...", "seeds": [0], "timeout_s": null,
     "groups": [{"tasks": ["train/digits"] | "*", "tier": "small" | "default" | null,
                 "methods": ["fedavg", {"name": "cascade", "sweep": 3, "hparams": {...}}] | "*",
                 "sweep": true | false | N, "exclude": ["train/*-byz*"]}]}

``"*"`` tasks are every registered task (``tier`` filters them); ``"*"`` methods
are every registered method whose ``Manifest.applies_to`` fits the task (the
one source of truth; see ``lsbench.registry.applies_to``), plus any plugin
named in the ``methods`` filter (``--methods=path/to/mine.py,edge-only``): a
submission runs a preset as is. A
method's sweep points come from its class's ``sweep``: ``true`` runs them all,
``false`` only the defaults, ``N`` the default and N-1 interior points spread
over the sweep (``pick_points``); points whose effective hyper-parameters are
equal are run once, and the plan says so (``collapse``; the notes go to the
suite's warnings, printed by --dry_run and kept in suite.json). A task or
method that cannot be loaded becomes a failed run with its one-line reason.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
import re

from lsbench import api

PRESET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets")


class GridError(ValueError):
    """A bad preset or filter; the message is one line."""


@dataclasses.dataclass
class RunItem:
    task: str                 # what --task gets
    task_name: str            # spec.name, or the string when the task did not load
    track: str | None
    method: str               # what --method gets
    label: str                # the method's directory name
    seed: int
    hparams: dict
    point: str                # sweep point label
    error: str | None = None  # set when the grid could not resolve the task or method

    @property
    def id(self) -> str:
        return f"{self.task_name} {self.label} {self.point} seed{self.seed}"

    def workdir(self, root: str) -> str:
        parts = [safe(p) for p in self.task_name.split("/")] + [safe(self.label), safe(self.point),
                                                                f"seed{self.seed}"]
        return os.path.join(root, "runs", *parts)


def safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,+:-]", "_", str(s)) or "_"


def preset_names() -> list[str]:
    return sorted(f[:-5] for f in os.listdir(PRESET_DIR) if f.endswith(".json"))


def load_preset(name: str) -> dict:
    path = name if name.endswith(".json") else os.path.join(PRESET_DIR, name + ".json")
    if not os.path.exists(path):
        raise GridError(f"unknown preset '{name}'; use one of {', '.join(preset_names())} "
                        "or a path to a preset .json file")
    try:
        with open(path) as f:
            p = json.load(f)
    except json.JSONDecodeError as e:
        raise GridError(f"preset {path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(p, dict) or not isinstance(p.get("groups"), list) or not p["groups"]:
        raise GridError(f"preset {path} needs a non-empty \"groups\" list; see lsbench/suite/presets/demo.json")
    seeds = p.setdefault("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        raise GridError(f"preset {path}: \"seeds\" must be a non-empty list of integers")
    for i, g in enumerate(p["groups"]):
        for k in ("tasks", "methods"):
            v = g.get(k) if isinstance(g, dict) else None
            if v != "*" and not (isinstance(v, list) and v):
                raise GridError(f"preset {path}: groups[{i}].{k} must be \"*\" or a non-empty list")
        if g.get("tier") not in (None, "small", "default"):
            raise GridError(f"preset {path}: groups[{i}].tier must be \"small\", \"default\" or null")
    p.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    p["path"] = os.path.abspath(path)
    return p


def point_label(point: dict) -> str:
    if not point:
        return "default"
    return ",".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in point.items())


def pick_points(sweep, choice, defaults=None) -> list[dict]:
    """The sweep points to run; ``{}`` is the method's default and always comes first.

    ``false``: the default only. ``true``: the default and every sweep point.
    ``N``: N operating points, the default and N-1 sweep points spread over the
    sweep's interior (quantile positions (i + 1/2) / (N-1) of the points that are
    not the default), so the extremes, which are often copies of the edge-only
    and cloud-only references, are left out unless the sweep is that short.
    """
    sweep = [dict(s) for s in sweep or ()]
    if choice is False or not sweep:
        return [{}]
    if choice is True:
        return [{}] + sweep
    if isinstance(choice, bool) or not isinstance(choice, int) or choice < 1:
        raise GridError(f"\"sweep\" must be true, false or a positive integer, not {choice!r}")
    defaults = dict(defaults or {})
    rest = [s for s in sweep if {**defaults, **s} != defaults]
    k = choice - 1
    if k >= len(rest):
        return [{}] + rest
    idx = sorted({min(len(rest) - 1, int(math.floor((i + 0.5) * len(rest) / k))) for i in range(k)})
    return [{}] + [rest[i] for i in idx]


def collapse(points, cls=None, spec=None) -> tuple[list[dict], list[str]]:
    """Drops points whose *effective* hyper-parameters equal an earlier point's: the
    defaults merged with the point, then, if the method defines it,
    ``cls.effective_hparams(hp, spec) -> dict`` (values the method caps, e.g. a
    public-set size larger than the task's public split). Returns (points, notes)."""
    defaults = dict(getattr(cls, "default_hparams", {}) or {})
    hook = getattr(cls, "effective_hparams", None)
    seen, out, notes = {}, [], []
    for p in points:
        eff = {**defaults, **p}
        if hook is not None:
            try:
                eff = dict(hook(dict(eff), spec))
            except Exception:  # noqa: BLE001 - a broken hook collapses nothing
                pass
        key = json.dumps(eff, sort_keys=True, default=str)
        if key in seen:
            notes.append(f"{point_label(p)} runs the same effective hyper-parameters as {point_label(seen[key])} "
                         f"({key}); not run")
            continue
        seen[key] = p
        out.append(p)
    return out, notes


def _one_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def _label(name: str, spec) -> str:
    """'arith.edge-only' -> 'edge-only'; paths -> file stem."""
    from lsbench.registry import short_name
    if name.endswith(".py") or ".py:" in name:
        stem = os.path.splitext(os.path.basename(name.split(".py:")[0]))[0]
        return stem + (":" + name.split(".py:")[1] if ".py:" in name else "")
    return short_name(name) if ":" not in name else name


def _all_tasks(errors):
    from lsbench import registry
    out = {}
    for name, ep in sorted(registry._entry_points(registry.TASK_GROUP).items()):
        try:
            out[name] = ep.load()
        except Exception as e:  # noqa: BLE001 - recorded, the others go on
            errors.append((name, f"task entry point failed to import: {type(e).__name__}: {_one_line(e)}"))
    return out


def _methods_for(spec, errors, warnings):
    """Every registered method key whose manifest applies to ``spec``."""
    from lsbench import registry
    eps = registry._entry_points(registry.METHOD_GROUP)
    keys = []
    for key, ep in sorted(eps.items()):
        try:
            cls = ep.load()
        except Exception as e:  # noqa: BLE001
            msg = f"method entry point failed to import: {type(e).__name__}: {_one_line(e)}"
            if f"{key}: {msg}" not in warnings:   # where it applies is unknown: reported once
                warnings.append(f"{key}: {msg}")
            continue
        if hasattr(cls, "manifest") and registry.applies_to(cls, spec):
            keys.append(key)
    return keys


def _plugins(patterns) -> list[str]:
    """--methods entries that name a plugin (file.py[:Class] or pkg.mod:Class), not a pattern."""
    return [m for m in patterns or () if not any(c in m for c in "*?[")
            and (m.endswith(".py") or ".py:" in m or ":" in m)]


def _applies(name: str, spec) -> bool:
    from lsbench import registry
    try:
        cls = registry.load_method(name, spec)
    except Exception:  # noqa: BLE001 - it does not load for this task: it is not added here
        return False
    return hasattr(cls, "manifest") and registry.applies_to(cls, spec)


def expand(preset: dict, seeds=None, tracks=None, tasks=None, methods=None, warnings=None) -> list[RunItem]:
    """The preset's grid after filters (fnmatch patterns), in a stable order.
    Methods that fail to import and whose track is unknown go to ``warnings``."""
    from lsbench.registry import load_method, load_task
    seeds = list(seeds) if seeds else preset["seeds"]
    match = lambda pats, *names: not pats or any(fnmatch.fnmatch(n, p) for p in pats for n in names if n)  # noqa: E731
    items, seen = [], set()
    warnings = [] if warnings is None else warnings
    for g in preset["groups"]:
        errors: list = []
        if g["tasks"] == "*":
            specs = list(_all_tasks(errors).items())
            if g.get("tier"):
                specs = [(n, s) for n, s in specs if (s.tier == "small") == (g["tier"] == "small")]
        else:
            specs = []
            for name in g["tasks"]:
                try:
                    specs.append((name, load_task(name)))
                except Exception as e:  # noqa: BLE001
                    specs.append((name, _one_line(e)))
        for tname, spec in specs + [(n, err) for n, err in errors if "/" in n]:
            ok = not isinstance(spec, str)
            task_name = spec.name if ok else tname
            track = spec.track if ok else tname.split("/")[0] if tname.split("/")[0] in api.TRACKS else None
            if not match(tasks, tname, task_name) or (tracks and track not in tracks):
                continue
            if any(fnmatch.fnmatch(task_name, p) for p in g.get("exclude", ())):
                continue
            merrs: list = []
            entries = g["methods"] if g["methods"] != "*" else (_methods_for(spec, merrs, warnings) if ok else ["*"])
            if g["methods"] == "*" and ok:   # plugins named in --methods join "*" where they apply
                entries = list(entries) + [m for m in _plugins(methods) if _applies(m, spec)]
            entries = list(entries) + [m for m, _ in merrs]
            for entry in entries:
                m = entry if isinstance(entry, dict) else {"name": entry}
                mname = m.get("name")
                if not isinstance(mname, str):
                    raise GridError(f"preset {preset['path']}: a method entry lacks a \"name\": {entry!r}")
                label = _label(mname, spec if ok else None)
                err, points = (None if ok else spec), [{}]
                merr = next((r for k, r in merrs if k == mname), None)
                if err is None and merr:
                    err = merr
                if err is None:
                    try:
                        cls = load_method(mname, spec)
                        label = _label(mname, spec)
                        points = pick_points(getattr(cls, "sweep", ()), m.get("sweep", g.get("sweep", False)),
                                             getattr(cls, "default_hparams", {}))
                        points, notes = collapse(points, cls, spec)
                        warnings += [f"{task_name} {label}: {n}" for n in notes
                                     if f"{task_name} {label}: {n}" not in warnings]
                    except GridError:
                        raise
                    except Exception as e:  # noqa: BLE001
                        err = _one_line(e)
                if not match(methods, mname, label) and not (err is None and match(methods, cls.manifest.name)):
                    continue
                for pt in points:
                    hp = {**m.get("hparams", {}), **pt}
                    for s in seeds:
                        it = RunItem(tname, task_name, track, mname, label, s, hp, point_label(pt), err)
                        if it.id not in seen:
                            seen.add(it.id)
                            items.append(it)
    return items
