"""Finding tasks and methods: a file, a module, or an entry point.

``path/to/file.py[:Name]``, ``pkg.module:Name``, or an entry-point name in the
``lsbench.methods`` / ``lsbench.tasks`` groups. Built-ins use the same paths.
Entry-point names must be unique, so methods that share a short name across
families register as ``family.name`` (``arith.edge-only``); ``--method=name``
finds every entry called ``name`` or ``*.name`` and keeps the one whose
``Manifest.applies_to`` fits the task (the one source of truth for where a
method applies).
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import inspect
import os
import sys

from lsbench import api
from lsbench.errors import PluginError
from lsbench.task import TaskSpec

METHOD_GROUP = "lsbench.methods"
TASK_GROUP = "lsbench.tasks"


def _entry_points(group):
    return {ep.name: ep for ep in md.entry_points(group=group)}


def _load_file(path: str):
    if not os.path.exists(path):
        raise PluginError(f"plugin file '{path}' does not exist; check the path")
    modname = "lsbench_plugin_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception as e:  # noqa: BLE001 - reported as one line
        raise PluginError(f"plugin file '{path}' failed to import: {type(e).__name__}: {e}") from None
    return mod


def _load_ref(ref: str, kind: str):
    """Loads 'file.py[:Name]' or 'pkg.mod:Name'; Name may be omitted for files."""
    path, _, attr = ref.partition(":") if not ref.endswith(".py") else (ref, "", "")
    if path.endswith(".py"):
        mod = _load_file(path)
    else:
        try:
            mod = importlib.import_module(path)
        except ImportError as e:
            raise PluginError(f"cannot import {kind} module '{path}': {e}") from None
    if attr:
        if not hasattr(mod, attr):
            raise PluginError(f"{kind} '{ref}': module has no attribute '{attr}'")
        return getattr(mod, attr)
    return mod


def _is_ref(name: str) -> bool:
    return name.endswith(".py") or ".py:" in name or (":" in name and "/" not in name.split(":")[0])


def _family(spec: TaskSpec) -> str:
    return spec.config.get("family", spec.track)


def load_task(name: str) -> TaskSpec:
    if "@" in name:  # TASK@ATTACK: a training task with a harness-side attack (lsbench.attacks)
        from tasks.train_byz import from_ref
        return from_ref(name)
    if _is_ref(name):
        obj = _load_ref(name, "task")
    else:
        eps = _entry_points(TASK_GROUP)
        if name not in eps:
            raise PluginError(f"unknown task '{name}'; run `lsbench list` to see the tasks")
        obj = eps[name].load()
    if not isinstance(obj, TaskSpec):
        raise PluginError(f"task '{name}' is a {type(obj).__name__}, not a lsbench.task.TaskSpec")
    return obj


def applies_to(cls, spec: TaskSpec) -> bool:
    """Whether method class ``cls`` runs on task ``spec`` (its manifest says)."""
    return api.applies(cls.manifest, spec.name, spec.track, _family(spec))


def short_name(key: str) -> str:
    """'arith.edge-only' -> 'edge-only' (entry-point keys may carry a family prefix)."""
    head, dot, tail = key.partition(".")
    return tail if dot and "/" not in key and head.isidentifier() and tail else key


def load_method(name, spec: TaskSpec | None = None) -> type:
    if inspect.isclass(name):  # a class given directly (the Python API)
        check_method_class(name, getattr(getattr(name, "manifest", None), "name", name.__name__), spec)
        return name
    if _is_ref(name):
        obj = _load_ref(name, "method")
        if inspect.ismodule(obj):
            found = [v for v in vars(obj).values() if inspect.isclass(v)
                     and issubclass(v, api.Method) and v.__module__ == obj.__name__
                     and hasattr(v, "manifest")]
            if len(found) != 1:
                raise PluginError(f"method file '{name}' defines {len(found)} Method classes with a "
                                  "manifest; name one as file.py:ClassName")
            obj = found[0]
    else:
        eps = _entry_points(METHOD_GROUP)
        keys = [k for k in eps if k == name or short_name(k) == name]
        if not keys:
            raise PluginError(f"unknown method '{name}'; run `lsbench list` to see the methods")
        found = []
        for k in keys:
            try:
                cls = eps[k].load()
            except Exception as e:  # noqa: BLE001 - reported as one line
                raise PluginError(f"method entry point '{k}' failed to load: {type(e).__name__}: {e}") from None
            if spec is None or (hasattr(cls, "manifest") and applies_to(cls, spec)):
                found.append(cls)
        if spec is not None and not found:
            raise PluginError(f"method '{name}' does not apply to task {spec.name}; "
                              f"run `lsbench list --track={spec.track}` to see its methods")
        if len(found) > 1:
            where = f" on {spec.name}" if spec else ""
            raise PluginError(f"method name '{name}' is ambiguous{where} ({', '.join(keys)}); "
                              "narrow one manifest's applies_to")
        obj = found[0]
    check_method_class(obj, name, spec)
    return obj


def check_method_class(obj, name: str, spec: TaskSpec | None = None):
    if not (inspect.isclass(obj) and issubclass(obj, api.Method)):
        raise PluginError(f"method '{name}' is not a subclass of lsbench.api.Method")
    man = getattr(obj, "manifest", None)
    if not isinstance(man, api.Manifest):
        raise PluginError(f"method '{name}' has no `manifest = api.Manifest(...)`")
    if man.api_version != api.API_VERSION:
        raise PluginError(f"method '{name}' targets plugin API v{man.api_version}; this lsbench "
                          f"speaks v{api.API_VERSION}: see 'Migrating from API v1' in the README")
    if man.reference is not None and man.reference not in api.REFERENCE_KINDS:
        raise PluginError(f"method '{name}': reference must be one of {api.REFERENCE_KINDS}")
    if spec is not None:
        if not applies_to(obj, spec) and spec.track in man.tracks:
            raise PluginError(f"method '{name}' applies to {', '.join(man.applies_to)}, "
                              f"not to task {spec.name}")
        if spec.track not in man.tracks:
            raise PluginError(f"method '{name}' supports tracks {man.tracks}, "
                              f"not the {spec.track} track of {spec.name}")
        base = api.TRACK_BASES[spec.track]
        if not issubclass(obj, base):
            raise PluginError(f"method '{name}' must subclass lsbench.api.{base.__name__}")
        missing = [f for f in api.REQUIRED[spec.track]
                   if getattr(obj, f, None) is getattr(base, f, None)]
        if missing:
            raise PluginError(f"method '{name}' ({spec.track} track) does not implement "
                              f"{', '.join(missing)}; see lsbench.api.{base.__name__}")


def list_tasks() -> dict[str, TaskSpec]:
    out = {}
    for name, ep in sorted(_entry_points(TASK_GROUP).items()):
        try:
            out[name] = ep.load()
        except Exception:  # noqa: BLE001 - a broken task must not hide the rest
            continue
    return out


def list_methods() -> dict[str, type]:
    out = {}
    for name, ep in sorted(_entry_points(METHOD_GROUP).items()):
        try:
            out[name] = ep.load()
        except Exception:  # noqa: BLE001
            continue
    return out


# ---- listing without importing (`lsbench list` must not start JAX) ----------------
# What `lsbench list` shows of each task and method is cached under the data dir,
# keyed by the entry points and by the size and mtime of every source file of the
# packages they live in (and of lsbench): any edit there re-imports once.
TASK_FIELDS = ("name", "version", "track", "description", "tier")


def _package_files(top: str) -> list:
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return [top, None]
    if spec is None:
        return [top, None]
    roots = list(spec.submodule_search_locations or []) or [spec.origin]
    out = []
    for root in roots:
        if root and os.path.isfile(root):
            st = os.stat(root)
            out.append((root, st.st_size, st.st_mtime_ns))
            continue
        for d, dirs, files in os.walk(root or ""):
            dirs[:] = sorted(x for x in dirs if not x.startswith((".", "__pycache__")))
            for f in sorted(files):
                if f.endswith((".py", ".json")):
                    st = os.stat(os.path.join(d, f))
                    out.append((os.path.join(d, f), st.st_size, st.st_mtime_ns))
    return out


def _listing_key(eps: dict) -> str:
    import hashlib
    import json
    tops = sorted({ep.value.split(":")[0].split(".")[0] for g in eps.values() for ep in g.values()} | {"lsbench"})
    blob = {"eps": {g: sorted((n, ep.value) for n, ep in v.items()) for g, v in eps.items()},
            "files": {t: _package_files(t) for t in tops}, "python": sys.version}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _describe(group: str, obj) -> dict:
    import dataclasses
    if group == TASK_GROUP:
        return {k: getattr(obj, k) for k in TASK_FIELDS}
    return {"manifest": {f.name: getattr(obj.manifest, f.name) for f in dataclasses.fields(obj.manifest)}}


def _revive(group: str, d: dict):
    import types
    if group == TASK_GROUP:
        return types.SimpleNamespace(**d)
    m = dict(d["manifest"])
    for k, v in m.items():
        if isinstance(v, list):
            m[k] = tuple(v)
    return types.SimpleNamespace(manifest=api.Manifest(**m))


def list_entries(group: str) -> dict:
    """Name -> what `lsbench list` shows: a TaskSpec-like object (name, version,
    track, description, tier) or an object with ``.manifest``; entries that fail
    to import are left out. Served from a cache that any source edit invalidates."""
    import json
    eps = {g: _entry_points(g) for g in (TASK_GROUP, METHOD_GROUP)}
    root = os.environ.get("LSBENCH_DATA_DIR", os.path.expanduser("~/.cache/lsbench"))
    path = os.path.join(os.path.expanduser(root), "cache", f"list-{_listing_key(eps)}.json")
    try:
        with open(path) as f:
            cached = json.load(f)
        return {n: _revive(group, d) for n, d in cached[group].items()}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = {g: (list_tasks() if g == TASK_GROUP else list_methods()) for g in eps}
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({g: {n: _describe(g, o) for n, o in v.items() if _ok(g, o)} for g, v in found.items()}, f)
        os.replace(tmp, path)
        for old in os.listdir(os.path.dirname(path)):   # listings of earlier source states
            if old.startswith("list-") and old.endswith(".json") and old != os.path.basename(path):
                os.remove(os.path.join(os.path.dirname(path), old))
    except (OSError, TypeError, ValueError):
        pass   # an unwritable data dir: listing still works, just not cached
    return {n: o for n, o in found[group].items() if _ok(group, o)}


def _ok(group, obj) -> bool:
    return isinstance(obj, TaskSpec) if group == TASK_GROUP else isinstance(getattr(obj, "manifest", None),
                                                                                  api.Manifest)
