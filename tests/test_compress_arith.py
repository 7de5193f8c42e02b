"""compress/arith: the LM weight codec bills exactly what it encodes (outlier rows
and their indices included) and rebuilds the model; reverse KL is not forward KL and
both distillations are billed to the cloud's setup; an end-to-end `lsbench run`
(the tiny tier in the default suite; `-small` in the slow tests)."""
import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsbench.metering.channel import Channel
from lsbench.models import distill, quant
from lsbench.models import transformer as T
from baselines import compress_lm_codec as codec
from tests.conftest import cli

TINY = "tasks.compress_arith:TINY"
CFG = T.LMConfig(vocab=19, d=16, layers=2, heads=2, max_len=10)


def billed(tree) -> int:
    return int(Channel("raw").transmit(tree, True)[1])


@functools.lru_cache(None)
def toy():
    @jax.jit
    def make(key):
        p = T.init_params(CFG, key)
        x = jax.random.randint(jax.random.fold_in(key, 1), (32, 9), 0, 19)
        return p, codec.dense_inputs(lambda xb: T.apply(CFG, p, xb), x)
    return make(jax.random.PRNGKey(0))


def by_hand(p, bits, k):
    """The packed size, from the shapes alone: grid + fp32 scale (+ bias) per channel,
    k fp16 rows + 1-byte indices (cin <= 256) per Dense layer, 4 B per other float."""
    flat = jax.tree_util.tree_flatten_with_path(p)[0]
    total = 0
    for path, a in flat:
        name = [getattr(q, "key", "") for q in path]
        if name[-1] == "kernel":
            cin, cout = a.shape
            n = (cin - k) * cout
            total += (math.ceil(n / 2) if bits == 4 else n) + 4 * cout + k * (2 * cout + 1)
        else:
            total += 4 * a.size
    return total


# int8 with outliers is also billed end to end in the default suite (the llm-int8 run below)
@pytest.mark.parametrize("bits,k", [(4, 5), pytest.param(8, 3, marks=pytest.mark.slow)])
def test_codec_bills_packed_size_with_outliers_and_roundtrips(bits, k):
    p, xs = toy()
    enc = jax.jit(functools.partial(codec.encode, bits=bits, k=k))(p, inputs=xs)
    assert billed(enc) == codec.wire_bytes(p, bits, k) == by_hand(p, bits, k)
    dec = jax.jit(lambda e: codec.decode(e, p, bits, k))(enc)
    assert jax.tree_util.tree_structure(dec) == jax.tree_util.tree_structure(p)
    w, x = p["block0"]["mlp_out"]["kernel"], xs["block0/mlp_out"]
    got = np.asarray(dec["block0"]["mlp_out"]["kernel"])
    hot = np.zeros(w.shape[0], bool)
    if k:  # the k input features of largest max |x| go as float16 rows
        hot[np.argsort(-np.abs(np.asarray(x)).reshape(-1, w.shape[0]).max(0))[:k]] = True
        np.testing.assert_array_equal(got[hot], np.asarray(w[hot].astype(jnp.float16), np.float32))
    rest = np.asarray(w)[~hot]
    step = np.abs(rest).max(0) / quant.qmax(bits)
    assert (np.abs(got[~hot] - rest) <= step / 2 + 1e-6).all()
    ln = p["block1"]["ln2"]["scale"]  # non-Dense leaves travel as float32, untouched
    np.testing.assert_array_equal(dec["block1"]["ln2"]["scale"], ln)


def test_outlier_rows_cut_the_output_error_of_an_outlier_feature():
    """LLM.int8's point, weight-only: a feature 50x larger than the rest makes its
    kernel row's rounding error dominate the layer output; keeping it in fp16 removes it."""
    r = np.random.default_rng(0)
    w = jnp.asarray(r.normal(size=(32, 24)), jnp.float32)
    x = r.normal(size=(256, 32)).astype(np.float32)
    x[:, 7] *= 50

    @jax.jit
    def errs(w, x):
        p, xs = {"fc": {"kernel": w, "bias": jnp.zeros(24)}}, {"fc": x}
        return [jnp.mean((x @ w - x @ codec.decode(codec.encode(p, 4, k, xs), p, 4, k)["fc"]["kernel"]) ** 2)
                for k in (0, 1)]
    e0, e1 = errs(w, jnp.asarray(x))
    assert float(e1) < 0.5 * float(e0)


