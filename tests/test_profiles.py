"""Network/device profiles and the latency and energy they imply (modelled from
metered counts only), and their compact, re-derivable inputs."""
import json

import numpy as np
import pytest

from lsbench.errors import TaskError
from lsbench.metering import profiles
from lsbench.results import derive


def _log(sent, T=2, N=3):
    return {"edge_flops": np.full((T, N), 10**9), "cloud_flops": np.full((T, N), 10**12),
            "bytes_up": np.full((T, N), 3072), "bytes_down": np.full((T, N), 4),
            "sent": np.array(sent, bool), "active": np.ones((T, N), bool)}


def test_profiles_ship_all_named_links_and_devices():
    assert set(profiles.networks()) == {"lan", "wifi", "lte", "weak"}
    for net in profiles.networks().values():
        assert net["up_bps"] > 0 and net["down_bps"] > 0 and net["rtt_s"] >= 0
    dev = profiles.devices()
    for side in ("edge", "cloud"):
        assert dev[side]["flops_per_s"] > 0 and dev[side]["call_s"] >= 0


def test_turn_latency_matches_hand_formula():
    net, dev = profiles.networks()["lte"], profiles.devices()
    log = _log([[1, 0, 0], [1, 1, 0]])
    lat = profiles.turn_latency(log, net, dev)
    edge = dev["edge"]["call_s"] + 1e9 / dev["edge"]["flops_per_s"]             # per active turn
    call = (net["rtt_s"] + 3072 * 8 / net["up_bps"] + dev["cloud"]["call_s"]
            + 1e12 / dev["cloud"]["flops_per_s"] + 4 * 8 / net["down_bps"])      # per sent turn
    np.testing.assert_allclose(lat, [2 * edge + 2 * call, 2 * edge + call, 2 * edge])
    d = profiles.derived(log)
    assert d["lte"]["latency_mean_s"] == pytest.approx(lat.mean())
    assert d["lte"]["latency_p95_s"] == pytest.approx(np.percentile(lat, 95))
    assert d["lte"]["edge_s"] + d["lte"]["network_s"] + d["lte"]["cloud_s"] == pytest.approx(lat.mean())


def test_energy_matches_hand_formula():
    net, dev = profiles.networks()["wifi"], profiles.devices()
    log = _log([[1, 0, 0], [0, 0, 0]])
    e = dev["edge"]
    t_up, t_down = 3072 * 8 / net["up_bps"], 4 * 8 / net["down_bps"]
    wait = net["rtt_s"] + dev["cloud"]["call_s"] + 1e12 / dev["cloud"]["flops_per_s"]
    base = e["joule_per_flop"] * 2e9 + e["idle_w"] * 2 * e["call_s"]
    want = [base + net["tx_w"] * t_up + net["rx_w"] * t_down + e["idle_w"] * wait, base, base]
    np.testing.assert_allclose(profiles.edge_energy(log, net, dev), want)
    assert profiles.derived(log)["wifi"]["edge_energy_j"] == pytest.approx(np.mean(want))


def test_push_turns_pay_no_round_trip_and_calls_can_be_given():
    net, dev = profiles.networks()["lte"], profiles.devices()
    log = _log([[1, 1, 1], [1, 1, 1]])
    log["bytes_up"][1] = 0                 # turn 2: nothing asked, the cloud pushes
    log["cloud_calls"] = np.full((2, 3), 3)
    lat = profiles.turn_latency(log, net, dev)
    want = (2 * (dev["edge"]["call_s"] + 0.1) + net["rtt_s"] + 3072 * 8 / net["up_bps"]
            + 2 * (4 * 8 / net["down_bps"] + 3 * dev["cloud"]["call_s"] + 0.1))
    np.testing.assert_allclose(lat, [want] * 3)


def test_derived_orders_links_and_reports_p95():
    d = profiles.derived(_log([[1, 1, 1], [0, 0, 0]]))
    assert d["lan"]["latency_mean_s"] < d["wifi"]["latency_mean_s"] < d["lte"]["latency_mean_s"] \
        < d["weak"]["latency_mean_s"]
    for v in d.values():
        assert v["latency_p95_s"] >= v["latency_mean_s"] - 1e-12 and v["edge_energy_j"] > 0


