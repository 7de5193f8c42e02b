"""Shared builder of training-track tasks: dataset -> client partition -> padded
per-client arrays, plus the edge/cloud model zoo, capacity tiers and one view
per side.

``spec.config`` keys: ``dataset`` (+ ``data``: loader kwargs), ``partition``
(+ ``alpha``, ``classes_per_client``, ``test_frac``), ``val_frac`` (the validation
split's share of the train pool, default 0.1), ``clients``, ``edge`` and
``cloud`` (zoo family + kwargs), ``tiers`` ({name: width}), the protocol sizes
(``rounds``, ``clients_per_round``, ``local_epochs``, ``batch_size``,
``max_local_steps``, ``eval_every``, ``stragglers``), ``pooled_epochs`` (the
centralized reference's passes over the pooled data in all; default: one
``local_epochs`` per round) and ``edge_budgets``
(enforced per edge: ``param_bytes``, optionally ``state_bytes`` and
``flops_per_example``; part of the versioned spec).

Views (``lsbench.api.TrainView``): ``models`` has ``edge`` (full width),
``cloud`` and ``edge/<tier>`` per tier, on both sides (architectures are
public); the typed protocol fields (``tiers``, ``tier_width``,
``num_clients``, ``clients_per_round``, ``rounds``, ``local_epochs``,
``batch_size``, ``max_local_steps``, ``stragglers``, ``max_client_n``,
``dataset``, ``partition``) are the same on both sides; ``budgets`` holds the
edge budgets. One edge view per tier (``view.tier``). Clients are assigned to
tiers round-robin (client c -> tier c mod #tiers). ``public`` (the dataset's
unlabelled public split, x only) is on the cloud view only: the training loop
hands it to the edge views, billed as setup bytes down per client, when a
method declares ``edge_uses_public``. Neither view holds clients' data or the
test sets: those are the instance's ``hidden()`` data, which reach the edge
only as batches.

Validation split (``TrainInstance.global_val_x/y``): ``val_frac`` of the
dataset's train pool, drawn before the client partition, stratified by natural
device (each keeps >= 1 train example) or else by label, from a generator fixed
by the task version alone: every seed of a task version sees the same split,
so selection across seeds uses one validation set. It is disjoint from the
clients' train and local test rows, the global test set and the public split.
"""
from __future__ import annotations

import numpy as np

from lsbench import api
from lsbench.data import catalog, partition
from lsbench.models import train_zoo
from lsbench.task import TaskError, TrainInstance

BUDGET_KEYS = ("param_bytes", "state_bytes", "flops_per_example")


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


def edge_budgets(cfg) -> dict:
    """The task's declared edge budgets (ints), checked for unknown keys."""
    b = dict(cfg.get("edge_budgets", {}))
    bad = sorted(set(b) - set(BUDGET_KEYS))
    if bad:
        raise TaskError(f"unknown edge budget(s) {', '.join(bad)}; use {', '.join(BUDGET_KEYS)}")
    return {k: int(v) for k, v in b.items()}


def make_views(spec, *, num_classes, input_shape, models, tiers: dict, num_clients: int,
               max_client_n: int, public=None, dataset: str = "", partition_kind: str = "",
               budgets=None):
    """(edge_views {tier: TrainView}, cloud_view) from a task's config and facts.
    Also used by test tasks; protocol sizes come from ``spec.config``."""
    cfg = spec.config
    common = dict(
        task=spec.name, version=spec.version, track="train", num_classes=int(num_classes),
        input_shape=tuple(input_shape), models=dict(models), budgets=dict(budgets or {}),
        tiers=tuple(tiers), tier_width={t: float(w) for t, w in tiers.items()},
        num_clients=int(num_clients), clients_per_round=int(cfg["clients_per_round"]),
        rounds=int(cfg["rounds"]), local_epochs=float(cfg["local_epochs"]),
        batch_size=int(cfg["batch_size"]), max_local_steps=int(cfg["max_local_steps"]),
        stragglers=float(cfg.get("stragglers", 0.0)), max_client_n=int(max_client_n),
        dataset=dataset, partition=partition_kind)
    edge = {t: api.TrainView(side="edge", tier=t, **common) for t in tiers}
    cloud = api.TrainView(side="cloud", public=public, **common)
    return edge, cloud


