"""Training-track tasks and baselines: conventions, exact bytes, FedProx/straggler
logic, and (slow) the external sanity checks."""
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsbench.harness.runner import RunConfig, execute
from lsbench.task import TaskError


@pytest.fixture(scope="module")
def ddir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("train_data"))


def _run(task, method, workdir, ddir, **kw):
    final = execute(RunConfig(task=task, method=method, workdir=str(workdir), data_dir=ddir, **kw),
                    log=lambda *a: None)
    rows = [json.loads(l) for l in open(os.path.join(str(workdir), "metrics.jsonl"))]
    return final, rows


def test_digits_task_conventions(ddir):
    from tasks.train_digits import TASK
    inst = TASK.build(ddir, 0)
    ctx = inst.ctx
    assert set(ctx.models) >= {"edge", "cloud", "edge/small", "edge/full"}
    assert ctx.extras["tiers"] == inst.tiers == ("small", "full")
    assert ctx.extras["tier_width"] == {"small": 0.5, "full": 1.0}
    assert ctx.models["edge/small"].info["params"] < ctx.models["edge/full"].info["params"]
    assert ctx.models["cloud"].info["params"] > ctx.models["edge"].info["params"]
    assert ctx.public is not None and ctx.public.shape[1:] == ctx.input_shape
    C = len(inst.train_n)
    assert C == 20 and inst.train_x.shape[:2] == (C, inst.train_n.max())
    assert inst.train_n.min() >= 1 and set(np.unique(inst.client_tier)) == {0, 1}
    # padded rows are zeros; real rows are real images
    c = int(np.argmin(inst.train_n))
    assert not inst.train_x[c, inst.train_n[c]:].any()
    assert {"data", "partition"} <= set(inst.hashes)
    other = TASK.build(ddir, 1)
    assert other.hashes["data"] == inst.hashes["data"]
    assert other.hashes["partition"] != inst.hashes["partition"]
    assert TASK.build(ddir, 0).hashes == inst.hashes


def test_bad_task_config_one_line(ddir):
    from tasks.train_digits import TASK
    for cfg, word in ((dict(TASK.config, alpha=0.0), "alpha"), (dict(TASK.config, clients=5000), "clients"),
                      (dict(TASK.config, dataset="nope"), "unknown dataset"),
                      (dict(TASK.config, dataset="cifar10"), "tfds build")):  # real data not in data_dir
        with pytest.raises(TaskError) as e:
            dataclasses.replace(TASK, config=cfg).build(ddir, 0)
        assert word in str(e.value) and "\n" not in str(e.value)


def test_fedavg_bytes_exact(ddir, tmp_path):
    from tasks.train_digits import TASK
    final, rows = _run("train/digits", "fedavg", tmp_path / "fa", ddir, max_units=3)
    inst = TASK.build(ddir, 0)
    model = inst.ctx.models["edge"]
    pbytes = sum(np.asarray(a).nbytes for a in jax.tree_util.tree_leaves(model.init(jax.random.PRNGKey(0))))
    assert pbytes == 4 * model.info["params"]
    k = TASK.config["clients_per_round"]
    prev_up = prev_down = 0
    for r in rows:  # every round: k models down and k models up, exactly
        assert r["bytes_up"] - prev_up == k * pbytes
        assert r["bytes_down"] - prev_down == k * pbytes
        prev_up, prev_down = r["bytes_up"], r["bytes_down"]
    assert final["costs"]["bytes_up"] == final["costs"]["bytes_down"] == 3 * k * pbytes
    assert final["costs"]["edge_flops"] > 0
    assert 0.0 <= final["metrics"]["edge_accuracy"] <= 1.0


def test_local_sends_nothing_and_centralized_pools(ddir, tmp_path):
    final, _ = _run("train/digits", "local", tmp_path / "lo", ddir, max_units=2)
    assert final["costs"]["bytes_up"] == final["costs"]["bytes_down"] == 0
    assert "cloud_accuracy" not in final["metrics"] and final["costs"]["edge_flops"] > 0
    final, _ = _run("train/digits", "centralized", tmp_path / "ce", ddir, max_units=1)
    m = final["metrics"]
    assert {"edge_accuracy", "cloud_accuracy", "edge_personal_accuracy"} <= set(m)
    assert m["edge_accuracy"] > 0.5  # one epoch over the pooled data already learns


