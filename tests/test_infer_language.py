"""Language inference tasks (arith-route, pcfg-specdec): the must-show self-tests.

Tasks are built with tiny configs (few training steps) in a temp data dir; the
harness's InferLoop runs the methods, built per side and sealed as the runner
does, directly (no run directory).
"""
import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from baselines import routing, routing3, specdec
from lsbench.harness import sealed
from lsbench.harness.infer_loop import InferLoop
from lsbench.metering import profiles
from lsbench.metering.flops import count_jaxpr
from lsbench.models import transformer as TM
from tasks import infer_arith, infer_arith3, infer_pcfg
from tasks._infer_metrics import cpt, leviathan_mat, routing3_curve, routing_curve


def run(inst, cls, seed=0, **hp):
    sealer = sealed.Sealer(sealed.guard_for("infer", inst), meter=count_jaxpr)
    sides = sealed.build_sides(cls, "infer", inst, {**cls.default_hparams, **hp}, sealer)
    loop = InferLoop(inst, sides, seed)
    loop.preflight()
    st = loop.init_state()
    for u in range(loop.num_units):
        st, _, _ = loop.run_unit(st, u)
    out = loop.finish(st, [])
    out["preds"], out["log"] = st["preds"], st["log"]
    return out


def setup_costs(inst, cls, **hp):
    """The metered setup of a method (no batch run)."""
    sealer = sealed.Sealer(sealed.guard_for("infer", inst), meter=count_jaxpr)
    sides = sealed.build_sides(cls, "infer", inst, {**cls.default_hparams, **hp}, sealer)
    return {k: int(v) for k, v in InferLoop(inst, sides, 0).init_state()["costs"].items()}


def nbytes(tree):
    return sum(np.asarray(a).nbytes for a in jax.tree_util.tree_leaves(tree))


def tiny(spec, **cfg):
    return dataclasses.replace(spec, config={**spec.config, **cfg})


_TMP = {}


def _build(spec, tiny_spec, tmp_path_factory):
    """The CI-sized task with its models from $LSBENCH_DATA_DIR (prebuilt), else a tiny
    variant trained briefly in a temp dir (one per session, so tasks that share a
    model recipe share the model): the invariants hold for any models."""
    dd = os.environ.get("LSBENCH_DATA_DIR")
    if not dd:
        if "dd" not in _TMP:
            _TMP["dd"] = str(tmp_path_factory.mktemp("data"))
        spec, dd = tiny_spec, _TMP["dd"]
    return spec.builder(spec, dd, 0, log=lambda s: None)


_TINY_ARITH = dict(n_train=4000, edge={"d": 16, "layers": 1, "heads": 2, "steps": 40, "lr": 3e-3},
                   cloud={"d": 32, "layers": 2, "heads": 4, "steps": 150, "lr": 3e-3})


@pytest.fixture(scope="module")
def arith(tmp_path_factory):
    return _build(infer_arith.SMALL, tiny(infer_arith.SMALL, **_TINY_ARITH), tmp_path_factory)


@pytest.fixture(scope="module")
def arith3(tmp_path_factory):
    return _build(infer_arith3.SMALL, tiny(infer_arith3.SMALL, **_TINY_ARITH,
                                           mid={"d": 24, "layers": 2, "heads": 2, "steps": 80, "lr": 3e-3}),
                  tmp_path_factory)


@pytest.fixture(scope="module")
def pcfg(tmp_path_factory):
    return _build(infer_pcfg.SMALL, tiny(
        infer_pcfg.SMALL, n_train=300, n_test=48, batch_size=32, gen_len=12,
        edge={"d": 16, "layers": 1, "heads": 2, "steps": 30, "lr": 3e-3},
        cloud={"d": 32, "layers": 2, "heads": 4, "steps": 30, "lr": 3e-3}), tmp_path_factory)


