"""A tiny training task for harness tests: 6 clients, linear softmax data.

Loaded by file path (`--task=tests/plugins/tiny_train.py:TASK`), exactly as an
outside researcher would load their own task. It builds one view per side with
``tasks._train_common.make_views`` (the same helper the built-in tasks use).
"""
import numpy as np

from lsbench import api
from lsbench.task import TaskSpec, TrainInstance
from tasks._train_common import make_views


def _linear(d, k):
    def init(rng):
        import jax
        import jax.numpy as jnp
        return {"w": 0.01 * jax.random.normal(rng, (d, k)), "b": jnp.zeros((k,), jnp.float32)}

    def apply(p, x):
        return x @ p["w"] + p["b"]
    return api.ModelDef("linear", init, apply, info={"d": d, "k": k, "params": d * k + k})


def build(spec, data_dir, seed):
    cfg = spec.config
    C, d, k, nmax = cfg["clients"], cfg["dim"], cfg["classes"], cfg["max_n"]
    rng = np.random.default_rng(1234)  # the data is fixed; the seed drives training
    w = rng.normal(size=(d, k))
    n = rng.integers(nmax // 2, nmax + 1, size=C)
    n[0] = nmax
    x = rng.normal(size=(C, nmax, d)).astype(np.float32)
    y = np.argmax(x @ w + 0.5 * rng.normal(size=(C, nmax, k)), -1).astype(np.int32)
    gx = rng.normal(size=(200, d)).astype(np.float32)
    gy = np.argmax(gx @ w, -1).astype(np.int32)
    nt = np.full(C, 8)
    tiers = tuple(cfg.get("tiers", ("full",)))
    models = {"edge": _linear(d, k), "cloud": _linear(d, k)}
    models.update({f"edge/{t}": _linear(d, k) for t in tiers})
    edge_views, cloud_view = make_views(
        spec, num_classes=k, input_shape=(d,), models=models, tiers={t: 1.0 for t in tiers},
        num_clients=C, max_client_n=int(n.max()), public=gx[:50], dataset="tiny",
        partition_kind="tiny", budgets=cfg.get("edge_budgets"))
    return TrainInstance(
        edge_views=edge_views, cloud_view=cloud_view, train_x=x, train_y=y, train_n=n,
        test_x=x[:, :8], test_y=y[:, :8], test_n=nt, global_test_x=gx, global_test_y=gy,
        client_tier=(np.arange(C) % len(tiers)).astype(np.int32), tiers=tiers,
        rounds=cfg["rounds"], clients_per_round=cfg["clients_per_round"],
        local_epochs=cfg["local_epochs"], batch_size=cfg["batch_size"],
        max_local_steps=cfg["max_local_steps"], eval_every=cfg["eval_every"],
        straggler_fraction=cfg.get("stragglers", 0.0), hashes={"data": "tiny-v1", "partition": f"tiny-{seed}"},  # as real tasks: per seed
        edge_budgets=dict(cfg.get("edge_budgets", {})))


TASK = TaskSpec(name="test/tiny-train", version="1", track="train",
                description="tiny linear task for harness tests", primary_metric="edge_accuracy",
                target=0.5, tier="small",
                config=dict(clients=6, dim=5, classes=3, max_n=40, rounds=6, clients_per_round=4,
                            local_epochs=1.0, batch_size=8, max_local_steps=10, eval_every=2),
                builder=build)

# A long variant for kill-and-resume tests.
LONG = TaskSpec(name="test/tiny-train-long", version="1", track="train",
                description="tiny linear task, many rounds", primary_metric="edge_accuracy",
                target=0.5, tier="small",
                config=dict(TASK.config, rounds=1500, eval_every=50), builder=build)
