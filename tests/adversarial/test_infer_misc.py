"""Other inference routes found while porting: a model held as a program constant
(counted by the parameter-bytes budget), answers rewritten after a row is done
(frozen: a row's prediction is taken when it is done), and the task's correctness
bits (they reach only the oracle reference, which is never ranked)."""
import os
import sys

import numpy as np
import pytest

import lsbench
from lsbench.errors import PluginError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins"))
from infer_util import TASK, data_dir, plugin, run_loop  # noqa: E402



@pytest.fixture(scope="module")
def inst():
    from lsbench.registry import load_task
    return load_task(TASK).build(data_dir(), 0)


def test_a_model_held_as_a_constant_counts_toward_parameter_bytes(inst):
    from baselines.routing import EdgeOnly
    honest, hl, hs = run_loop(inst, EdgeOnly)
    const, cl, cs = run_loop(inst, plugin("infer_misc").ConstParams)
    assert const["metrics"]["accuracy"] == honest["metrics"]["accuracy"]
    want = sum(np.asarray(a).nbytes for a in __import__("jax").tree_util.tree_leaves(inst.edge_view.params))
    assert hl.edge_footprint(hs)["param_bytes"] == want
    assert cl.edge_footprint(cs)["param_bytes"] == want


def test_answers_rewritten_after_done_do_not_count(inst):
    """All rows but one are marked done unanswered; the edge then answers the whole batch
    on a turn billed to one row. The done rows keep what they had when they were done."""
    out, _, _ = run_loop(inst, plugin("infer_misc").RewritesDoneRows)
    m, y = out["metrics"], inst.test["y"]
    B = inst.batch_size
    assert m["accuracy"] <= float(np.mean(y == 0)) + len(y) / B / len(y) + 1e-9
    assert m["accuracy"] < m["acc_edge_ref"]


def test_oracle_bits_reach_only_the_oracle_reference():
    mod = plugin("infer_misc")
    with pytest.raises(PluginError) as e:
        lsbench.run(task=TASK, method=mod.ReadsOracleBits, data_dir=data_dir())
    assert "edge_correct" in str(e.value) and "\n" not in str(e.value)
    f = lsbench.run(task=TASK, method=mod.ClaimsOracle, data_dir=data_dir())
    assert f["reference"] == "oracle"  # shown as a reference, never ranked
    assert f["metrics"]["accuracy"] == pytest.approx(f["metrics"]["acc_oracle_ref"])