# ---- routing curves ---------------------------------------------------------------------
def test_routing_curve_metrics():
    line = [(p, 0.5 + 0.3 * p) for p in np.linspace(0, 1, 11)]
    m = routing_curve(line, 0.5, 0.8)
    assert m["apgr"] == pytest.approx(0.5) and m["cpt50"] == pytest.approx(0.5)
    assert m["cpt80"] == pytest.approx(0.8) and m["aiq"] == pytest.approx(0.65)
    good = routing_curve([(0.2, 0.8)], 0.5, 0.8)  # recovers the gap at 20% calls
    assert good["apgr"] > 0.85 and good["cpt80"] < 0.2 and good["aiq"] > m["aiq"]
    assert np.isnan(cpt(line, 0.5, 0.8, 1.5))  # a gap fraction never reached


def test_random_router_recovers_half_the_gap(arith):
    t = arith.test
    ae, ac = t["edge_correct"].mean(), t["cloud_correct"].mean()
    assert ac - ae > 0.1, "the tiny models must leave a gap to recover"
    points = []
    for p in (0.2, 0.4, 0.6, 0.8):
        f = run(arith, routing.RouterRandom, p=p)["metrics"]
        assert abs(f["call_rate"] - p) < 0.05
        points.append((f["call_rate"], f["accuracy"]))
    assert abs(routing_curve(points, ae, ac)["apgr"] - 0.5) < 0.05


def test_reference_routers_and_bytes(arith):
    t, Lq = arith.test, arith.edge_view.input_shape[0]
    e = run(arith, routing.EdgeOnly)
    c = run(arith, routing.CloudOnly)
    o = run(arith, routing.RouterOracle)
    assert e["metrics"]["accuracy"] == pytest.approx(t["edge_correct"].mean())
    assert c["metrics"]["accuracy"] == pytest.approx(t["cloud_correct"].mean())
    # The oracle equals the best of edge and cloud per query, calling only where it helps.
    assert o["metrics"]["accuracy"] == pytest.approx((t["edge_correct"] | t["cloud_correct"]).mean())
    assert o["metrics"]["call_rate"] == pytest.approx((~t["edge_correct"] & t["cloud_correct"]).mean())
    assert e["costs"]["bytes_up"] == e["costs"]["cloud_flops"] == 0
    N = len(t["y"])
    assert c["costs"]["bytes_up"] == N * 4 * Lq and c["costs"]["bytes_down"] == N * 4
    sent = o["log"]["sent"].any(0)
    assert o["costs"]["bytes_up"] == sent.sum() * 4 * Lq
    # Query-only routing: cloud-only never runs the edge model; the oracle runs it
    # only for the rows it keeps, each billed what edge-only bills a row.
    assert c["costs"]["edge_flops"] == 0
    per_row = e["log"]["edge_flops"].sum(0)
    assert (per_row == per_row[0]).all() and per_row[0] > 0
    mine = o["log"]["edge_flops"].sum(0)
    np.testing.assert_array_equal(mine[~sent], per_row[0])
    np.testing.assert_array_equal(mine[sent], 0)


def test_cascade_and_learned_router_span_the_curve(arith):
    lo = run(arith, routing.Cascade, tau=0.0)["metrics"]
    hi_run = run(arith, routing.Cascade, tau=1.01)
    hi = hi_run["metrics"]
    assert lo["call_rate"] == 0 and hi["call_rate"] == 1
    # a cascade runs the edge model on every query before it sends, and pays for it
    per_row = hi_run["log"]["edge_flops"].sum(0)
    assert (per_row == per_row[0]).all() and per_row[0] >= lo["edge_flops_per_example"] > 0
    lr = run(arith, routing.RouterLearned, threshold=0.2)
    assert 0 <= lr["metrics"]["call_rate"] <= 1 and np.isfinite(lr["metrics"]["gap_recovered"])
    # The router is fit on the cloud's calibration split: the edge's params go up,
    # the fitted weights (one per token plus a bias, fp32) come down; the fit is cloud FLOPs.
    c = lr["costs"]
    assert c["setup_bytes_up"] == nbytes(arith.edge_view.params["edge"])
    assert c["setup_bytes_down"] == 4 * (arith.edge_view.vocab + 1)
    assert c["setup_cloud_flops"] > 0 and c["setup_edge_flops"] == 0