def holdout(ds, frac: float, version: str):
    """(validation indices, kept indices) of ``ds``'s train pool: ``frac`` of each
    natural device's rows (or of each class's), fixed by the task version."""
    if not 0.0 <= frac < 1.0:
        raise TaskError(f"val_frac must be in [0, 1), got {frac}; use e.g. 0.1")
    rng = partition.rng_for(version, 0, "validation")
    groups = ds.device if ds.device is not None else ds.y
    val = []
    for g in np.unique(groups):
        idx = rng.permutation(np.where(groups == g)[0])
        k = int(round(frac * len(idx)))
        val.append(idx[:min(k, len(idx) - 1) if ds.device is not None else k])
    val = np.sort(np.concatenate(val)).astype(np.int64)
    keep = np.setdiff1d(np.arange(len(ds.y)), val)
    return val, keep


def build(spec, data_dir, seed) -> TrainInstance:
    cfg = spec.config
    ds = catalog.load(cfg["dataset"], data_dir, **dict(cfg.get("data", {})))
    kind, C = cfg["partition"], int(cfg["clients"])
    val, keep = holdout(ds, float(cfg.get("val_frac", 0.1)), spec.version)
    px, py = ds.x[keep], ds.y[keep]   # the pool the clients share
    if kind == "natural":
        if ds.device is None:
            raise TaskError(f"dataset {ds.name} has no natural clients; use dirichlet or pathological")
        train = partition.natural(ds.device[keep])
        test = partition.natural(ds.test_device)
        if len(train) != C:
            raise TaskError(f"task asks for {C} clients but {ds.name} has {len(train)} devices")
        part = partition.Partition(train, test, partition.partition_hash(train, test))
        tx, ty = ds.test_x, ds.test_y  # each device's own test samples
    else:
        part = partition.make(kind, py, C, spec.version, seed, alpha=cfg.get("alpha", 0.5),
                              classes_per_client=cfg.get("classes_per_client", 2),
                              test_frac=cfg.get("test_frac", 0.2))
        tx, ty = px, py
    X, Y, N = pad_clients(px, py, part.train)
    TX, TY, TN = pad_clients(tx, ty, part.test)

    k, shape = ds.num_classes, ds.input_shape
    tiers = dict(cfg.get("tiers", {"full": 1.0}))
    efam, ekw = cfg["edge"]
    cfam, ckw = cfg["cloud"]
    models = {"edge": make_model(efam, ekw, k, shape), "cloud": make_model(cfam, ckw, k, shape)}
    models.update({f"edge/{t}": make_model(efam, ekw, k, shape, w) for t, w in tiers.items()})
    budgets = edge_budgets(cfg)
    edge_views, cloud_view = make_views(
        spec, num_classes=k, input_shape=shape, models=models, tiers=tiers, num_clients=C,
        max_client_n=int(N.max()), public=ds.public_x, dataset=ds.name, partition_kind=kind,
        budgets=budgets)
    return TrainInstance(
        edge_views=edge_views, cloud_view=cloud_view,
        train_x=X, train_y=Y, train_n=N, test_x=TX, test_y=TY, test_n=TN,
        global_test_x=ds.test_x, global_test_y=ds.test_y,
        global_val_x=ds.x[val], global_val_y=ds.y[val],
        client_tier=(np.arange(C) % len(tiers)).astype(np.int32), tiers=tuple(tiers),
        rounds=int(cfg["rounds"]), clients_per_round=int(cfg["clients_per_round"]),
        local_epochs=float(cfg["local_epochs"]), batch_size=int(cfg["batch_size"]),
        max_local_steps=int(cfg["max_local_steps"]), eval_every=int(cfg["eval_every"]),
        straggler_fraction=float(cfg.get("stragglers", 0.0)),
        pooled_epochs=None if cfg.get("pooled_epochs") is None else float(cfg["pooled_epochs"]),
        hashes={"data": ds.hash, "partition": part.hash,
                "validation": partition.partition_hash([val], [keep])}, edge_budgets=budgets)
