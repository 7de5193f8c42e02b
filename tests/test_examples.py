"""Every example in examples/ passes `lsbench check` (sealing, determinism, leak test, budgets)."""
import io
import os

import pytest

from conftest import ROOT
from lsbench.harness.check import check_method

EXAMPLES = {"train_fedavg_minimal.py": "train/digits", "infer_cascade_minimal.py": "infer/arith-route-small",
            "plan_ask_when_unsure.py": "plan/fogmaze-small"}


@pytest.mark.parametrize("name,task", sorted(EXAMPLES.items()))
def test_example_passes_lsbench_check(name, task, tmp_path):
    out = io.StringIO()
    path = os.path.join(ROOT, "examples", name)
    code = check_method(path, task=task, data_dir=None,
                        units=1, out=out)
    text = out.getvalue()
    assert code == 0, text
    assert "leak test:" in text and text.rstrip().endswith("and budgets")
