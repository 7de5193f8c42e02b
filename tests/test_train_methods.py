"""The large-small training methods (issue 5): runs, byte accounting, heterogeneity.

Default tests run on a tiny heterogeneous copy of tests/plugins/tiny_train.py
(two tiers whose edge MLPs differ in width) and finish in well under a minute.
"""
import dataclasses
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsbench import api
from lsbench.harness.runner import RunConfig, execute
from lsbench.task import TaskSpec

PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins")
sys.path.insert(0, PLUGINS)
import tiny_train  # noqa: E402

METHODS = ("heterofl", "fedmd", "feddf", "fedgkt", "dsfl", "bikd")
WIDTHS = {"small": 4, "full": 16}


def _mlp(d, k, h):
    def init(rng):
        k1, k2 = jax.random.split(rng)
        return {"l1": {"w": jax.random.normal(k1, (d, h)) / math.sqrt(d), "b": jnp.zeros((h,))},
                "l2": {"w": jax.random.normal(k2, (h, k)) / math.sqrt(h), "b": jnp.zeros((k,))}}

    def apply(p, x):
        return jax.nn.relu(x @ p["l1"]["w"] + p["l1"]["b"]) @ p["l2"]["w"] + p["l2"]["b"]
    return api.ModelDef(f"mlp{h}", init, apply, info={"hidden": h})


def build_het(spec, data_dir, seed):
    inst = tiny_train.build(spec, data_dir, seed)
    d, k = spec.config["dim"], spec.config["classes"]
    models = {"edge": _mlp(d, k, WIDTHS["full"]), "cloud": _mlp(d, k, 64)}
    models.update({f"edge/{t}": _mlp(d, k, h) for t, h in WIDTHS.items()})
    width = {t: h / WIDTHS["full"] for t, h in WIDTHS.items()}
    view = lambda v: dataclasses.replace(v, models=models, tier_width=width)  # noqa: E731
    return dataclasses.replace(inst, edge_views={t: view(v) for t, v in inst.edge_views.items()},
                               cloud_view=view(inst.cloud_view))


HET = TaskSpec(name="test/tiny-het", version="1", track="train", description="tiny task, two edge widths",
               primary_metric="edge_accuracy", target=0.5, tier="small",
               config=dict(tiny_train.TASK.config, tiers=tuple(WIDTHS), rounds=3, eval_every=3), builder=build_het)
HET_REF = os.path.abspath(__file__) + ":HET"
SMALL_HP = {"heterofl": {}, "fedmd": {"n_pub": 20, "digest_steps": 2},
            "dsfl": {"n_pub": 20, "digest_steps": 2, "server_steps": 2},
            "feddf": {"distill_steps": 2}, "fedgkt": {"server_steps": 2},
            "bikd": {"n_pub": 20, "digest_steps": 2, "cloud_steps": 2}}


def run(tmp, method, task=HET_REF, name=None, **kw):
    hp = dict(SMALL_HP.get(method, {}), **kw.pop("hparams", {}))
    cfg = RunConfig(task=task, method=method, workdir=str(tmp / (name or method)), hparams=hp,
                    data_dir=str(tmp / "data"), **kw)
    return execute(cfg, log=lambda s: None)


@pytest.fixture(autouse=True)
def _no_program_timing(monkeypatch):
    monkeypatch.setenv("LSBENCH_TIME_PROGRAMS", "0")  # a sanity column; not what these tests check


