"""Helpers every track's adversarial tests share (not a plugin: no method here)."""
import importlib.util
import os
import sys

PLUGINS = os.path.dirname(os.path.abspath(__file__))


def plugin(name):
    """Imports tests/adversarial/plugins/<name>.py once (its classes are passed to lsbench.run)."""
    modname = f"lsbench_adversarial_{name}"
    if modname not in sys.modules:
        spec = importlib.util.spec_from_file_location(modname, os.path.join(PLUGINS, name + ".py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
    return sys.modules[modname]


def data_dir():
    from lsbench.models.cache import default_data_dir
    return default_data_dir()