def test_reverse_kl_is_not_forward_kl():
    s = jax.random.normal(jax.random.PRNGKey(0), (64, 10))
    t = 3 * jax.random.normal(jax.random.PRNGKey(1), (64, 10))
    y = jnp.zeros((64,), jnp.int32)
    fwd = lambda s: distill.kd_loss(s, t, y, 1.0, 1.0)  # noqa: E731
    rev = lambda s: distill.reverse_kl(s, t, 1.0)  # noqa: E731
    f, r, gap, f0, r0 = jax.jit(lambda s: (fwd(s), rev(s), jnp.abs(jax.grad(fwd)(s) - jax.grad(rev)(s)).max(),
                                           fwd(t), rev(t)))(s)
    assert abs(float(f) - float(r)) > 0.1 and float(gap) > 1e-3
    assert abs(float(r0)) < 1e-5 and abs(float(f0)) < 1e-5  # both vanish at the teacher


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return os.environ.get("LSBENCH_DATA_DIR") or str(tmp_path_factory.mktemp("compress-arith-data"))


def run(data_dir, tmp_path, method, hp=None, name="r"):
    from lsbench.harness.runner import RunConfig, execute
    return execute(RunConfig(task=TINY, method=method, hparams=hp or {}, data_dir=data_dir,
                             workdir=str(tmp_path / name)), log=lambda *a: None)


def cloud_shapes():
    from tasks.compress_arith import TINY as spec
    from lsbench.data import arith
    c = spec.config
    m = c["cloud"]
    cfg = T.LMConfig(vocab=arith.VOCAB, d=m["d"], layers=m["layers"], heads=m["heads"],
                     max_len=arith.query_len(c["max_depth"]) + 1)
    return cfg, jax.eval_shape(lambda k: T.init_params(cfg, k), jax.ShapeDtypeStruct((2,), jnp.uint32))


@pytest.mark.slow  # default-suite time: the CLI run trains the test-sized cloud model (about 35 s)
def test_lsbench_run_bills_llm_int8_at_its_packed_size(data_dir, tmp_path):
    """`lsbench run` end to end: setup bytes down == the codec's analytic size (outlier rows
    and indices included) == the edge's parameter bytes; nothing per query."""
    wd = tmp_path / "run"
    r = cli("run", f"--task={TINY}", "--method=llm-int8", f"--workdir={wd}", f"--data_dir={data_dir}",
            '--hparams={"outliers": 2, "calib_n": 64}')
    assert r.returncode == 0, r.stderr[-2000:]
    f = json.load(open(wd / "final.json"))
    assert f["status"] == "completed"
    expect = codec.wire_bytes(cloud_shapes()[1], 8, 2)
    assert f["costs"]["setup_bytes_down"] == expect == f["budget_margins"]["param_bytes"]["used"]
    assert f["costs"]["bytes_up"] == f["costs"]["bytes_down"] == 0
    assert 0.0 <= f["metrics"]["accuracy"] <= 1.0 and "accuracy" in f["validation"]


def teacher_flops():
    from tasks import infer_arith
    from tasks.compress_arith import TINY as spec
    cfg, shp = cloud_shapes()
    return spec.config["n_train"] * infer_arith.query_flops(cfg, shp, cfg.max_len - 1)


