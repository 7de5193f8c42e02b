"""Network and device profiles (shipped as profiles.json) and the latency/energy they imply.

Per turn of one example (sequential semantics):
  edge compute  = edge_flops / edge.flops_per_s
  if sent:  + rtt + bytes_up*8/up_bps + cloud_flops/cloud.flops_per_s + bytes_down*8/down_bps
Edge energy = joule_per_flop*edge_flops + tx_w*t_up + rx_w*t_down + idle_w*(rtt + cloud time).
A task may replace the latency model (``InferInstance.latency_fn(log, net, dev)``), e.g. for
LLM decoding where a verification pass costs about one decode step.
"""
from __future__ import annotations

import functools
import json
import os

import numpy as np

PATH = os.path.join(os.path.dirname(__file__), "profiles.json")


@functools.lru_cache(None)
def load(path: str = PATH) -> dict:
    with open(path) as f:
        return json.load(f)


def networks() -> dict:
    return load()["network"]


def devices() -> dict:
    return load()["device"]


def _times(log, net, dev):
    """Per-turn time components, arrays [turns, N]."""
    sent = np.asarray(log["sent"], bool)
    edge = np.asarray(log["edge_flops"], np.float64) / dev["edge"]["flops_per_s"]
    up = np.where(sent, np.asarray(log["bytes_up"], np.float64) * 8 / net["up_bps"], 0.0)
    down = np.where(sent, np.asarray(log["bytes_down"], np.float64) * 8 / net["down_bps"], 0.0)
    wait = np.where(sent, net["rtt_s"] + np.asarray(log["cloud_flops"], np.float64)
                    / dev["cloud"]["flops_per_s"], 0.0)
    return edge, up, down, wait


def turn_latency(log, net, dev) -> np.ndarray:
    """Seconds per example (summed over turns), float[N]."""
    return sum(t.sum(0) for t in _times(log, net, dev))


def edge_energy(log, net, dev, latency=None) -> np.ndarray:
    """Joules spent on the device per example, float[N]."""
    _, up, down, wait = _times(log, net, dev)
    e = dev["edge"]
    flops = np.asarray(log["edge_flops"], np.float64).sum(0)
    return (e["joule_per_flop"] * flops + net["tx_w"] * up.sum(0) + net["rx_w"] * down.sum(0)
            + e["idle_w"] * wait.sum(0))


def derived(log, latency_fn=None) -> dict:
    """{profile: {latency_mean_s, latency_p95_s, edge_energy_j}} over examples or episodes."""
    dev, out = devices(), {}
    for name, net in networks().items():
        lat = np.asarray((latency_fn or turn_latency)(log, net, dev), np.float64)
        out[name] = {"latency_mean_s": float(lat.mean()) if lat.size else 0.0,
                     "latency_p95_s": float(np.percentile(lat, 95)) if lat.size else 0.0,
                     "edge_energy_j": float(edge_energy(log, net, dev).mean()) if lat.size else 0.0}
    return out


def train_derived(costs: dict, rounds: int, clients_per_round: int) -> dict:
    """Training: a round is download, local compute, upload (per mean client), then the cloud update.

    {profile: {round_latency_s, total_time_s, edge_energy_j_per_client_round}}.
    """
    dev, out = devices(), {}
    R, k = max(int(rounds), 1), max(int(clients_per_round), 1)
    per = {key: costs.get(key, 0) / (R * k) for key in ("bytes_up", "bytes_down", "edge_flops")}
    cloud_s = costs.get("cloud_flops", 0) / R / dev["cloud"]["flops_per_s"]
    for name, net in networks().items():
        t_up = per["bytes_up"] * 8 / net["up_bps"]
        t_down = per["bytes_down"] * 8 / net["down_bps"]
        t_edge = per["edge_flops"] / dev["edge"]["flops_per_s"]
        rnd = net["rtt_s"] + t_down + t_edge + t_up + cloud_s
        energy = (dev["edge"]["joule_per_flop"] * per["edge_flops"] + net["tx_w"] * t_up
                  + net["rx_w"] * t_down)
        out[name] = {"round_latency_s": rnd, "total_time_s": rnd * R,
                     "edge_energy_j_per_client_round": energy}
    return out
