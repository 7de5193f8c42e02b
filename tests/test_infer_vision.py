"""Inference track, vision (issue 6): shapes data, split computing, early exit.

Runs the CI-sized tiers (``infer/shapes-*-small``); the reference models come
from $LSBENCH_DATA_DIR when prebuilt, else are trained once per session into a
shared data dir and reused by every test.
"""
import math
import os

import numpy as np
import pytest

from lsbench.data import shapes
from lsbench.harness.runner import RunConfig, execute
from tasks import infer_shapes as T

SPLIT = "infer/shapes-split-small"
EXIT = "infer/shapes-exit-small"


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory):
    return os.environ.get("LSBENCH_DATA_DIR") or str(tmp_path_factory.mktemp("shapes-data"))


@pytest.fixture(scope="session")
def split_inst(shared_dir):
    return T.SPLIT_SMALL.build(shared_dir, 0)


def run(shared_dir, tmp_path, task, method, hp=None, name="r"):
    final = execute(RunConfig(task=task, method=method, hparams=hp or {}, data_dir=shared_dir,
                              workdir=str(tmp_path / name)), log=lambda *a: None)
    assert final["status"] == "completed", final
    return final


def test_generator_deterministic_and_balanced():
    a, b = shapes.generate(300, 7, "test"), shapes.generate(300, 7, "test")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = shapes.generate(300, 7, "train")
    assert not np.array_equal(a["image"], c["image"])
    assert a["image"].dtype == np.uint8 and a["image"].shape == (300, 32, 32, 3)
    assert set(np.unique(a["label"])) == set(range(shapes.NUM_CLASSES))
    assert set(np.unique(a["difficulty"])) == {0, 1, 2}
    # harder examples are noisier: mean absolute difference between neighbouring pixels grows
    rough = np.abs(np.diff(a["image"].astype(float), axis=2)).mean((1, 2, 3))
    assert rough[a["difficulty"] == 2].mean() > rough[a["difficulty"] == 0].mean()


def nparams(tree):
    return sum(int(np.size(a)) for a in __import__("jax").tree_util.tree_leaves(tree))


def test_exact_bytes_and_early_fp32_splits_exceed_raw(shared_dir, tmp_path, split_inst):
    raw = run(shared_dir, tmp_path, SPLIT, "cloud-only", name="raw")
    m = raw["metrics"]
    assert m["bytes_up_per_example"] == 32 * 32 * 3 and m["bytes_down_per_example"] == 4
    assert m["offload_rate"] == 1.0 and m["edge_flops_per_example"] == 0
    assert m["accuracy"] == pytest.approx(m["ref_cloud_accuracy"])
    view = split_inst.cloud_view
    from lsbench.models import vision
    shapes_at = vision.stage_table(view.models["cloud"])
    # the harness's cloud FLOPs for cloud-only equal the analytic count of the whole model
    assert m["cloud_flops_per_example"] == sum(t["flops"] for t in shapes_at.values())
    f32 = run(shared_dir, tmp_path, SPLIT, "split", {"split": "conv1"}, name="conv1")
    fp32 = f32["metrics"]
    n = math.prod(shapes_at["conv1"]["shape"])
    assert fp32["bytes_up_per_example"] == 4 * n > m["bytes_up_per_example"]
    assert fp32["accuracy"] == pytest.approx(m["accuracy"], abs=2e-3)  # fp32 split is lossless
    # the edge runs the cloud model's first stages: they come down once, in setup
    prefix = vision.stage_params(view.models["cloud"], view.params["cloud"], "conv1")
    assert f32["costs"]["setup_bytes_down"] == 4 * nparams(prefix) == 4 * (3 * 3 * 3 * 16 + 16)
    assert fp32["edge_flops_per_example"] == vision.prefix_flops(view.models["cloud"], "conv1")
    q = run(shared_dir, tmp_path, SPLIT, "split-quant", {"split": "pool3", "bits": 4}, name="q4")["metrics"]
    n3 = math.prod(shapes_at["pool3"]["shape"])
    assert q["bytes_up_per_example"] == math.ceil(n3 / 2) + 8  # packed codes + fp32 scale + zero-point
    assert "split_points" in view.models["cloud"].info
    # the method's latency model is the harness's: cloud-only at lte
    from baselines.split import modelled_latency
    want = modelled_latency(view, "lte", 0, m["cloud_flops_per_example"], 3072, 4)
    assert raw["derived"]["lte"]["latency_mean_s"] == pytest.approx(want, rel=1e-9)


def test_split_point_moves_later_as_uplink_falls(split_inst):
    from baselines.split import PROFILES, Split, SplitQuant
    view = split_inst.cloud_view
    points = view.models["cloud"].info["split_points"]
    nets = view.profiles.network
    assert [nets[p]["up_bps"] for p in PROFILES] == sorted((nets[p]["up_bps"] for p in PROFILES), reverse=True)
    for cls, hp in ((Split, {"split": "auto"}), (SplitQuant, {"split": "auto", "bits": "auto"})):
        picks = [cls(view, dict(cls.default_hparams, **hp, profile=p)).choice for p in PROFILES]
        idx = [points.index(c["split"]) for c in picks]
        assert idx == sorted(idx), (cls.__name__, picks)
        assert [c["up_bytes"] for c in picks] == sorted((c["up_bytes"] for c in picks), reverse=True)
        assert picks[0]["split"] == "input"          # a fast link sends the raw image
        assert picks[-1]["split"] != "input"         # a weak one sends a later, smaller activation
        assert picks[-1]["up_bytes"] < view.raw_bytes