def test_a_task_latency_model_is_refused():
    with pytest.raises(TaskError, match="latency_fn"):
        profiles.derived(_log([[1, 1, 1], [0, 0, 0]]), latency_fn=lambda log, net, dev: np.full(3, 7.0))


def test_training_round_latency():
    costs = {"bytes_up": 4000, "bytes_down": 4000, "edge_flops": 4 * 10**8, "cloud_flops": 2 * 10**12}
    d = profiles.train_derived(costs, units=2, clients_per_round=2)
    lte, dev = profiles.networks()["lte"], profiles.devices()
    want = (lte["rtt_s"] + 1000 * 8 / lte["up_bps"] + 1000 * 8 / lte["down_bps"]
            + 10**8 / dev["edge"]["flops_per_s"] + dev["edge"]["call_s"]
            + 10**12 / dev["cloud"]["flops_per_s"] + dev["cloud"]["call_s"])
    assert d["lte"]["round_latency_s"] == pytest.approx(want)
    assert d["lte"]["total_time_s"] == pytest.approx(2 * want)
    assert d.inputs["kind"] == "rounds" and d.inputs["units"] == 2


def test_inputs_are_compact_and_rederive_exactly():
    rng = np.random.default_rng(0)
    T, N = 5, 2000
    log = {"edge_flops": np.full((T, N), 1000), "cloud_flops": np.full((T, N), 10**6),
           "bytes_up": np.full((T, N), 64), "bytes_down": np.full((T, N), 4),
           "sent": rng.random((T, N)) < 0.3, "active": np.ones((T, N), bool)}
    d = profiles.derived(log)
    rec = d.inputs
    assert rec["n"] == N and rec["digits"] is None and len(rec["rows"]) <= 2 ** T   # exact: few distinct
    assert sum(rec["count"]) == N
    back = json.loads(json.dumps(rec))
    assert derive.from_record(back, profiles.load()) == dict(d)                      # to the last bit
    # many distinct examples: rows are merged by rounding, means stay exact
    log["edge_flops"] = rng.integers(1, 10**9, (T, N))
    d = profiles.derived(log)
    assert len(d.inputs["rows"]) <= derive.MAX_ROWS and d.inputs["digits"] is not None
    lat = profiles.turn_latency(log, profiles.networks()["lan"], profiles.devices())
    assert d["lan"]["latency_mean_s"] == pytest.approx(lat.mean(), rel=1e-12)
    assert d["lan"]["latency_p95_s"] == pytest.approx(np.percentile(lat, 95), rel=1e-2)
    assert len(json.dumps(d.inputs)) < 20_000


def test_other_profiles_change_the_figures_offline():
    log = _log([[1, 1, 1], [0, 1, 0]])
    d = profiles.derived(log)
    final = {"derive_inputs": json.loads(json.dumps(d.inputs))}
    assert derive.rederive(final) == {"modelled": True, **d}
    slow = profiles.load()
    slow["network"] = {"lte": dict(slow["network"]["lte"], rtt_s=1.0)}
    other = derive.rederive(final, slow)
    assert set(other) == {"modelled", "lte"}
    assert other["lte"]["latency_mean_s"] > d["lte"]["latency_mean_s"] + 0.9


def test_example_latency_is_the_harness_model():
    net, dev = profiles.networks()["lte"], profiles.devices()
    log = {"edge_flops": np.array([[5 * 10**6]]), "cloud_flops": np.array([[4 * 10**6]]),
           "bytes_up": np.array([[3072]]), "bytes_down": np.array([[4]]),
           "sent": np.ones((1, 1), bool), "active": np.ones((1, 1), bool)}
    want = profiles.turn_latency(log, net, dev)[0]
    assert profiles.example_latency(net, dev, 5 * 10**6, 4 * 10**6, 3072, 4) == pytest.approx(want)