@pytest.mark.slow
def test_a_scratch_epoch_costs_a_distillation_epoch_minus_the_teacher(data_dir, tmp_path):
    """Forward (kd) and reverse (kd-reverse) KL are billed to the cloud's setup and cost the
    same matmuls: the teacher's logits on every training query plus the student's steps, a
    scratch epoch being one of those steps' epochs. (Slow: three runs; the default suite's
    CPU budget keeps one run, test_lsbench_run_bills_llm_int8_at_its_packed_size.)"""
    costs = {m: run(data_dir, tmp_path, m, {"epochs": e}, name=m)["costs"]
             for m, e in (("kd-reverse", 1), ("kd", 1), ("compress.scratch", 2))}
    runs = {m: c["setup_cloud_flops"] for m, c in costs.items()}
    fs = runs["compress.scratch"]
    for m in ("kd", "kd-reverse"):
        assert fs > 0 and abs((runs[m] - teacher_flops()) - fs / 2) <= 0.02 * fs, runs
        assert costs[m]["setup_edge_flops"] == 0  # all of it on the cloud
    # the fp32 student ships at 4 B per parameter
    from tasks.compress_arith import TINY as spec
    from lsbench.data import arith
    e = spec.config["edge"]
    scfg = T.LMConfig(vocab=arith.VOCAB, d=e["d"], layers=e["layers"], heads=e["heads"],
                      max_len=cloud_shapes()[0].max_len)
    shp = jax.eval_shape(lambda k: T.init_params(scfg, k), jax.ShapeDtypeStruct((2,), jnp.uint32))
    assert costs["kd-reverse"]["setup_bytes_down"] == 4 * T.param_count(shp)


@pytest.mark.slow
def test_lsbench_run_on_the_small_tier(tmp_path):
    """compress/arith-small end to end (trains the route task's small cloud model if not cached):
    int8 ptq fits, is billed at the codec's size and stays within 1 point of the fp32 cloud
    model; the fp32 cloud model is over budget."""
    from tasks.compress_arith import SMALL
    from lsbench.data import arith
    dd = os.environ.get("LSBENCH_DATA_DIR") or str(tmp_path / "d")
    out = {}
    for m in ("ptq", "compress.cloud-model"):
        wd = tmp_path / m
        r = cli("run", "--task=compress/arith-small", f"--method={m}", f"--workdir={wd}", f"--data_dir={dd}")
        assert r.returncode == 0, r.stderr[-2000:]
        out[m] = json.load(open(wd / "final.json"))
    c = SMALL.config
    cfg = T.LMConfig(vocab=arith.VOCAB, d=c["cloud"]["d"], layers=c["cloud"]["layers"],
                     heads=c["cloud"]["heads"], max_len=arith.query_len(c["max_depth"]) + 1)
    shp = jax.eval_shape(lambda k: T.init_params(cfg, k), jax.ShapeDtypeStruct((2,), jnp.uint32))
    q, ref = out["ptq"], out["compress.cloud-model"]
    assert q["status"] == "completed" and ref["status"] == "over_budget"
    assert q["costs"]["setup_bytes_down"] == codec.wire_bytes(shp, 8)
    assert ref["costs"]["setup_bytes_down"] == 4 * T.param_count(shp)
    assert q["metrics"]["ref_cloud_accuracy"] - q["metrics"]["accuracy"] <= 0.01


def test_the_suite_resolves_the_language_baselines_and_only_them(tmp_path):
    """On compress/arith-small the suite grid holds kd, the references, the LM ptq,
    kd-reverse and llm-int8 (each with its sweep), and none of the shapes-only baselines."""
    from lsbench.suite.grid import expand, load_preset
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"name": "p", "seeds": [0], "groups": [
        {"tasks": ["compress/arith-small"], "methods": "*", "sweep": 2}]}))
    items = expand(load_preset(str(p)))
    assert not [it.error for it in items if it.error]
    got = {it.method for it in items if it.task_name == "compress/arith-small"}
    assert {"kd", "compress.scratch", "compress.cloud-model", "lm.ptq", "kd-reverse", "llm-int8"} <= got
    assert not got & {"prune-magnitude", "lowrank", "qat", "prune-structured", "feature-kd"}