def _method(cls, ddir, **hp):
    from tasks.train_synthetic import STRAGGLERS
    spec = dataclasses.replace(STRAGGLERS, config=dict(STRAGGLERS.config, data=dict(
        STRAGGLERS.config["data"], devices=10, max_samples=200), clients=10))
    inst = spec.build(ddir, 0)
    return cls(inst.ctx, dict(cls.default_hparams, **hp)), inst


def test_fedprox_proximal_term_pulls_to_global(ddir):
    from baselines.fedavg import FedProx
    dists = {}
    for mu in (0.0, 10.0):
        m, inst = _method(FedProx, ddir, mu=mu, lr=0.05, momentum=0.0)
        g = m.init(jax.random.PRNGKey(0))
        cs = m.client_init(None, g, jax.random.PRNGKey(1))
        batch = {"x": jnp.asarray(inst.train_x[0, :10]), "y": jnp.asarray(inst.train_y[0, :10]),
                 "mask": jnp.ones(10, bool)}
        step = jax.jit(m.client_step)
        for s in range(30):
            cs, loss = step(cs, batch, jax.random.PRNGKey(s))
        assert int(cs["steps"]) == 30
        dists[mu] = float(sum(jnp.sum((a - b) ** 2) for a, b in
                              zip(jax.tree_util.tree_leaves(cs["params"]), jax.tree_util.tree_leaves(g))))
    assert dists[10.0] < dists[0.0]


def test_fedavg_drops_stragglers_fedprox_keeps_them(ddir):
    from baselines.fedavg import FedAvg, FedProx
    for cls, dropped in ((FedAvg, True), (FedProx, False)):
        m, inst = _method(cls, ddir)
        g = m.init(jax.random.PRNGKey(0))
        ones = jax.tree_util.tree_map(jnp.ones_like, g)
        n = jnp.array([100.0, 100.0])
        full = m._expected_steps(n)
        params = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), g, ones)
        up = {"full": {"params": params, "steps": jnp.array([full[0], 1], jnp.int32)}}
        new = m.cloud_update(g, up, {"full": n}, {"full": jnp.array([0, 1])}, jax.random.PRNGKey(0))
        leaf, g0 = jax.tree_util.tree_leaves(new)[0], jax.tree_util.tree_leaves(g)[0]
        want = g0 if dropped else (g0 + 1.0) / 2
        np.testing.assert_allclose(np.asarray(leaf), np.asarray(want), rtol=1e-5, atol=1e-6)
        # every client straggled: FedAvg keeps the previous model
        up["full"]["steps"] = jnp.array([1, 1], jnp.int32)
        new = m.cloud_update(g, up, {"full": n}, {"full": jnp.array([0, 1])}, jax.random.PRNGKey(0))
        if dropped:
            np.testing.assert_allclose(np.asarray(jax.tree_util.tree_leaves(new)[0]), np.asarray(g0))


# ---- external sanity checks (slow) ----------------------------------------------

@pytest.mark.slow
def test_mnist1d_centralized_matches_published(ddir, tmp_path):
    """MNIST-1D README: MLP 68%, CNN 94% at 4,000 train / 1,000 test."""
    final, _ = _run("tasks.train_mnist1d:SANITY", "centralized", tmp_path / "c", ddir)
    m = final["metrics"]
    assert abs(m["edge_accuracy"] - 0.68) <= 0.06, m
    assert abs(m["cloud_accuracy"] - 0.94) <= 0.05, m


@pytest.mark.slow
def test_mnist1d_fedavg_between_local_and_centralized(ddir, tmp_path):
    hp = {"centralized": {"train_cloud": False}}  # edge model only: the CNN is costly here
    acc = {m: _run("train/mnist1d", m, tmp_path / m, ddir, hparams=hp.get(m))[0]["metrics"]["edge_accuracy"]
           for m in ("local", "fedavg", "centralized")}
    assert acc["local"] < acc["fedavg"] < acc["centralized"], acc


@pytest.mark.slow
def test_synthetic_stragglers_fedprox_beats_fedavg(ddir, tmp_path):
    """FedProx paper: with 90% stragglers FedAvg (dropping them) loses to FedProx mu=1."""
    hp = {"lr": 0.01, "momentum": 0.0}
    fa = _run("train/synthetic-stragglers", "fedavg", tmp_path / "fa", ddir, hparams=hp)[0]
    fp = _run("train/synthetic-stragglers", "fedprox", tmp_path / "fp", ddir, hparams=dict(hp, mu=1.0))[0]
    assert fp["metrics"]["edge_accuracy"] > fa["metrics"]["edge_accuracy"] + 0.05
