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
    """The shared data dir when one is set (``LSBENCH_DATA_DIR``), else a fresh one."""
    return os.environ.get("LSBENCH_DATA_DIR") or str(tmp_path_factory.mktemp("train_data"))


@pytest.fixture(autouse=True)
def _no_program_timing(monkeypatch):
    monkeypatch.setenv("LSBENCH_TIME_PROGRAMS", "0")  # a sanity column; not what these tests check


def _run(task, method, workdir, ddir, **kw):
    final = execute(RunConfig(task=task, method=method, workdir=str(workdir), data_dir=ddir, **kw),
                    log=lambda *a: None)
    rows = [json.loads(l) for l in open(os.path.join(str(workdir), "metrics.jsonl"))]
    return final, rows


def _sides(cls, inst, **hp):
    """The method built per side over ``inst`` (as the runner does)."""
    from lsbench.harness import sealed
    from lsbench.harness.runner import merge_hparams
    from lsbench.metering.flops import count_jaxpr
    return sealed.build_sides(cls, "train", inst, merge_hparams(cls, hp),
                              sealed.Sealer(sealed.guard_for("train", inst), meter=count_jaxpr))


def test_digits_task_conventions(ddir):
    from tasks.train_digits import TASK
    inst = TASK.build(ddir, 0)
    cv, ev = inst.cloud_view, inst.edge_views
    assert set(ev) == {"small", "full"} and all(v.tier == t and v.side == "edge" for t, v in ev.items())
    assert cv.side == "cloud" and cv.tier is None
    for v in (cv, *ev.values()):
        assert set(v.models) >= {"edge", "cloud", "edge/small", "edge/full"}
        assert v.tiers == inst.tiers == ("small", "full")
        assert v.tier_width == {"small": 0.5, "full": 1.0}
        assert (v.num_clients, v.clients_per_round, v.rounds, v.batch_size) == (20, 10, 30, 16)
        assert v.max_client_n == int(inst.train_n.max()) and v.budgets == inst.edge_budgets
        assert v.dataset == "digits" and v.partition == "dirichlet" and not v.params
    assert cv.models["edge/small"].info["params"] < cv.models["edge/full"].info["params"]
    assert cv.models["cloud"].info["params"] > cv.models["edge"].info["params"]
    # the public split is the cloud's; the loop hands it to edges that declare edge_uses_public
    assert cv.public is not None and cv.public.shape[1:] == cv.input_shape
    assert all(v.public is None for v in ev.values())
    # the edge budget is the largest edge tier model, in fp32
    assert inst.edge_budgets == {"param_bytes": 4 * cv.models["edge/full"].info["params"]}
    C = len(inst.train_n)
    assert C == 20 and inst.train_x.shape[:2] == (C, inst.train_n.max())
    assert inst.train_n.min() >= 1 and set(np.unique(inst.client_tier)) == {0, 1}
    # padded rows are zeros; real rows are real images
    c = int(np.argmin(inst.train_n))
    assert not inst.train_x[c, inst.train_n[c]:].any()
    assert {"data", "partition"} <= set(inst.hashes)
    assert set(inst.hidden()) >= {"train_x", "train_y", "global_test_x", "global_test_y"}
    other = TASK.build(ddir, 1)
    assert other.hashes["data"] == inst.hashes["data"]
    assert other.hashes["partition"] != inst.hashes["partition"]
    assert TASK.build(ddir, 0).hashes == inst.hashes


def test_bad_task_config_one_line(ddir):
    from tasks.train_digits import TASK
    for cfg, word in ((dict(TASK.config, alpha=0.0), "alpha"), (dict(TASK.config, clients=5000), "clients"),
                      (dict(TASK.config, dataset="nope"), "unknown dataset"),
                      (dict(TASK.config, dataset="cifar10"), "tfds build"),  # real data not in data_dir
                      (dict(TASK.config, edge_budgets={"ram": 1}), "unknown edge budget")):
        with pytest.raises(TaskError) as e:
            dataclasses.replace(TASK, config=cfg).build(ddir, 0)
        assert word in str(e.value) and "\n" not in str(e.value)


