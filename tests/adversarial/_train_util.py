"""Shared helpers of the training adversarial tests."""
import importlib.util
import os
import sys

PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins")
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(TESTS, "plugins", "tiny_train.py") + ":TASK"


def plugin(name):
    """Imports tests/adversarial/plugins/<name>.py once (its classes go to lsbench.run)."""
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
