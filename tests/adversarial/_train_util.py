"""Shared helpers of the training adversarial tests."""
import os
import sys

PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins")
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(TESTS, "plugins", "tiny_train.py") + ":TASK"
sys.path.insert(0, PLUGINS)
from adv_common import data_dir, plugin  # noqa: E402,F401


