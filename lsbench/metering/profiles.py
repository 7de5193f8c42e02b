"""Network and device profiles (shipped as profiles.json) and the latency and
energy they imply: modelled figures, computed only from metered counts (FLOPs,
bytes, calls) and these public profiles. No task or method sets a latency
constant of its own.

The model and its compact inputs live in :mod:`lsbench.results.derive` (no
JAX), so a final.json can be re-derived offline under other profiles:
``derived(log)`` and ``train_derived(...)`` return a :class:`Derived`, a dict
``{network profile: figures}`` whose ``inputs`` attribute holds the compact
counts it was computed from; the runner writes the figures to final.json as
``derived`` (marked ``"modelled": true``) and the counts as ``derive_inputs``.
"""
from __future__ import annotations

import functools
import json
import os

import numpy as np

from lsbench.errors import TaskError
from lsbench.results import derive

PATH = os.path.join(os.path.dirname(__file__), "profiles.json")


@functools.lru_cache(None)
def _load(path: str) -> str:
    with open(path) as f:
        return f.read()


def load(path: str = PATH) -> dict:
    """The profiles (a fresh copy each call)."""
    return json.loads(_load(path))


def networks() -> dict:
    return load()["network"]


def devices() -> dict:
    return load()["device"]


class Derived(dict):
    """``{network profile: {figure: value}}``; ``inputs``: the compact counts
    (``lsbench.results.derive``) they were computed from."""

    def __init__(self, figures, inputs):
        super().__init__(figures)
        self.inputs = inputs


def derived(log, latency_fn=None, profiles: dict | None = None) -> Derived:
    """Per-profile latency and energy of a turn-based run.

    ``log``: per-turn arrays [turns, examples] (planning: steps x episodes):
    ``edge_flops``, ``cloud_flops``, ``bytes_up``, ``bytes_down``, ``sent``,
    ``active``; optionally ``edge_calls`` / ``cloud_calls`` (program calls per
    turn; default one per active / sent turn). See ``lsbench.results.derive``."""
    if latency_fn is not None:
        raise TaskError("a task may not set its own latency model (latency_fn); latency comes "
                        "from metered counts and lsbench/metering/profiles.json only")
    rec = derive.record_turns(log)
    return Derived(derive.from_record(rec, profiles or load()), rec)


def train_derived(costs: dict, units: int, clients_per_round: int, profiles: dict | None = None) -> Derived:
    """Training: per round, download, local compute, upload (mean sampled client),
    then the cloud's update. ``costs`` may give ``edge_calls`` / ``cloud_calls``
    (program calls in the run; default one per client-round / round)."""
    rec = derive.record_rounds(costs, units, clients_per_round)
    return Derived(derive.from_record(rec, profiles or load()), rec)


def turn_latency(log, net, dev) -> np.ndarray:
    """Seconds per example (summed over turns), float[N], under one network profile."""
    per = derive.turn_counts(log)
    sec, _, _ = derive._coef(net, dev)
    mat = np.stack([np.asarray(per[k], np.float64) for k in derive.KEYS], 1)
    return mat @ sec


def edge_energy(log, net, dev) -> np.ndarray:
    """Joules spent on the device per example, float[N], under one network profile."""
    per = derive.turn_counts(log)
    _, joule, _ = derive._coef(net, dev)
    mat = np.stack([np.asarray(per[k], np.float64) for k in derive.KEYS], 1)
    return mat @ joule


def example_latency(net: dict, dev: dict, edge_flops=0, cloud_flops=0, bytes_up=0, bytes_down=0,
                    edge_calls=1, cloud_calls=None, requests=None) -> float:
    """The harness's latency for one example of one turn (a method may plan with it).
    A turn that sends (``cloud_calls``/``requests`` default to 1 when any byte or
    cloud FLOP is involved) pays a round trip if it carries uplink bytes."""
    sends = bool(bytes_up or bytes_down or cloud_flops)
    cloud_calls = int(sends) if cloud_calls is None else cloud_calls
    requests = int(bool(bytes_up)) if requests is None else requests
    return derive.latency_of({"edge_calls": edge_calls, "edge_flops": edge_flops, "requests": requests,
                              "bytes_up": bytes_up, "bytes_down": bytes_down, "cloud_calls": cloud_calls,
                              "cloud_flops": cloud_flops}, net, dev)