# ---- speculative decoding ---------------------------------------------------------------
@pytest.mark.parametrize("gamma", [1, 3])
def test_greedy_specdec_is_lossless_and_bytes_exact(pcfg, gamma):
    f = run(pcfg, specdec.SpecDec, gamma=gamma)
    toks = f["preds"]["tokens"]
    np.testing.assert_array_equal(toks, pcfg.test["cloud_greedy"])
    assert f["metrics"]["lossless"] == 1.0 and 1.0 <= f["metrics"]["mat"] <= gamma + 1
    passes = f["log"]["sent"].sum(0)
    Lp, N = pcfg.edge_view.prompt_len, pcfg.edge_view.gen_len
    # The prompt goes up once, gamma int32 drafts per pass; (a, token) come down.
    np.testing.assert_array_equal(f["log"]["bytes_up"].sum(0), 4 * Lp + 4 * gamma * passes)
    np.testing.assert_array_equal(f["log"]["bytes_down"].sum(0), 8 * passes)
    # The harness's own token log: every row delivers gen_len tokens, at most gamma + 1 per pass.
    tok = f["log"]["tokens"]
    np.testing.assert_array_equal(tok.sum(0), N)
    assert tok[f["log"]["sent"]].max() <= gamma + 1 and (tok[~f["log"]["sent"]] == 0).all()
    assert f["metrics"]["mat"] == pytest.approx(tok.sum() / passes.sum())


def test_cloud_only_streaming_is_the_speedup_baseline(pcfg):
    f = run(pcfg, specdec.CloudOnly)
    np.testing.assert_array_equal(f["preds"]["tokens"], pcfg.test["cloud_greedy"])
    Lp, N = pcfg.edge_view.prompt_len, pcfg.edge_view.gen_len
    # One pass per token; the prompt up once, then empty requests on the open stream.
    np.testing.assert_array_equal(f["log"]["sent"].sum(0), N)
    np.testing.assert_array_equal(f["log"]["bytes_up"].sum(0), 4 * Lp)
    assert f["costs"]["edge_flops"] == 0 and f["metrics"]["mat"] == 1.0
    for name in profiles.networks():
        assert f["metrics"][f"speedup_{name}"] == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("alpha,gamma", [(0.5, 2), (0.8, 4), (0.9, 8), (0.3, 1)])
def test_leviathan_mat_formula(alpha, gamma):
    n = 20000
    p = jnp.broadcast_to(jnp.array([alpha, 1 - alpha]), (n, gamma + 1, 2))
    q = jnp.broadcast_to(jnp.array([1.0, 0.0]), (n, gamma, 2))  # accepted w.p. min(1, p/q) = alpha
    a, _ = specdec.accept_sample(p, q, jnp.zeros((n, gamma), jnp.int32), jax.random.PRNGKey(gamma))
    tau = np.asarray(a) + 1
    assert abs(tau.mean() - leviathan_mat(alpha, gamma)) < 4 * tau.std() / np.sqrt(n)


@pytest.mark.parametrize("topk", [0, 2])
def test_sampling_mode_matches_target_distribution(topk):
    V, n, gamma = 5, 30000, 3
    kp, kq, kd, kv = jax.random.split(jax.random.PRNGKey(1), 4)
    p = jax.nn.softmax(2 * jax.random.normal(kp, (gamma + 1, V)))
    ql = 2 * jax.random.normal(kq, (gamma, V))
    if topk:
        vals, idx = specdec._topk_dist(ql, topk)
        q = specdec.topk_q(vals, idx, V)
    else:
        q = jax.nn.softmax(ql)
    drafts = jax.random.categorical(kd, jnp.log(q + 1e-30), shape=(n, gamma)).astype(jnp.int32)
    P, Q = jnp.broadcast_to(p, (n, gamma + 1, V)), jnp.broadcast_to(q, (n, gamma, V))
    a, tok = specdec.accept_sample(P, Q, drafts, kv)
    first = np.where(np.asarray(a) > 0, np.asarray(drafts[:, 0]), np.asarray(tok))
    counts = np.bincount(first, minlength=V)
    assert stats.chisquare(counts, n * np.asarray(p[0], np.float64) / float(p[0].sum())).pvalue > 1e-3
    bad = np.bincount(np.asarray(drafts[:, 0]), minlength=V)  # the draft alone differs
    assert stats.chisquare(bad, n * np.asarray(p[0], np.float64) / float(p[0].sum())).pvalue < 1e-3


