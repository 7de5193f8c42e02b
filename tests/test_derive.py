"""Offline re-derivation: a final.json's modelled latency/energy figures are
recomputed, without JAX, from the compact counts it keeps (derive_inputs), and
equal what the harness wrote, for one run per track."""
import copy
import json
import os

import pytest

from conftest import PLUGINS
from lsbench.results import derive, schema

TRAIN = (os.path.join(PLUGINS, "tiny_train.py") + ":TASK", os.path.join(PLUGINS, "sgd_fedavg.py"), 3)
INFER = (os.path.join(PLUGINS, "tiny_infer.py") + ":TASK", os.path.join(PLUGINS, "tiny_infer.py") + ":Cascade",
         None)
PLAN = (os.path.join(PLUGINS, "tiny_plan.py") + ":TASK20", os.path.join(PLUGINS, "tiny_plan.py") + ":AskOnce",
        None)


def _run(tmp_path, task, method, units):
    import lsbench
    wd = str(tmp_path / "run")
    lsbench.run(task, method, workdir=wd, max_units=units)
    return schema.load_final(os.path.join(wd, "final.json"))   # what is on disk


def _slower_rtt(extra):
    prof = derive.load_profiles()
    prof = copy.deepcopy(prof)
    for net in prof["network"].values():
        net["rtt_s"] += extra
    return prof


@pytest.mark.parametrize("track", ["train", "infer", "plan"])
def test_offline_rederivation_equals_the_harness(tmp_path, track):
    task, method, units = {"train": TRAIN, "infer": INFER, "plan": PLAN}[track]
    final = _run(tmp_path, task, method, units)
    assert final["track"] == track and final["status"] == "completed"
    assert final["derived"]["modelled"] is True and {"lan", "wifi", "lte", "weak"} <= set(final["derived"])
    rec = final["derive_inputs"]
    assert len(json.dumps(rec)) < 20_000                                    # small
    # the harness's figures, recomputed offline from final.json alone: equal to the last bit
    assert derive.rederive(final) == final["derived"]
    assert derive.rederive(json.loads(json.dumps(final))) == final["derived"]
    # the counts are the run's metered costs
    c = final["costs"]
    if rec["kind"] == "rounds":
        assert track == "train" and rec["units"] == final["units"]
        assert [rec[k] for k in ("bytes_up", "bytes_down", "edge_flops", "cloud_flops")] == \
            [c[k] for k in ("bytes_up", "bytes_down", "edge_flops", "cloud_flops")]
        other = derive.rederive(final, _slower_rtt(1.0))
        assert other["lte"]["round_latency_s"] == pytest.approx(final["derived"]["lte"]["round_latency_s"] + 1.0)
    else:
        s = dict(zip(rec["keys"], rec["sum"]))
        assert rec["n"] == final["units"] == sum(rec["count"])
        assert (s["bytes_up"], s["bytes_down"], s["cloud_flops"]) == (c["bytes_up"], c["bytes_down"],
                                                                     c["cloud_flops"])
        if track == "infer":
            assert s["edge_flops"] == c["edge_flops"]
        # other profiles change the figures as the model says: +1 s per round trip
        other = derive.rederive(final, _slower_rtt(1.0))
        want = final["derived"]["lte"]["latency_mean_s"] + s["requests"] / rec["n"]
        assert other["lte"]["latency_mean_s"] == pytest.approx(want)
    # the measured sanity column: each side's programs were timed on this machine
    m = final["measured"]
    assert any(r["s_per_call"] for r in m["programs"].values()) and "never ranked" in m["note"]