@pytest.fixture(scope="module")
def finals(tmp_path_factory):
    """One tiny run of every method (shared by the tests below)."""
    tmp = tmp_path_factory.mktemp("runs")
    return {m: run(tmp, m) for m in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_method_completes_and_is_metered(finals, method):
    f = finals[method]
    assert f["status"] == "completed", method
    c = f["costs"]
    assert c["bytes_up"] > 0 and c["edge_flops"] > 0 and c["cloud_flops"] >= 0
    assert 0.0 <= f["metrics"]["edge_accuracy"] <= 1.0
    assert 0.0 <= f["metrics"]["edge_personal_accuracy"] <= 1.0
    has_cloud = method in ("feddf", "fedgkt", "bikd")
    assert ("cloud_accuracy" in f["metrics"]) == has_cloud
    # edges that need the public split are billed for it once, as setup
    uses_pub = method in ("fedmd", "dsfl", "bikd")
    assert (c["setup_bytes_down"] > 0) == uses_pub
    # setup is metered (every edge initialises its model; FedMD's cloud only allocates zeros)
    assert c["setup_edge_flops_all"] > 0 and (c["setup_cloud_flops_all"] > 0) == (method != "fedmd")


def _sides(cls, inst, hp=None):
    from lsbench.harness import sealed
    from lsbench.harness.runner import merge_hparams
    from lsbench.metering.flops import count_jaxpr
    return sealed.build_sides(cls, "train", inst, merge_hparams(cls, hp or {}),
                              sealed.Sealer(sealed.guard_for("train", inst), meter=count_jaxpr))


def _sampled(inst):
    """Client ids the harness samples in each round (the harness's own sampler)."""
    from lsbench.harness.train_loop import TrainLoop

    class _Dummy(api.TrainMethod):
        manifest = api.Manifest("dummy", ("train",))
    loop = TrainLoop(inst, _sides(_Dummy, inst), 0)
    return [np.concatenate(list(loop.sample(r)[0].values())) for r in range(inst.rounds)], loop


def test_dsfl_bytes_equal_hand_count(finals):
    inst = HET.build("", 0)
    picks, _ = _sampled(inst)
    n_pub, C = SMALL_HP["dsfl"]["n_pub"], inst.cloud_view.num_classes
    clients = sum(len(p) for p in picks)
    c = finals["dsfl"]["costs"]
    assert c["bytes_up"] == clients * (n_pub * C * 4 + 8)           # fp32 probabilities + the report
    assert c["bytes_down"] == clients * (n_pub * C * 4 + 4)         # ERA labels + round counter
    assert c["setup_bytes_down"] == len(inst.train_n) * inst.cloud_view.public.nbytes


def test_fedgkt_bytes_equal_hand_count_and_grow_with_data(finals):
    from lsbench.metering.channel import mask_bytes
    inst = HET.build("", 0)
    picks, loop = _sampled(inst)
    C, d = inst.cloud_view.num_classes, inst.cloud_view.input_shape[0]
    slots = inst.cloud_view.max_client_n                            # buffers: the largest client's data
    ch, k, stride = 16, 5, 2                                      # fedgkt's default stem
    F = math.ceil(d / stride) * ch                                  # SAME padding feature map, flattened
    per_row = 4 * F + 4 + 4 * C                                     # features f32, label int32, logits f32
    stem_bytes = 4 * (k * 1 * ch + ch)
    seen = np.minimum(np.asarray(inst.train_n), loop.rows)          # distinct examples per client and round
    # rows carried + their mask; fedgkt's cloud never reads the example/step report: none sent
    up = sum(int(seen[c]) * per_row + int(mask_bytes(slots, int(seen[c]))) + stem_bytes
             for p in picks for c in p)
    down, uploaded = 0, set()
    for p in picks:                                                 # logits for rows uploaded last time
        down += sum(int(seen[c]) * C * 4 + int(mask_bytes(slots, int(seen[c])))
                    for c in p if c in uploaded)
        uploaded |= set(p.tolist())
    c = finals["fedgkt"]["costs"]
    assert c["bytes_up"] == up and c["bytes_down"] == down
    # the uplink is a function of local data size: per-row bytes dwarf the fixed part
    assert up - sum(len(p) for p in picks) * stem_bytes > 10 * sum(len(p) for p in picks) * stem_bytes


def test_heterofl_sends_smaller_submodels_to_small_tier(finals):
    inst = HET.build("", 0)
    picks, loop = _sampled(inst)
    d, k = inst.cloud_view.input_shape[0], inst.cloud_view.num_classes
    size = {t: 4 * (d * h + h + h * k + k) for t, h in WIDTHS.items()}
    tier_of = {c: inst.tiers[inst.client_tier[c]] for c in range(len(inst.train_n))}
    want = sum(size[tier_of[int(c)]] for p in picks for c in p)
    c = finals["heterofl"]["costs"]
    assert c["bytes_down"] == want
    assert c["bytes_up"] == want + 8 * sum(len(p) for p in picks)   # + each client's report


def _loop(method, hp=None, spec=HET):
    from lsbench.harness.train_loop import TrainLoop
    from lsbench.registry import load_method
    inst = spec.build("", 0)
    cls = load_method(method, spec)
    return TrainLoop(inst, _sides(cls, inst, {**SMALL_HP.get(method, {}), **(hp or {})}), 0), inst


@pytest.mark.parametrize("method", ["heterofl", "fedmd"])
def test_edge_states_differ_in_shape_across_tiers(method):
    loop, inst = _loop(method)
    state = loop.init_state()
    state, _, ok = loop.run_unit(state, 0)
    assert ok
    small, full = (jax.tree_util.tree_leaves(state["edge"][t]) for t in range(2))
    # leading axis = that tier's clients; the per-client shapes differ between tiers
    assert [a.shape[1:] for a in small] != [a.shape[1:] for a in full]
    assert sum(a[0].size for a in small) < sum(a[0].size for a in full)
    assert small[0].shape[0] + full[0].shape[0] == len(inst.train_n)


# ---- reproductions on the real tasks (slow: `make test-slow`) ----------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("task", ["train/digits", "train/mnist1d"])
@pytest.mark.parametrize("method", METHODS)
def test_default_run_completes_on_real_tasks(tmp_path, task, method):
    f = execute(RunConfig(task=task, method=method, workdir=str(tmp_path / "r")), log=lambda s: None)
    assert f["status"] == "completed"
    assert f["wall_s"] < 600, f"{method} on {task} took {f['wall_s']:.0f}s (goal: < 10 min on 2 cores)"


@pytest.fixture(scope="module")
def mnist1d_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("m1d")
    return {m: execute(RunConfig(task="train/mnist1d", method=m, workdir=str(tmp / m)), log=lambda s: None)
            for m in ("fedavg", "dsfl", "fedgkt", "feddf", "bikd")}


@pytest.mark.slow
def test_mnist1d_large_model_earns_its_size(mnist1d_runs):
    best_fedavg = mnist1d_runs["fedavg"]["metrics"]["best_edge_accuracy"]
    cloud = {m: mnist1d_runs[m]["metrics"]["cloud_accuracy"] for m in ("fedgkt", "feddf", "bikd")}
    assert max(cloud.values()) > best_fedavg, (cloud, best_fedavg)


@pytest.mark.slow
def test_mnist1d_dsfl_sends_fewer_bytes_per_round_than_fedavg(mnist1d_runs):
    per_round = {m: (f["costs"]["bytes_up"] + f["costs"]["bytes_down"]) / f["units"]
                 for m, f in mnist1d_runs.items() if m in ("dsfl", "fedavg")}
    assert per_round["dsfl"] < per_round["fedavg"], per_round


@pytest.mark.parametrize("method", ["fedmd", "dsfl", "bikd", "feddf"])
def test_methods_needing_public_data_say_so(method):
    from lsbench.harness import sealed
    from lsbench.registry import load_method
    from lsbench.task import TaskError
    inst = HET.build("", 0)
    view = dataclasses.replace(inst.cloud_view, public=None)
    cls = load_method(method, HET)
    with pytest.raises(TaskError, match="public") as e:
        sealed.construct(cls, view, dict(cls.default_hparams))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("method", ["fedmd", "dsfl", "bikd"])
def test_public_split_reaches_the_edge_only_when_declared(method):
    """Public-exchange methods declare edge_uses_public: their edge views get the
    cloud's public split (billed as setup bytes). FedDF's edges never see it."""
    from lsbench.registry import load_method
    loop, inst = _loop(method)
    assert inst.edge_views["small"].public is None               # the task gives it to the cloud only
    pub = inst.cloud_view.public
    for t in inst.tiers:
        assert loop.sides.edge_of(t).view.public is pub
    assert loop.init_state()["costs"]["setup_bytes_down"] == len(inst.train_n) * pub.nbytes
    fd, _ = _loop("feddf")
    assert all(fd.sides.edge_of(t).view.public is None for t in inst.tiers)
    assert load_method("feddf", HET).edge_uses_public is False
