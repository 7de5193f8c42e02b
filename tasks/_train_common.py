"""Shared builder of training-track tasks: dataset -> client partition -> padded
per-client arrays, plus the edge/cloud model zoo and capacity tiers.

``spec.config`` keys: ``dataset`` (+ ``data``: loader kwargs), ``partition``
(+ ``alpha``, ``classes_per_client``, ``test_frac``), ``clients``, ``edge`` and
``cloud`` (zoo family + kwargs), ``tiers`` ({name: width}), and the budgets
(``rounds``, ``clients_per_round``, ``local_epochs``, ``batch_size``,
``max_local_steps``, ``eval_every``, ``stragglers``).

Conventions the training methods rely on: ``ctx.models`` has ``edge`` (full
width), ``cloud`` and ``edge/<tier>`` per tier; ``ctx.extras`` has ``tiers``
(names) and ``tier_width`` ({tier: width}); clients are assigned to tiers
round-robin (client c -> tier c mod #tiers); ``ctx.public`` is the dataset's
unlabelled public split (x only) when it has one.
"""
from __future__ import annotations

import numpy as np

from lsbench import api
from lsbench.data import catalog, partition
from lsbench.models import train_zoo
from lsbench.task import TaskError, TrainInstance

BUDGET_KEYS = ("rounds", "clients_per_round", "local_epochs", "batch_size", "max_local_steps",
               "eval_every", "stragglers")


def make_model(family: str, kw: dict, classes: int, input_shape, width: float = 1.0) -> api.ModelDef:
    kw = dict(kw)
    if family == "mlp":
        return train_zoo.mlp(classes, input_shape, width=width, **kw)
    if family == "cnn":
        return train_zoo.cnn(classes, input_shape, width=width, **kw)
    if family == "linear":
        return train_zoo.linear(classes, input_shape)
    raise TaskError(f"unknown model family '{family}'; use mlp, cnn or linear")


def pad_clients(x, y, parts):
    """Stacks per-client index lists into padded arrays x[C, n_max, ...], y, n."""
    n = np.array([len(p) for p in parts], np.int32)
    nmax = max(int(n.max()), 1)
    X = np.zeros((len(parts), nmax) + x.shape[1:], x.dtype)
    Y = np.zeros((len(parts), nmax), np.int32)
    for c, p in enumerate(parts):
        X[c, : len(p)], Y[c, : len(p)] = x[p], y[p]
    return X, Y, n


def build(spec, data_dir, seed) -> TrainInstance:
    cfg = spec.config
    ds = catalog.load(cfg["dataset"], data_dir, **dict(cfg.get("data", {})))
    kind, C = cfg["partition"], int(cfg["clients"])
    if kind == "natural":
        if ds.device is None:
            raise TaskError(f"dataset {ds.name} has no natural clients; use dirichlet or pathological")
        train = partition.natural(ds.device)
        test = partition.natural(ds.test_device)
        if len(train) != C:
            raise TaskError(f"task asks for {C} clients but {ds.name} has {len(train)} devices")
        part = partition.Partition(train, test, partition.partition_hash(train, test))
        tx, ty = ds.test_x, ds.test_y  # each device's own test samples
    else:
        part = partition.make(kind, ds.y, C, spec.version, seed, alpha=cfg.get("alpha", 0.5),
                              classes_per_client=cfg.get("classes_per_client", 2),
                              test_frac=cfg.get("test_frac", 0.2))
        tx, ty = ds.x, ds.y
    X, Y, N = pad_clients(ds.x, ds.y, part.train)
    TX, TY, TN = pad_clients(tx, ty, part.test)

    k, shape = ds.num_classes, ds.input_shape
    tiers = dict(cfg.get("tiers", {"full": 1.0}))
    efam, ekw = cfg["edge"]
    cfam, ckw = cfg["cloud"]
    models = {"edge": make_model(efam, ekw, k, shape), "cloud": make_model(cfam, ckw, k, shape)}
    models.update({f"edge/{t}": make_model(efam, ekw, k, shape, w) for t, w in tiers.items()})
    budgets = {key: cfg[key] for key in BUDGET_KEYS if key in cfg}
    extras = {"tiers": tuple(tiers), "tier_width": dict(tiers), "num_clients": C, "partition": kind,
              "alpha": cfg.get("alpha"), "dataset": ds.name}
    ctx = api.TaskContext(task=spec.name, version=spec.version, track="train", num_classes=k,
                          input_shape=shape, models=models, public=ds.public_x, budgets=budgets,
                          extras=extras)
    return TrainInstance(
        ctx=ctx, train_x=X, train_y=Y, train_n=N, test_x=TX, test_y=TY, test_n=TN,
        global_test_x=ds.test_x, global_test_y=ds.test_y,
        client_tier=(np.arange(C) % len(tiers)).astype(np.int32), tiers=tuple(tiers),
        rounds=int(cfg["rounds"]), clients_per_round=int(cfg["clients_per_round"]),
        local_epochs=float(cfg["local_epochs"]), batch_size=int(cfg["batch_size"]),
        max_local_steps=int(cfg["max_local_steps"]), eval_every=int(cfg["eval_every"]),
        straggler_fraction=float(cfg.get("stragglers", 0.0)),
        hashes={"data": ds.hash, "partition": part.hash})
