"""Modelled latency and energy from metered counts, and their offline re-derivation.

No JAX: ``rederive(final, profiles)`` recomputes a final.json's ``derived``
figures under any set of profiles, from the compact counts the harness keeps in
``final["derive_inputs"]``. The harness computes its own figures with the same
function on the same counts, so a re-derivation under the shipped profiles
equals what the harness wrote, to the last bit.

The model (``MODEL``). Profiles: per network ``rtt_s``, ``up_bps``,
``down_bps``, ``tx_w``, ``rx_w``; per device side (``edge``, ``cloud``)
``flops_per_s`` (the effective, sustained rate), ``call_s`` (a fixed overhead
per program call: dispatch, memory-bound weight reads); the edge also
``joule_per_flop`` and ``idle_w``.

Turn-based tracks (inference: turns x examples; planning: steps x episodes).
Per example, summed over its turns:

    latency = edge_calls * edge.call_s + edge_flops / edge.flops_per_s
            + requests * rtt_s + bytes_up * 8 / up_bps + bytes_down * 8 / down_bps
            + cloud_calls * cloud.call_s + cloud_flops / cloud.flops_per_s
    energy  = joule_per_flop * edge_flops + tx_w * t_up + rx_w * t_down
            + idle_w * (edge_calls * edge.call_s + requests * rtt_s + cloud time)

where a turn counts one edge call if the example was active (unless the log
gives ``edge_calls``), and, if it sent, one cloud call (unless the log gives
``cloud_calls``), its bytes, and one request (a round trip) if it carried
uplink bytes; a sent turn with no uplink bytes is a push on an open stream
(the cloud continues unasked): no round trip. Figures per profile:
``latency_mean_s``, ``latency_p95_s``, ``edge_energy_j`` (mean per example),
and the means of the parts ``edge_s``, ``network_s``, ``cloud_s``.

Rounds (training), per round and mean sampled client: ``rtt_s`` + download +
local compute (``edge_flops / (R k) / edge.flops_per_s`` + edge calls per
client-round x ``call_s``) + upload + the cloud's compute (``cloud_flops / R /
cloud.flops_per_s`` + cloud calls per round x ``call_s``). Calls default to
one per client-round and one per round. Figures: ``round_latency_s``,
``total_time_s``, ``edge_energy_j_per_client_round``.

Setup work (``setup_*`` costs) is one-time and not part of these figures.

Compact counts: a turn-based run keeps, per example, the 7 sums above
(``KEYS``); equal vectors are stored once with a count, at most ``MAX_ROWS``
distinct rows. Means come from exact totals; when more than ``MAX_ROWS``
vectors differ, each value is rounded to fewer significant digits (recorded
as ``digits``) until they fit, which only affects the p95.
"""
from __future__ import annotations

import json
import os

import numpy as np

MODEL = "lsbench.derive/1"
KEYS = ("edge_calls", "edge_flops", "requests", "bytes_up", "bytes_down", "cloud_calls", "cloud_flops")
MAX_ROWS = 256
PROFILES_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "metering", "profiles.json")


def load_profiles(path: str = PROFILES_PATH) -> dict:
    with open(path) as f:
        return json.load(f)


