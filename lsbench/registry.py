"""Finding tasks and methods: a file, a module, or an entry point.

``path/to/file.py[:Name]``, ``pkg.module:Name``, or an entry-point name in the
``lsbench.methods`` / ``lsbench.tasks`` groups. Built-ins use the same paths.
A method entry named ``family.name`` is what ``name`` finds on a task of that
family (``spec.config['family']``, else its track).
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import inspect
import os
import sys

from lsbench import api
from lsbench.task import TaskSpec

METHOD_GROUP = "lsbench.methods"
TASK_GROUP = "lsbench.tasks"


class PluginError(ValueError):
    """A plugin could not be found or is malformed."""


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


def load_method(name: str, spec: TaskSpec | None = None) -> type:
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
        keys = ([f"{_family(spec)}.{name}", f"{spec.track}.{name}"] if spec else []) + [name]
        key = next((k for k in keys if k in eps), None)
        if key is None:
            where = f" for task {spec.name}" if spec else ""
            raise PluginError(f"unknown method '{name}'{where}; run `lsbench list` to see the methods")
        obj = eps[key].load()
    check_method_class(obj, name, spec)
    return obj


def check_method_class(obj, name: str, spec: TaskSpec | None = None):
    if not (inspect.isclass(obj) and issubclass(obj, api.Method)):
        raise PluginError(f"method '{name}' is not a subclass of lsbench.api.Method")
    man = getattr(obj, "manifest", None)
    if not isinstance(man, api.Manifest):
        raise PluginError(f"method '{name}' has no `manifest = api.Manifest(...)`")
    if man.api_version != api.API_VERSION:
        raise PluginError(f"method '{name}' targets api_version {man.api_version}; "
                          f"this lsbench speaks {api.API_VERSION}")
    if man.reference is not None and man.reference not in api.REFERENCE_KINDS:
        raise PluginError(f"method '{name}': reference must be one of {api.REFERENCE_KINDS}")
    if spec is not None:
        if spec.track not in man.tracks:
            raise PluginError(f"method '{name}' supports tracks {man.tracks}, "
                              f"not the {spec.track} track of {spec.name}")
        base = api.TRACK_BASES[spec.track]
        if not issubclass(obj, base):
            raise PluginError(f"method '{name}' must subclass lsbench.api.{base.__name__}")
        missing = [f for f in REQUIRED_FUNCS[spec.track]
                   if getattr(obj, f) is getattr(base, f)]
        if missing:
            raise PluginError(f"method '{name}' does not implement {', '.join(missing)}")


REQUIRED_FUNCS = {
    "train": ("init", "init_edge", "cloud_downlink", "client_init", "client_step",
              "client_final", "cloud_update", "predict_edge"),
    "infer": ("prepare", "edge_start", "edge_turn", "cloud_turn", "finalize"),
    "plan": ("init", "edge_start", "edge_query", "cloud_plan", "edge_act"),
}


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
