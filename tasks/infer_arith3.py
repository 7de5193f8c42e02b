"""infer/arith-route3: route each query to one of three models -- a small edge model on
the device, a mid-size model at an edge server, or the large cloud model.

Data and the edge and cloud models are those of ``infer/arith-route`` (same
splits, same recipes: the model cache is shared); the mid model is trained
here the same way. ``tasks.infer_arith.build`` builds both tasks.

Where the mid model runs, and what it costs. The edge server is off the
device, so it belongs to the remote (cloud) side of the API: the cloud view
holds ``params['mid']`` and ``params['cloud']``. A query for the mid model
goes up the same metered channel as one for the cloud (bytes_up/bytes_down,
the same network profile for latency: conservative, since a real edge server
is nearer) and its FLOPs are metered as cloud FLOPs, by the FLOP meter, from
the program that ran (a method that answered "mid" queries with the cloud
model would be billed the cloud model's FLOPs). The cost axis of the routing
curves is therefore the *metered* remote FLOPs of a query normalised by one
cloud forward pass (``tasks._infer_metrics``: ``cost``, ``apgr3``,
``cpt50_3``, ``cpt80_3``, ``aiq3``), not a count of calls a method declares.

Sides: the edge view holds ``params['edge']``; the cloud view the mid and
cloud params and the calibration split. ``test``/``val`` carry
``edge_correct``, ``mid_correct`` and ``cloud_correct`` (the oracle's keys).
Up to three turns: a query-only router sends mid rows in turn 0, cloud rows
in turn 1 and runs the edge model for the rest in turn 2.
"""
from __future__ import annotations

from lsbench.task import TaskSpec
from tasks import infer_arith as A

_CFG3 = {"family": "arith3", "roles": ("edge", "mid", "cloud"), "max_turns": 3}

TASK = TaskSpec(
    name="infer/arith-route3", version="1", track="infer", tier="default",
    description="Route max/min queries between three Transformers: 1-layer edge, 2-layer mid at an "
                "edge server, 3-layer cloud; accuracy vs metered remote cost (APGR3, CPT, AIQ).",
    primary_metric="accuracy", headline_profile="lte",
    config={**A.TASK.config, **_CFG3, "mid": {"d": 48, "layers": 2, "heads": 4, "steps": 600, "lr": 3e-3}},
    builder=A.build)

SMALL = TaskSpec(
    name="infer/arith-route3-small", version="1", track="infer", tier="small",
    description="CI-sized arith-route3: the arith-route-small edge and cloud, a 2-layer d=24 mid model.",
    primary_metric="accuracy", headline_profile="lte",
    config={**A.SMALL.config, **_CFG3, "mid": {"d": 24, "layers": 2, "heads": 2, "steps": 300, "lr": 3e-3}},
    builder=A.build)
