"""The inference loop on the tiny plugin: billing per real row, setup, flags, resume, extremes."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from lsbench import api
from lsbench.harness.runner import RunConfig, execute
from lsbench.registry import load_method

from conftest import PLUGINS

INFER_TASK = os.path.join(PLUGINS, "tiny_infer.py") + ":TASK"
INFER_METHOD = os.path.join(PLUGINS, "tiny_infer.py") + ":Cascade"
N, D = 100, 6  # tiny_infer: 100 test rows of 6 float32 features, batch 32 (last batch padded)
Cascade = load_method(INFER_METHOD)


class Distilled(Cascade):
    """Setup only: the edge sends its weights up, the cloud returns its own (the
    package), each side multiplies what it got by the identity (metered FLOPs);
    then the edge answers every row alone."""
    manifest = api.Manifest(name="tiny-distilled", tracks=("infer",))

    def edge_setup(self, rng):
        return dict(self.view.params), {"w": self.view.params["edge"]}

    def cloud_setup(self, uplink, rng):
        seen = uplink["w"] @ jnp.eye(3)  # 2 * 6 * 3 * 3 FLOPs on the cloud
        return {"cloud": self.view.params["cloud"], "seen": seen}, {"w": self.view.params["cloud"]}

    def edge_install(self, es, package, rng):
        return dict(es, edge=package["w"] @ jnp.eye(3))  # the same on the edge

    def edge_query(self, es, carry, rng):
        q = super().edge_query(es, carry, rng)
        return q._replace(send=jnp.zeros_like(q.send))


class Flagged(Cascade):
    """Sends every row with two Rows leaves: its features, and a second field whose
    mask is set only for even rows (odd sent rows pay one flag byte)."""
    manifest = api.Manifest(name="tiny-flagged", tracks=("infer",))

    def edge_query(self, es, carry, rng):
        q = super().edge_query(es, carry, rng)
        send = jnp.ones_like(q.send)
        even = jnp.arange(send.shape[0]) % 2 == 0
        up = {"x": api.Rows({"x": carry["x"]}, send), "hint": api.Rows({"h": carry["x"][:, :1]}, even)}
        return q._replace(uplink=up, send=send)

    def cloud_reply(self, cs, cc, up, rng):
        return super().cloud_reply(cs, cc, {"x": up["x"].data["x"]}, rng)


def run(tmp, task, method, name="r", **kw):
    cfg = RunConfig(task=task, method=method, seed=0, workdir=str(tmp / name), data_dir=str(tmp / "d"), **kw)
    return execute(cfg, log=lambda s: None)


@pytest.mark.parametrize("tau,rate", [(0.0, 0.0), (1.01, 1.0)])
def test_cascade_extremes_and_exact_bytes(tmp_path, tau, rate):
    f = run(tmp_path, INFER_TASK, INFER_METHOD, hparams={"tau": tau})
    m, c = f["metrics"], f["costs"]
    assert m["offload_rate"] == rate
    sent = int(round(rate * N))
    assert c["bytes_up"] == sent * D * 4       # fp32 features of each sent row, padding unbilled
    assert c["bytes_down"] == sent * 4         # one int32 prediction per sent row
    assert c["messages"] == 2 * sent
    assert (c["cloud_flops"] > 0) == (sent > 0)


def test_cascade_cloud_answers_improve_accuracy_and_cost_more(tmp_path):
    lo = run(tmp_path, INFER_TASK, INFER_METHOD, "a", hparams={"tau": 0.0})
    hi = run(tmp_path, INFER_TASK, INFER_METHOD, "b", hparams={"tau": 1.01})
    assert hi["metrics"]["accuracy"] == 1.0 > lo["metrics"]["accuracy"]  # the cloud holds the true model
    assert hi["derived"]["lte"]["latency_mean_s"] > lo["derived"]["lte"]["latency_mean_s"]


def test_edge_flops_billed_per_real_example(tmp_path):
    # The edge's only matmul is x @ w (6 x 3) per example: 2*6*3 FLOPs, for 100 rows, not 128 padded ones.
    f = run(tmp_path, INFER_TASK, INFER_METHOD, hparams={"tau": 0.0})
    assert f["costs"]["edge_flops"] == N * 2 * D * 3


def test_setup_is_metered_per_side_and_billed(tmp_path):
    """edge_setup -> channel up -> cloud_setup -> channel down -> edge_install: 6x3 fp32
    weights each way (72 bytes), one 6x3 @ 3x3 matmul on each side (108 FLOPs)."""
    f = run(tmp_path, INFER_TASK, Distilled)
    c = f["costs"]
    assert c["setup_bytes_up"] == c["setup_bytes_down"] == D * 3 * 4
    assert c["setup_edge_flops"] == c["setup_cloud_flops"] == 2 * D * 3 * 3
    # The package is the cloud's model: the edge alone now answers like the cloud, and
    # nothing is sent per example (what it knows came down once, billed).
    assert f["metrics"]["accuracy"] == 1.0 and c["bytes_up"] == c["bytes_down"] == c["cloud_flops"] == 0


def test_partial_rows_pay_a_flag_byte(tmp_path):
    """A sent row whose message has two Rows leaves, one of them off for it, pays
    ceil(2 / 8) = 1 flag byte (the channel's rule); padding never pays."""
    f = run(tmp_path, INFER_TASK, Flagged)
    row = np.concatenate([np.arange(min(32, N - lo)) for lo in range(0, N, 32)])  # row in its batch
    even = int((row % 2 == 0).sum())
    odd = N - even
    assert f["costs"]["bytes_up"] == N * D * 4 + even * 1 * 4 + odd * 1
    assert f["costs"]["bytes_down"] == N * 4


def test_infer_resume_equals_uninterrupted(tmp_path):
    full = run(tmp_path, INFER_TASK, INFER_METHOD, "full")
    run(tmp_path, INFER_TASK, INFER_METHOD, "part", max_units=2, checkpoint_every=1)
    res = run(tmp_path, INFER_TASK, INFER_METHOD, "part", resume=True)
    assert res["metrics"] == full["metrics"] and res["costs"] == full["costs"]
    rows = [json.loads(line)["step"] for line in open(tmp_path / "part" / "metrics.jsonl")]
    assert len(rows) == len(set(rows))