def test_sampling_specdec_runs_and_keeps_bytes(pcfg):
    f = run(pcfg, specdec.SpecDecTopK, gamma=2, seed=3)
    assert f["preds"]["tokens"].shape == pcfg.test["cloud_greedy"].shape
    assert 0 <= f["metrics"]["acceptance_rate"] <= 1
    passes = f["log"]["sent"].sum(0)
    Lp = pcfg.edge_view.prompt_len  # ids + k=8 (fp16 prob + int32 id) per draft
    np.testing.assert_array_equal(f["log"]["bytes_up"].sum(0), 4 * Lp + passes * 2 * (4 + 8 * (2 + 4)))
    assert f["costs"]["setup_bytes_up"] == 0
    # Ids only: the cloud recomputes the draft distributions with the edge model,
    # which goes up once in setup (billed).
    g = setup_costs(pcfg, specdec.SpecDec, gamma=2, temperature=1.0)
    assert g["setup_bytes_up"] == nbytes(pcfg.edge_view.params["edge"])
    assert g["setup_bytes_down"] == 0


def _speedup(log, stream, net):
    prof = dict(profiles.load(), network={"x": net})
    return (profiles.derived(stream, profiles=prof)["x"]["latency_mean_s"]
            / profiles.derived(log, profiles=prof)["x"]["latency_mean_s"])


def test_network_crossover(pcfg):
    """From metered counts only: drafting pays a round trip per pass, streaming one in
    all, so drafting wins on a fast link with many tokens per pass and loses on slow ones."""
    v, N = pcfg.cloud_view, 64
    cfg_e, cfg_c = (TM.config_of(v.models[r]) for r in ("edge", "cloud"))
    params_c = v.params["cloud"]
    params_e = pcfg.edge_view.params["edge"]
    step_c = infer_pcfg.decode_flops(cfg_c, params_c, 1)
    stream = infer_pcfg.streaming_log(v.prompt_len, N, infer_pcfg.decode_flops(cfg_c, params_c,
                                                                                v.prompt_len - 1), step_c)

    def spec_log(mat, gamma):
        P = math.ceil(N / mat)
        log = {"sent": np.ones((P, 1), bool), "active": np.ones((P, 1), bool),
               "edge_flops": np.full((P, 1), infer_pcfg.decode_flops(cfg_e, params_e, 1) * (gamma + 1)),
               "cloud_flops": np.full((P, 1), infer_pcfg.decode_flops(cfg_c, params_c, gamma + 1)),
               "bytes_up": np.full((P, 1), 4 * gamma), "bytes_down": np.full((P, 1), 8)}
        log["bytes_up"][0] += 4 * v.prompt_len
        return log
    nets = profiles.networks()
    hi = spec_log(leviathan_mat(0.8, 4), 4)
    assert _speedup(hi, stream, nets["lan"]) > 1
    assert _speedup(hi, stream, nets["lte"]) < 1 and _speedup(hi, stream, nets["weak"]) < 1
    lo = spec_log(leviathan_mat(0.3, 4), 4)
    assert _speedup(lo, stream, nets["lan"]) < _speedup(hi, stream, nets["lan"])
    m = run(pcfg, specdec.SpecDec, gamma=2)["metrics"]  # the real run: RTTs cost more on worse links
    assert m["speedup_lan"] > m["speedup_wifi"] > m["speedup_lte"] > m["speedup_weak"]


@pytest.fixture(scope="module")
def pcfg_small(tmp_path_factory):
    """The CI-sized task itself (models from $LSBENCH_DATA_DIR when prebuilt)."""
    dd = os.environ.get("LSBENCH_DATA_DIR") or str(tmp_path_factory.mktemp("data"))
    return infer_pcfg.SMALL.builder(infer_pcfg.SMALL, dd, 0, log=lambda s: None)


