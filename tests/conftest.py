import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = os.path.join(ROOT, "tests", "plugins")
TINY_TASK = os.path.join(PLUGINS, "tiny_train.py") + ":TASK"
TINY_METHOD = os.path.join(PLUGINS, "sgd_fedavg.py")


def cli(*args, timeout=600):
    """Runs `python -m lsbench.cli.main ARGS`; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "lsbench.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))