def test_fedavg_bytes_exact(ddir, tmp_path):
    from tasks.train_digits import TASK
    final, rows = _run("train/digits", "fedavg", tmp_path / "fa", ddir, max_units=3)
    inst = TASK.build(ddir, 0)
    model = inst.cloud_view.models["edge"]
    pbytes = sum(np.asarray(a).nbytes for a in jax.tree_util.tree_leaves(model.init(jax.random.PRNGKey(0))))
    assert pbytes == 4 * model.info["params"]
    k = TASK.config["clients_per_round"]
    prev_up = prev_down = 0
    for r in rows:  # every round: k models down; k models up, each with its 8-byte report
        assert r["bytes_up"] - prev_up == k * (pbytes + 8)
        assert r["bytes_down"] - prev_down == k * pbytes
        prev_up, prev_down = r["bytes_up"], r["bytes_down"]
    assert final["costs"]["bytes_down"] == 3 * k * pbytes
    assert final["costs"]["bytes_up"] == 3 * k * (pbytes + 8)
    assert final["costs"]["edge_flops"] > 0
    # setup is metered: the model's init (one forward pass) once on the cloud, once per client
    assert final["costs"]["setup_cloud_flops"] > 0
    assert final["costs"]["setup_edge_flops"] == len(inst.train_n) * final["costs"]["setup_cloud_flops"]
    assert final["costs"]["setup_bytes_down"] == final["costs"]["setup_bytes_up"] == 0
    assert 0.0 <= final["metrics"]["edge_accuracy"] <= 1.0
    assert final["budget_margins"]["param_bytes"] == {"limit": pbytes, "used": pbytes, "margin": 0, "ok": True}


def test_local_sends_nothing_and_centralized_pools(ddir, tmp_path):
    final, _ = _run("train/digits", "local", tmp_path / "lo", ddir, max_units=2)
    # the local reference's cloud never reads the clients' reports: none is sent
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
    return _sides(cls, inst, **hp), inst


def test_fedprox_proximal_term_pulls_to_global(ddir):
    from baselines.fedavg import FedProx
    dists = {}
    for mu in (0.0, 10.0):
        sides, inst = _method(FedProx, ddir, mu=mu, lr=0.05, momentum=0.0)
        edge = sides.edge_of("full")
        g = sides.cloud("cloud_setup", jax.random.PRNGKey(0))
        cs = edge("client_init", g, g, jax.random.PRNGKey(1))
        batch = {"x": jnp.asarray(inst.train_x[0, :10]), "y": jnp.asarray(inst.train_y[0, :10]),
                 "mask": jnp.ones(10, bool)}
        step = jax.jit(lambda c, b, k: edge("client_step", c, b, k))
        for s in range(30):
            cs, loss = step(cs, batch, jax.random.PRNGKey(s))
        dists[mu] = float(sum(jnp.sum((a - b) ** 2) for a, b in
                              zip(jax.tree_util.tree_leaves(cs["params"]), jax.tree_util.tree_leaves(g))))
    assert dists[10.0] < dists[0.0]


def test_fedavg_drops_stragglers_fedprox_keeps_them(ddir):
    """The cloud judges stragglers by the step counts the clients report (Round.local_steps)."""
    from baselines.fedavg import FedAvg, FedProx
    from lsbench import api
    for cls, dropped in ((FedAvg, True), (FedProx, False)):
        sides, inst = _method(cls, ddir)
        v = inst.cloud_view
        g = sides.cloud("cloud_setup", jax.random.PRNGKey(0))
        ones = jax.tree_util.tree_map(jnp.ones_like, g)
        n = jnp.array([100.0, 100.0])
        full = int(min(v.max_local_steps, np.ceil(v.local_epochs * 100 / v.batch_size)))
        params = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), g, ones)

        def update(steps):
            rnd = api.Round(params, n, jnp.array([0, 1], jnp.int32), jnp.zeros(2, jnp.int32),
                            jnp.array(steps, jnp.int32))
            return sides.cloud("cloud_update", g, rnd, jax.random.PRNGKey(0))
        leaf, g0 = jax.tree_util.tree_leaves(update([full, 1]))[0], jax.tree_util.tree_leaves(g)[0]
        want = g0 if dropped else (g0 + 1.0) / 2
        np.testing.assert_allclose(np.asarray(leaf), np.asarray(want), rtol=1e-5, atol=1e-6)
        # every client straggled: FedAvg keeps the previous model
        if dropped:
            np.testing.assert_allclose(np.asarray(jax.tree_util.tree_leaves(update([1, 1]))[0]), np.asarray(g0))


# ---- the two client backends --------------------------------------------------