def test_harness_mat_agrees_with_leviathan(pcfg_small):
    """MAT and acceptance come from the harness's turn log (tokens delivered per
    cloud pass), not from the method: on the real task, the measured per-token
    acceptance a predicts the measured MAT by E = (1 - a^(g+1)) / (1 - a)."""
    gamma = 4
    f = run(pcfg_small, specdec.SpecDec, gamma=gamma)
    log, m = f["log"], f["metrics"]
    sent, tok = log["sent"], log["tokens"]
    assert m["lossless"] == 1.0
    # a from the log: a pass delivering d tokens accepted d - 1 drafts and rejected
    # one unless it accepted all gamma; a row's last pass (cut at gen_len) left out.
    last = sent & (np.cumsum(sent[::-1], 0)[::-1] == 1)
    d = tok[sent & ~last]
    acc, rej = (d - 1).sum(), (d - 1 < gamma).sum()
    a = acc / (acc + rej)
    assert 0.05 < a < 0.95, a
    assert m["acceptance_rate"] == pytest.approx(a)
    assert m["mat"] == pytest.approx(tok[sent].mean())
    assert abs(m["mat"] - leviathan_mat(a, gamma)) <= 0.1 * leviathan_mat(a, gamma), (m["mat"], a)


# ---- validation splits (issue 14) ------------------------------------------------------
def test_validation_changes_nothing_of_the_test_run(arith):
    arith = _sub(arith, 1000)
    with_val = run(arith, routing.RouterRandom, p=0.4)
    no_val = run(dataclasses.replace(arith, val=None), routing.RouterRandom, p=0.4)
    assert "validation" not in no_val
    assert with_val["metrics"] == no_val["metrics"] and with_val["costs"] == no_val["costs"]
    np.testing.assert_array_equal(with_val["preds"]["pred"], no_val["preds"]["pred"])
    v = with_val["validation"]
    assert set(v) == set(with_val["metrics"])
    # computed on the validation split: its own references
    assert v["acc_edge_ref"] == pytest.approx(arith.val["edge_correct"].mean())
    assert v["acc_cloud_ref"] == pytest.approx(arith.val["cloud_correct"].mean())
    assert abs(v["call_rate"] - 0.4) < 0.08


def test_selection_reads_no_test_metric(arith):
    """Validation metrics (what the suite selects on) and what a method calibrates
    are the same whatever the test split holds."""
    t, n = arith.test, 500
    perm = np.random.default_rng(0).permutation(len(t["y"]))
    one, other = (dataclasses.replace(arith, test={k: np.asarray(v)[idx] for k, v in t.items()},
                                      val={k: np.asarray(v)[:n] for k, v in arith.val.items()})
                  for idx in (perm[:n], perm[n:2 * n]))
    a, b = run(one, routing.Cascade, tau=0.9), run(other, routing.Cascade, tau=0.9)
    assert a["validation"] == b["validation"] and a["metrics"] != b["metrics"]
    a, b = run(one, routing.RouterLearned, threshold=0.2), run(other, routing.RouterLearned, threshold=0.2)
    assert a["validation"] == b["validation"]
    assert {k: v for k, v in a["costs"].items() if k.startswith("setup")} == \
        {k: v for k, v in b["costs"].items() if k.startswith("setup")}


def test_reference_models_never_saw_test_or_validation(arith):
    """The task's splits are disjoint by content: no test or validation query is
    a calibration query, and (train, rebuilt from the config) none is a training query."""
    c = arith.edge_view
    assert not _rows(arith.test["x"]) & _rows(arith.val["x"])
    assert not (_rows(arith.test["x"]) | _rows(arith.val["x"])) & _rows(arith.calib["x"])
    assert c.calib is None  # the edge holds no labelled data


def test_reference_models_never_saw_test_or_validation(arith):
    """Disjoint by content: no test or validation query is a training or calibration query."""
    c = arith.edge_view
    train = infer_arith.arith.splits(7, 8000, 0, 0, 5, "minmax")["train"]["x"]  # a prefix of any tier's train
    seen = _rows(train) | _rows(arith.calib["x"])
    assert not _rows(arith.test["x"]) & _rows(arith.val["x"])
    assert not (_rows(arith.test["x"]) | _rows(arith.val["x"])) & seen
    assert c.calib is None  # the edge holds no labelled data


def _rows(a):
    return {np.ascontiguousarray(r).tobytes() for r in np.asarray(a)}


