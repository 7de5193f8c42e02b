"""Network/device profiles and the latency and energy they imply."""
import numpy as np
import pytest

from lsbench.metering import profiles


def _log(sent):
    T, N = 2, 3
    return {"edge_flops": np.full((T, N), 1e9), "cloud_flops": np.full((T, N), 1e12),
            "bytes_up": np.full((T, N), 3072), "bytes_down": np.full((T, N), 4),
            "sent": np.array(sent, bool)}


def test_profiles_ship_all_named_links():
    assert set(profiles.networks()) == {"lan", "wifi", "lte", "weak"}
    for net in profiles.networks().values():
        assert net["up_bps"] > 0 and net["down_bps"] > 0 and net["rtt_s"] >= 0


def test_turn_latency_matches_hand_formula():
    net, dev = profiles.networks()["lte"], profiles.devices()
    log = _log([[1, 0, 0], [1, 1, 0]])
    lat = profiles.turn_latency(log, net, dev)
    edge = 1e9 / dev["edge"]["flops_per_s"]
    call = net["rtt_s"] + 3072 * 8 / net["up_bps"] + 1e12 / dev["cloud"]["flops_per_s"] + 4 * 8 / net["down_bps"]
    np.testing.assert_allclose(lat, [2 * edge + 2 * call, 2 * edge + call, 2 * edge])


def test_derived_orders_links_and_reports_p95():
    d = profiles.derived(_log([[1, 1, 1], [0, 0, 0]]))
    assert d["lan"]["latency_mean_s"] < d["wifi"]["latency_mean_s"] < d["lte"]["latency_mean_s"] \
        < d["weak"]["latency_mean_s"]
    for v in d.values():
        assert v["latency_p95_s"] >= v["latency_mean_s"] - 1e-12 and v["edge_energy_j"] > 0


def test_custom_latency_model_is_used():
    d = profiles.derived(_log([[1, 1, 1], [0, 0, 0]]), latency_fn=lambda log, net, dev: np.full(3, 7.0))
    assert all(v["latency_mean_s"] == 7.0 for v in d.values())


def test_training_round_latency():
    costs = {"bytes_up": 4000, "bytes_down": 4000, "edge_flops": 0, "cloud_flops": 0}
    d = profiles.train_derived(costs, rounds=2, clients_per_round=2)
    lte = profiles.networks()["lte"]
    want = lte["rtt_s"] + 1000 * 8 / lte["up_bps"] + 1000 * 8 / lte["down_bps"]
    assert d["lte"]["round_latency_s"] == pytest.approx(want)
    assert d["lte"]["total_time_s"] == pytest.approx(2 * want)
