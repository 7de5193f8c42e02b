"""Parameter-efficient edge adaptation (training track): ``adapt/mnist1d`` and
its CI tier ``adapt/mnist1d-small``.

Every client starts from the same pretrained MLP (``TrainView.pretrained``,
on both views; the training loop bills it once per client as setup bytes
down) and holds data with its own shift:
- a personal label skew (Dirichlet(alpha) over classes), and
- a personal feature transform of the 1-D signal: a circular shift by s_c
  positions, a gain g_c and an offset o_c (x -> g_c roll(x, s_c) + o_c), drawn
  per client from the task version.

Data (MNIST-1D): the train pool is split into a validation set (``val_frac``),
a *source* set (``source_frac``, untransformed: the pretraining data, which no
method sees) and the clients' pool (Dirichlet partition with local test
splits). The global test set is the MNIST-1D test split with each example
shifted by client (i mod C)'s transform (the clients' population); the
validation set likewise. Each client's local test rows are halved into its
personal validation rows (``TrainInstance.val_x``: ``validation`` then holds
``edge_personal_accuracy`` too, so selection never reads test) and its personal
test rows. The pretrained backbone is cached by its recipe.

Quality: ``edge_personal_accuracy`` (each client's own model on its own test
data; primary), global ``edge_accuracy`` too. Edge budget: ``param_bytes`` =
the fp32 backbone plus 25% (room for adapters, not for a second backbone).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from lsbench.task import TaskSpec


def transforms(version: str, C: int, max_shift: int):
    from lsbench.data import partition
    rng = partition.rng_for(version, 0, "client-transforms")
    return {"shift": rng.integers(-max_shift, max_shift + 1, C),
            "gain": rng.uniform(0.5, 1.5, C), "offset": rng.uniform(-0.5, 0.5, C)}


def transform(x, t, c):
    return (t["gain"][c] * np.roll(x, int(t["shift"][c]), axis=-1) + t["offset"][c]).astype(np.float32)


def pretrain(data_dir, cfg, model, x, y, data_hash):
    from lsbench.models import vision
    from lsbench.models.cache import cached_params
    from baselines._train_common import xent
    rc = dict(cfg["pretrain"])
    recipe = {"family": "adapt", "model": model.name, "data": data_hash, **rc,
              "arch": {k: v for k, v in model.info.items() if isinstance(v, (int, str, tuple))}}

    def train(*_):
        import jax
        return vision.fit(lambda p, xb, yb: xent(model.apply(p, xb), yb),
                          model.init(jax.random.PRNGKey(rc["seed"])), x, y, epochs=rc["epochs"],
                          batch=rc["batch"], lr=rc["lr"], seed=rc["seed"])
    return cached_params(data_dir, f"adapt-{model.name}", recipe, train)


def build(spec, data_dir, seed):
    from lsbench.data import catalog, partition, tfds_util
    from lsbench.models import train_zoo
    from lsbench.task import TrainInstance
    from tasks._train_common import edge_budgets, make_views, pad_clients
    cfg = spec.config
    ds = catalog.load("mnist1d", data_dir, **dict(cfg.get("data", {})))
    C = int(cfg["clients"])
    rng = partition.rng_for(spec.version, 0, "adapt-split")
    perm = rng.permutation(len(ds.y))
    n_val, n_src = int(cfg["val_frac"] * len(perm)), int(cfg["source_frac"] * len(perm))
    val, src, pool = perm[:n_val], perm[n_val:n_val + n_src], np.sort(perm[n_val + n_src:])
    model = train_zoo.mlp(ds.num_classes, ds.input_shape, hidden=tuple(cfg["hidden"]))
    src_hash = tfds_util.array_hash(ds.x[src], ds.y[src])
    backbone, key = pretrain(data_dir, cfg, model, ds.x[src], ds.y[src], src_hash)

    px, py = ds.x[pool], ds.y[pool]
    part = partition.make("dirichlet", py, C, spec.version, seed, alpha=cfg["alpha"],
                          test_frac=cfg["test_frac"])
    t = transforms(spec.version, C, cfg["max_shift"])
    # Each client's local test rows are halved: its personal validation rows and its personal test rows.
    rv = partition.rng_for(spec.version, seed, "adapt-personal-val")
    pv, pt = [], []
    for idx in part.test:
        idx = rv.permutation(np.asarray(idx, np.int64))
        pv.append(np.sort(idx[: len(idx) // 2]))
        pt.append(np.sort(idx[len(idx) // 2:]))
    X, Y, N = pad_clients(px, py, part.train)
    TX, TY, TN = pad_clients(px, py, pt)
    VX, VY, VN = pad_clients(px, py, pv)
    X, TX, VX = X.astype(np.float32), TX.astype(np.float32), VX.astype(np.float32)
    for c in range(C):
        X[c], TX[c], VX[c] = transform(X[c], t, c), transform(TX[c], t, c), transform(VX[c], t, c)

    def population(x):
        return np.stack([transform(x[i], t, i % C) for i in range(len(x))])

    models = {"edge": model, "cloud": model, "edge/full": model}
    budgets = edge_budgets(cfg)
    edge_views, cloud_view = make_views(
        spec, num_classes=ds.num_classes, input_shape=ds.input_shape, models=models,
        tiers={"full": 1.0}, num_clients=C, max_client_n=int(N.max()), dataset=ds.name,
        partition_kind="dirichlet+transform", budgets=budgets)
    edge_views = {k: dataclasses.replace(v, pretrained=backbone) for k, v in edge_views.items()}
    cloud_view = dataclasses.replace(cloud_view, pretrained=backbone)
    return TrainInstance(
        edge_views=edge_views, cloud_view=cloud_view,
        train_x=X, train_y=Y, train_n=N, test_x=TX, test_y=TY, test_n=TN,
        global_test_x=population(ds.test_x), global_test_y=ds.test_y,
        global_val_x=population(ds.x[val]), global_val_y=ds.y[val], val_x=VX, val_y=VY, val_n=VN,
        client_tier=np.zeros(C, np.int32), tiers=("full",),
        rounds=int(cfg["rounds"]), clients_per_round=int(cfg["clients_per_round"]),
        local_epochs=float(cfg["local_epochs"]), batch_size=int(cfg["batch_size"]),
        max_local_steps=int(cfg["max_local_steps"]), eval_every=int(cfg["eval_every"]),
        hashes={"data": ds.hash, "partition": part.hash, "model_pretrained": key},
        edge_budgets=budgets)


def _budget(hidden, d_in=40, classes=10):
    dims = (d_in,) + tuple(hidden) + (classes,)
    params = sum(a * b + b for a, b in zip(dims, dims[1:]))
    return {"param_bytes": int(4 * params * 1.25)}


def _config(**kw):
    cfg = dict(data={"size": "large"}, val_frac=0.1, source_frac=0.25, alpha=0.5, test_frac=0.2,
               max_shift=6, hidden=(512, 512), clients=50, clients_per_round=10, rounds=30,
               local_epochs=1.0, batch_size=32, max_local_steps=20, eval_every=5,
               pretrain={"epochs": 20, "batch": 128, "lr": 1e-3, "seed": 0})
    cfg.update(kw)
    cfg["edge_budgets"] = _budget(cfg["hidden"])
    cfg["family"] = "adapt"
    return cfg


TASK = TaskSpec(
    name="adapt/mnist1d", version="2", track="train",
    description="adapt a pretrained MLP to 50 clients with label skew and a personal signal "
                "transform; personal accuracy",
    primary_metric="edge_personal_accuracy", config=_config(), builder=build)

SMALL = TaskSpec(
    name="adapt/mnist1d-small", version="2", track="train", tier="small",
    description="adapt/mnist1d's CI tier (MNIST-1D 4k, 10 clients, 8 rounds)",
    primary_metric="edge_personal_accuracy",
    config=_config(data={"size": "default"}, hidden=(384, 384), clients=10, clients_per_round=5,
                   rounds=8, max_local_steps=10, eval_every=4,
                   pretrain={"epochs": 30, "batch": 64, "lr": 1e-3, "seed": 0}),
    builder=build)