# ---- three models: edge, mid (edge server), cloud ----------------------------------------
def test_routing3_curve_formulas():
    ae, am, ac, r = 0.5, 0.7, 0.8, 0.25
    # random routing over the three models: the hull through (0, ae), (r, am), (1, ac)
    m = routing3_curve([(0.0, ae), (r, am), (1.0, ac)], ae, ac)
    area = r * (ae + am) / 2 + (1 - r) * (am + ac) / 2
    assert m["apgr3"] == pytest.approx((area - ae) / (ac - ae))
    assert m["cpt50_3"] == pytest.approx(r * 0.15 / 0.2)  # ae + 0.15 reached on the first segment
    # with two models and cost = call rate it is the two-model APGR
    line = [(p, ae + (ac - ae) * p) for p in np.linspace(0, 1, 5)]
    assert routing3_curve(line, ae, ac)["apgr3"] == pytest.approx(routing_curve(line, ae, ac)["apgr"])
    # a cascade paying both remote models (cost > 1) is cut at cost 1 for the area
    over = routing3_curve([(0.5, 0.75), (1.25, 0.8)], ae, ac)
    assert over["apgr3"] < routing3_curve([(0.5, 0.75), (1.0, 0.8)], ae, ac)["apgr3"] + 1e-12


def _sub(inst, n):
    """The task with its first n test and n // 2 validation rows (cheaper runs; same invariants)."""
    return dataclasses.replace(inst, test={k: np.asarray(v)[:n] for k, v in inst.test.items()},
                               val={k: np.asarray(v)[:n // 2] for k, v in inst.val.items()})


def test_three_model_routing_costs(arith3):
    arith3 = _sub(arith3, 500)
    t, Lq = arith3.test, arith3.edge_view.input_shape[0]
    N = len(t["y"])
    e, c, o = (run(arith3, cls) for cls in (routing3.EdgeOnly3, routing3.CloudOnly3, routing3.Oracle3))
    m = c["metrics"]
    assert e["metrics"]["accuracy"] == pytest.approx(t["edge_correct"].mean())
    assert m["accuracy"] == pytest.approx(t["cloud_correct"].mean())
    assert c["costs"]["edge_flops"] == 0 and m["cost"] == pytest.approx(1.0, abs=1e-6)
    assert c["costs"]["bytes_up"] == N * 4 * Lq and e["metrics"]["cost"] == 0
    anyc = t["edge_correct"] | t["mid_correct"] | t["cloud_correct"]
    assert o["metrics"]["accuracy"] == pytest.approx(anyc.mean())
    assert o["metrics"]["cost"] == pytest.approx(o["metrics"]["cost_oracle_ref"], abs=1e-6)
    # all queries to the mid model: its accuracy, its share of a cloud pass, the same bytes
    mid = run(arith3, routing3.Random3, p_mid=1.0, p_cloud=0.0)
    mm = mid["metrics"]
    assert mm["accuracy"] == pytest.approx(t["mid_correct"].mean())
    assert mm["cost"] == pytest.approx(mm["cost_mid_ref"], abs=1e-6) and 0 < mm["cost_mid_ref"] < 1
    assert mid["costs"]["edge_flops"] == 0 and mid["costs"]["bytes_up"] == c["costs"]["bytes_up"]
    # the two-step cascade at its extremes: edge only; every row through mid to the cloud, paying all three
    lo = run(arith3, routing3.Cascade3, tau_mid=0.0, tau_cloud=0.0)["metrics"]
    hi = run(arith3, routing3.Cascade3, tau_mid=1.01, tau_cloud=1.01)
    assert lo["cost"] == 0 and lo["accuracy"] == pytest.approx(t["edge_correct"].mean())
    hm = hi["metrics"]
    assert hm["accuracy"] == pytest.approx(t["cloud_correct"].mean())
    assert hm["cost"] == pytest.approx(1 + hm["cost_mid_ref"], abs=1e-6)
    assert hi["costs"]["edge_flops"] == e["costs"]["edge_flops"]
    assert hi["costs"]["bytes_up"] == 2 * c["costs"]["bytes_up"]
    lr = run(arith3, routing3.Learned3, threshold=0.6)
    assert lr["costs"]["setup_bytes_down"] == 2 * 4 * (arith3.edge_view.vocab + 1)
    assert 0 <= lr["metrics"]["cost"] <= 1 and set(lr["validation"]) == set(lr["metrics"])