BACKEND_HP = {"fedavg": None, "heterofl": None, "fedmd": {"n_pub": 50, "digest_steps": 2},
              "feddf": {"n_pub": 100, "distill_steps": 2, "cloud_steps": 2}}


@pytest.mark.parametrize("method", [pytest.param(m, marks=pytest.mark.slow) if m in ("fedavg", "feddf") else m
                                    for m in sorted(BACKEND_HP)])  # fedavg: also tests/test_runner.py
def test_loop_backend_equals_vmap_on_digits(ddir, tmp_path, method):
    """Per-tier compiled functions: HeteroFL's two widths run under the loop backend
    too, and every baseline's metrics and costs match the vmap backend's."""
    hp = BACKEND_HP[method]
    a, _ = _run("train/digits", method, tmp_path / "v", ddir, max_units=2, hparams=hp, backend="vmap")
    b, _ = _run("train/digits", method, tmp_path / "l", ddir, max_units=2, hparams=hp, backend="loop")
    assert a["status"] == b["status"] == "completed"
    assert a["costs"] == b["costs"]
    assert set(a["metrics"]) == set(b["metrics"])
    for k, v in a["metrics"].items():
        assert abs(v - b["metrics"][k]) < 1e-4, (k, v, b["metrics"][k])


def test_edge_footprint_measures_the_edge_model(ddir):
    """param_bytes counts what predict_edge reads (FedGKT's example-key buffer is state,
    not parameters); state_bytes all of one client's persistent state."""
    from lsbench.harness.train_loop import TrainLoop
    from lsbench.registry import load_method, load_task
    spec = load_task("train/digits")
    inst = spec.build(ddir, 0)
    feet = {}
    for m in ("fedavg", "fedgkt"):
        loop = TrainLoop(inst, _sides(load_method(m, spec), inst), 0)
        feet[m] = loop.edge_footprint(loop.init_state())
    full = 4 * inst.cloud_view.models["edge/full"].info["params"]
    assert feet["fedavg"]["param_bytes"] == feet["fedavg"]["state_bytes"] == full
    ch, k, C, F = 16, 5, 10, 4 * 4 * 16            # fedgkt's stem on 8x8x1 (SAME, stride 2)
    stem_head = 4 * (k * k * 1 * ch + ch + F * C + C)
    assert feet["fedgkt"]["param_bytes"] == stem_head
    assert feet["fedgkt"]["state_bytes"] == stem_head + 4 * 2 * inst.cloud_view.max_client_n
    # per local example: forward and backward matmuls of the MLP (no input gradient)
    h, d = 64, 64
    assert feet["fedavg"]["flops_per_example"] == 2 * (2 * d * h) + 3 * (2 * h * C)


def test_edge_footprint_counts_a_model_held_as_constants(ddir):
    """An edge model baked into predict_edge as a constant (not in the state) still counts."""
    from baselines.fedavg import FedAvg
    from lsbench import api
    from lsbench.harness.train_loop import TrainLoop
    from lsbench.registry import load_task

    class ConstModel(FedAvg):
        manifest = api.Manifest(name="const-model", tracks=("train",))

        def predict_edge(self, edge_state, x):
            table = np.ones((64, 100), np.float32)     # 25,600 bytes, not in the edge state
            return super().predict_edge(edge_state, x) + (x.reshape(x.shape[0], -1) @ table)[:, :10]
    inst = load_task("train/digits").build(ddir, 0)
    loop = TrainLoop(inst, _sides(ConstModel, inst), 0)
    foot = loop.edge_footprint(loop.init_state())
    assert foot["param_bytes"] == 4 * inst.cloud_view.models["edge/full"].info["params"] + 64 * 100 * 4


def test_round_messages_stack_tiers_only_when_shapes_agree():
    from lsbench.harness.train_loop import merge_tiers
    a = {"w": jnp.zeros((2, 3))}
    b = {"w": jnp.ones((3, 3))}
    merged = merge_tiers({"small": a, "full": b})
    assert merged["w"].shape == (5, 3) and float(merged["w"][2:].min()) == 1.0
    c = {"w": jnp.ones((3, 4))}
    per_tier = merge_tiers({"small": a, "full": c})
    assert set(per_tier) == {"small", "full"} and per_tier["full"]["w"].shape == (3, 4)
    assert merge_tiers({"full": b}) is b


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