# ------------------------------------------------------------------ compact counts
def _round_sig(a: np.ndarray, digits: int) -> np.ndarray:
    """Integers rounded to ``digits`` significant digits (exactly, in int64)."""
    a = np.asarray(a, np.int64)
    mag = np.where(a > 0, np.floor(np.log10(np.maximum(a, 1))).astype(np.int64) + 1, 0)
    scale = 10 ** np.maximum(mag - digits, 0)
    return (a + scale // 2) // scale * scale


def turn_counts(log) -> dict:
    """Per-example sums (int64[N] each, ``KEYS``) of a per-turn log [turns, N]."""
    sent = np.asarray(log["sent"], bool)
    active = np.asarray(log["active"], bool) if "active" in log else np.ones(sent.shape, bool)
    up = np.where(sent, np.asarray(log["bytes_up"], np.int64), 0)
    down = np.where(sent, np.asarray(log["bytes_down"], np.int64), 0)
    e_calls = np.asarray(log["edge_calls"], np.int64) if "edge_calls" in log else active.astype(np.int64)
    c_calls = (np.where(sent, np.asarray(log["cloud_calls"], np.int64), 0) if "cloud_calls" in log
               else sent.astype(np.int64))
    return {"edge_calls": e_calls.sum(0), "edge_flops": np.asarray(log["edge_flops"], np.int64).sum(0),
            "requests": (sent & (up > 0)).astype(np.int64).sum(0), "bytes_up": up.sum(0),
            "bytes_down": down.sum(0), "cloud_calls": c_calls.sum(0),
            "cloud_flops": np.where(sent, np.asarray(log["cloud_flops"], np.int64), 0).sum(0)}


def record_turns(log, max_rows: int = MAX_ROWS) -> dict:
    """The compact counts of a turn-based run (JSON-ready)."""
    per = turn_counts(log)
    mat = np.stack([np.asarray(per[k], np.int64).reshape(-1) for k in KEYS], 1) if per else np.zeros((0, 7))
    n = int(mat.shape[0])
    digits = None
    rows, counts = np.unique(mat, axis=0, return_counts=True) if n else (mat, np.zeros(0, np.int64))
    for d in (6, 5, 4, 3, 2, 1):
        if len(rows) <= max_rows:
            break
        digits = d
        rows, counts = np.unique(_round_sig(mat, d), axis=0, return_counts=True)
    return {"model": MODEL, "kind": "turns", "n": n, "keys": list(KEYS),
            "sum": [int(v) for v in mat.sum(0)] if n else [0] * len(KEYS),
            "rows": [[int(v) for v in r] for r in rows], "count": [int(c) for c in counts],
            "digits": digits}


def record_rounds(costs, units: int, clients_per_round: int) -> dict:
    """The counts a training run's figures need (JSON-ready)."""
    R, k = max(int(units), 1), max(int(clients_per_round), 1)
    c = {key: int(costs.get(key, 0) or 0) for key in ("bytes_up", "bytes_down", "edge_flops", "cloud_flops")}
    return {"model": MODEL, "kind": "rounds", "units": R, "clients_per_round": k, **c,
            "edge_calls": int(costs.get("edge_calls", R * k) or 0),
            "cloud_calls": int(costs.get("cloud_calls", R) or 0)}


# ------------------------------------------------------------------ the model
def _coef(net, dev) -> tuple[np.ndarray, np.ndarray, dict]:
    """Seconds per unit of each count (latency), and joules per unit (energy)."""
    e, c = dev["edge"], dev["cloud"]
    sec = {"edge_calls": e.get("call_s", 0.0), "edge_flops": 1.0 / e["flops_per_s"],
           "requests": net["rtt_s"], "bytes_up": 8.0 / net["up_bps"], "bytes_down": 8.0 / net["down_bps"],
           "cloud_calls": c.get("call_s", 0.0), "cloud_flops": 1.0 / c["flops_per_s"]}
    idle = e.get("idle_w", 0.0)
    joule = {"edge_calls": idle * sec["edge_calls"], "edge_flops": e.get("joule_per_flop", 0.0),
             "requests": idle * sec["requests"], "bytes_up": net.get("tx_w", 0.0) * sec["bytes_up"],
             "bytes_down": net.get("rx_w", 0.0) * sec["bytes_down"],
             "cloud_calls": idle * sec["cloud_calls"], "cloud_flops": idle * sec["cloud_flops"]}
    return (np.array([sec[k] for k in KEYS], np.float64), np.array([joule[k] for k in KEYS], np.float64),
            sec)


PARTS = {"edge_s": ("edge_calls", "edge_flops"), "network_s": ("requests", "bytes_up", "bytes_down"),
         "cloud_s": ("cloud_calls", "cloud_flops")}


def _turns(rec, net, dev) -> dict:
    sec, joule, _ = _coef(net, dev)
    n = rec["n"]
    if not n:
        return {"latency_mean_s": 0.0, "latency_p95_s": 0.0, "edge_energy_j": 0.0,
                **{p: 0.0 for p in PARTS}}
    idx = {k: i for i, k in enumerate(rec["keys"])}
    order = [idx[k] for k in KEYS]
    total = np.array(rec["sum"], np.float64)[order]
    rows = np.array(rec["rows"], np.float64).reshape(-1, len(rec["keys"]))[:, order]
    lat = rows @ sec
    out = {"latency_mean_s": float(total @ sec / n),
           "latency_p95_s": float(np.percentile(np.repeat(lat, np.asarray(rec["count"], np.int64)), 95)),
           "edge_energy_j": float(total @ joule / n)}
    for part, keys in PARTS.items():
        m = np.array([k in keys for k in KEYS])
        out[part] = float(total[m] @ sec[m] / n)
    return out


def _rounds(rec, net, dev) -> dict:
    e, c = dev["edge"], dev["cloud"]
    R, k = rec["units"], rec["clients_per_round"]
    per = lambda key: rec[key] / (R * k)  # noqa: E731 - per mean client-round
    t_up = per("bytes_up") * 8 / net["up_bps"]
    t_down = per("bytes_down") * 8 / net["down_bps"]
    t_call = per("edge_calls") * e.get("call_s", 0.0)
    t_edge = per("edge_flops") / e["flops_per_s"] + t_call
    t_cloud = rec["cloud_flops"] / R / c["flops_per_s"] + rec["cloud_calls"] / R * c.get("call_s", 0.0)
    rnd = net["rtt_s"] + t_down + t_edge + t_up + t_cloud
    energy = (e.get("joule_per_flop", 0.0) * per("edge_flops") + net.get("tx_w", 0.0) * t_up
              + net.get("rx_w", 0.0) * t_down + e.get("idle_w", 0.0) * t_call)
    return {"round_latency_s": rnd, "total_time_s": rnd * R, "edge_energy_j_per_client_round": energy}


def from_record(rec: dict, profiles: dict) -> dict:
    """{network profile: figures} of one record under ``profiles``."""
    if rec.get("model") != MODEL:
        raise ValueError(f"derive inputs are of model {rec.get('model')!r}, not {MODEL!r}")
    fn = {"turns": _turns, "rounds": _rounds}[rec["kind"]]
    dev = profiles["device"]
    return {name: fn(rec, net, dev) for name, net in profiles["network"].items()}


def rederive(final: dict, profiles: dict | None = None) -> dict:
    """The ``derived`` block of a final.json, recomputed from its ``derive_inputs``
    under ``profiles`` (default: the shipped ``profiles.json``)."""
    rec = final.get("derive_inputs")
    if not rec:
        raise ValueError("final.json has no derive_inputs (written before lsbench.derive/1?)")
    return {"modelled": True, **from_record(rec, profiles or load_profiles())}


def latency_of(counts: dict, net: dict, dev: dict) -> float:
    """The modelled latency of one example with the given sums (``KEYS``; missing: 0),
    e.g. for a method that plans a split under the harness's own model."""
    sec, _, _ = _coef(net, dev)
    return float(np.array([float(counts.get(k, 0)) for k in KEYS]) @ sec)