def test_bad_split_is_one_line_error(split_inst):
    from baselines.split import Split
    with pytest.raises(ValueError) as e:
        Split(split_inst.cloud_view, {"split": "pool9", "profile": "lte"})
    assert "pool9" in str(e.value) and "\n" not in str(e.value)


def test_early_exit_extremes(shared_dir, tmp_path):
    nv = run(shared_dir, tmp_path, EXIT, "early-exit", {"threshold": -1.0, "codec_up": "fp32"}, name="never")
    never = nv["metrics"]
    assert never["offload_rate"] == 1.0
    assert never["accuracy"] == pytest.approx(never["ref_cloud_accuracy"], abs=2e-3)
    assert never["bytes_up_per_example"] == 8 * 8 * 16 * 4
    # the exit part of the cloud's network (two convs and the exit head) comes down in setup
    widths, classes = (16, 16), 10
    exit_params = (3 * 3 * 3 * widths[0] + widths[0]) + (3 * 3 * widths[0] * widths[1] + widths[1]) \
        + (4 * 4 * widths[1] * classes + classes)
    assert nv["costs"]["setup_bytes_down"] == 4 * exit_params
    always = run(shared_dir, tmp_path, EXIT, "early-exit", {"threshold": 2.0}, name="always")["metrics"]
    assert always["offload_rate"] == 0.0 and always["bytes_up_per_example"] == 0
    assert always["accuracy"] == pytest.approx(always["ref_edge_accuracy"], abs=1e-9)
    assert always["gap_recovered"] == pytest.approx(0.0, abs=1e-9)
    assert never["gap_recovered"] == pytest.approx(1.0, abs=0.05)
    assert always["latency_lte_s"] < never["latency_lte_s"]


def test_bottleneck_bytes_and_setup_cost(shared_dir, tmp_path, monkeypatch):
    # The sanity timing of programs would compile cloud_setup with the calibration images
    # as XLA constants (slow constant folding); it is never ranked, so skip it here.
    monkeypatch.setenv("LSBENCH_TIME_PROGRAMS", "0")
    f = run(shared_dir, tmp_path, SPLIT, "bottleneck", {"split": "pool2", "channels": 2, "steps": 40},
            name="bn")
    m = f["metrics"]
    assert m["bytes_up_per_example"] == 8 * 8 * 2 + 8  # int8 codes + fp32 scale + zero-point
    assert f["costs"]["setup_cloud_flops"] > 0 and f["costs"]["setup_edge_flops"] == 0
    # down in setup: the cloud CNN's conv1 and pool2 convs, and the 1x1 encoder (32 -> 2)
    assert f["costs"]["setup_bytes_down"] == 4 * ((3 * 3 * 3 * 16 + 16) + (3 * 3 * 16 * 32 + 32) + (32 * 2 + 2))
    assert 0.0 <= m["accuracy"] <= 1.0


def test_bottleneck_bits_set_the_wire_codec(split_inst):
    from baselines.bottleneck import Bottleneck
    from lsbench.harness.runner import merge_hparams
    hp = merge_hparams(Bottleneck, {"bits": 4})  # codec_up defaults to the class's int8
    assert Bottleneck(split_inst.cloud_view, hp).hp["codec_up"] == "int4"


@pytest.fixture(scope="session")
def exit_inst(shared_dir):
    return T.EXIT_SMALL.build(shared_dir, 0)


def test_small_tiers_separate_methods(split_inst, exit_inst):
    """The CI tiers discriminate: the cloud (reference) model reaches >= 0.6 and the
    edge model is >= 10 points behind it, on test (and on validation, which the
    suite selects on); each reference model's training cost is recorded."""
    for inst in (split_inst, exit_inst):
        for split in (inst.test, inst.val):
            edge, cloud = split["edge_correct"].mean(), split["cloud_correct"].mean()
            assert cloud >= 0.6 and cloud - edge >= 0.10, (inst.edge_view.task, edge, cloud)
        for cost in inst.reference_training.values():
            assert cost["steps"] > 0 and cost["flops"] > 0 and cost["wall_s"] > 0


def test_validation_split_is_reported_and_disjoint(split_inst, shared_dir, tmp_path):
    f = run(shared_dir, tmp_path, SPLIT, "edge-only", name="eo")
    v, m = f["validation"], f["metrics"]
    assert set(v) == set(m)
    assert v["accuracy"] == pytest.approx(split_inst.val["edge_correct"].mean())
    assert m["accuracy"] == pytest.approx(split_inst.test["edge_correct"].mean())
    rows = {s: {r.tobytes() for r in d["x"]} for s, d in
            (("test", split_inst.test), ("val", split_inst.val), ("calib", split_inst.calib))}
    assert not rows["test"] & rows["val"] and not (rows["test"] | rows["val"]) & rows["calib"]
