"""The cost-aware score on hand-made frontiers (no JAX, no runs): the grid, the
1/20 identity, selection on validation, ranking, coinciding points, track
summaries, and that adding a method never changes another's score."""
import math

import numpy as np
import pytest

from lsbench.leaderboard import scoring, tables
from lsbench.leaderboard.load import load_results
from lsbench.leaderboard.summary import summarize, track_summary
from test_leaderboard import write_run

SPEC = scoring.ScoreSpec(axis="cloud_flops")
ANCHOR = 10**9          # cloud-only's cloud FLOPs in these hand-made tasks
Q_EDGE, Q_CLOUD = 0.5, 0.9


def pt(cost, test, val=None, label=None):
    return {"cost": cost, "test": test, "val": test if val is None else val, "label": label or f"c={cost}"}


def test_grid_is_log_spaced_between_declared_fractions():
    g = scoring.budgets(ANCHOR, SPEC)
    assert len(g) == 20 and g[0] == pytest.approx(0.01 * ANCHOR) and g[-1] == ANCHOR
    assert np.allclose(np.diff(np.log(g)), math.log(100) / 19)


def test_edge_and_cloud_points_only_score_exactly_one_twentieth():
    grid = scoring.budgets(ANCHOR, SPEC)
    s = scoring.score_points([pt(0, Q_EDGE), pt(ANCHOR, Q_CLOUD)], Q_EDGE, Q_CLOUD, grid, True)
    assert s["score"] == 1 / 20
    assert s["recovered"][:-1] == [0.0] * 19 and s["recovered"][-1] == 1.0
    # below every point: edge-only quality (0 recovered); beating the cloud: above 1
    assert scoring.score_points([pt(2 * ANCHOR, 1.0)], Q_EDGE, Q_CLOUD, grid, True)["score"] == 0.0
    better = scoring.score_points([pt(0, 1.3)], Q_EDGE, Q_CLOUD, grid, True)["score"]
    assert better == pytest.approx((1.3 - Q_EDGE) / (Q_CLOUD - Q_EDGE)) and better > 1


def test_interior_point_counts_from_its_budget_on():
    grid = scoring.budgets(ANCHOR, SPEC)
    c = float(grid[10])          # a point costing exactly the 11th budget
    s = scoring.score_points([pt(c, 0.7), pt(ANCHOR, Q_CLOUD)], Q_EDGE, Q_CLOUD, grid, True)
    assert s["recovered"][9] == 0 and s["recovered"][10] == pytest.approx(0.5)
    assert s["score"] == pytest.approx((9 * 0.5 + 1.0) / 20)


def test_selection_reads_validation_not_test():
    grid = scoring.budgets(ANCHOR, SPEC)
    # two points within every budget from 1e8 on: 'a' is better on test, 'b' on validation
    pts = [pt(10**8, 0.9, val=0.6, label="a"), pt(10**8, 0.7, val=0.8, label="b")]
    s = scoring.score_points(pts, Q_EDGE, Q_CLOUD, grid, True)
    assert set(p for p in s["picks"] if p) == {"b"}
    assert max(s["recovered"]) == pytest.approx(0.5)     # b's test quality, not a's
    # lower is better: the sign flips with the gap
    low = scoring.score_points([pt(0, 3.0), pt(ANCHOR, 1.0)], 3.0, 1.0, grid, False)
    assert low["score"] == 1 / 20


def _board(root):
    return summarize(load_results([str(root)]))


def _task(root, methods, task="infer/arith-route-small", refs=True):
    """Writes edge-only, cloud-only and ``methods``: {name: [(cloud_flops, q, val)]}, 3 seeds each."""
    for s in range(3):
        for name, ref, cf, q in (("edge-only", "edge-only", 0, Q_EDGE),
                                 ("cloud-only", "cloud-only", ANCHOR, Q_CLOUD))[:2 if refs else 0]:
            write_run(root, task=task, track="infer", method=name, reference=ref, seed=s, value=q,
                      cloud_flops=cf, extra={"validation": {"acc": q, "accuracy": q},
                                             "metrics": {"acc": q, "accuracy": q}})
        for name, pts in methods.items():
            for cf, q, v in pts:
                write_run(root, task=task, track="infer", method=name, point=f"cf={cf}", seed=s, value=q,
                          cloud_flops=cf, extra={"validation": {"acc": v, "accuracy": v},
                                                 "metrics": {"acc": q, "accuracy": q}})


def _scores(board, task="infer/arith-route-small"):
    return {m["method"]: m["score"] for m in board[task]["score"]["methods"]}


def test_adding_a_method_leaves_other_scores_unchanged(tmp_path):
    methods = {"copy": [(0, Q_EDGE, Q_EDGE), (ANCHOR, Q_CLOUD, Q_CLOUD)],
               "cascade": [(10**7, 0.6, 0.6), (10**8, 0.8, 0.8), (ANCHOR, Q_CLOUD, Q_CLOUD)]}
    _task(tmp_path, methods)
    before = _scores(_board(tmp_path))
    assert before["copy"] == 1 / 20 and before["cascade"] > before["copy"]
    # a method that beats everyone, with points far outside the grid
    grid = _board(tmp_path)["infer/arith-route-small"]["score"]["grid"]
    _task(tmp_path / "more", {"great": [(10**3, 0.95, 0.95), (5 * ANCHOR, 1.0, 1.0)]}, refs=False)
    after = summarize(load_results([str(tmp_path)]))   # tmp_path now holds both
    s = _scores(after)
    assert {k: s[k] for k in before} == before and s["great"] > s["cascade"]
    assert after["infer/arith-route-small"]["score"]["grid"] == grid


def test_rank_by_score_then_cost_then_name_one_row_per_method(tmp_path):
    _task(tmp_path, {"zeta": [(10**8, 0.8, 0.8)], "alpha": [(10**8, 0.8, 0.8)],
                     "cheap": [(5 * 10**7, 0.8, 0.8)], "top": [(10**7, 0.9, 0.9)],
                     "twin": [(0, Q_EDGE, Q_EDGE), (ANCHOR, Q_CLOUD, Q_CLOUD)]})
    t = _board(tmp_path)["infer/arith-route-small"]
    ranked = [m for m in t["score"]["methods"] if m["rank"]]
    assert [m["method"] for m in ranked][:4] == ["top", "cheap", "alpha", "zeta"]
    assert _scores({"x": t}, "x")["alpha"] == _scores({"x": t}, "x")["zeta"]    # a tie, broken by name
    assert [m["rank"] for m in ranked] == list(range(1, len(ranked) + 1))
    assert all(m["rank"] is None for m in t["score"]["methods"] if m["reference"])
    # one ranked row per method, its points right beneath it
    ent = tables.entries(t)
    heads = [x["method"] for k, x in ent if k == "method"]
    assert len(heads) == len(set(heads)) == 7
    for i, (k, x) in enumerate(ent):
        if k == "point":
            owner = next(y for kk, y in reversed(ent[:i]) if kk == "method")
            assert owner["method"] == x["method"]
    # points that coincide with a reference are shown and marked; the copy still scores 1/20
    twin = [r for r in t["rows"] if r["method"] == "twin"]
    assert {r["coincides"] for r in twin} == {"edge-only", "cloud-only"}
    assert "≡ cloud-only" in tables.markdown(t)
    assert _scores({"x": t}, "x")["twin"] == 1 / 20


def test_no_reference_no_score_and_track_summary_is_the_mean(tmp_path):
    _task(tmp_path, {"m": [(10**8, 0.8, 0.8)], "n": [(10**7, 0.7, 0.7)]}, task="infer/arith-route-small")
    _task(tmp_path, {"m": [(10**7, 0.9, 0.9)]}, task="infer/arith-route-x")
    write_run(tmp_path, task="infer/orphan", track="infer", method="m", value=0.5)
    b = _board(tmp_path)
    assert b["infer/orphan"]["score"]["methods"] == [] and "no score" in b["infer/orphan"]["score"]["note"]
    tr = {r["method"]: r for r in track_summary(b)["infer"]}
    s1, s2 = _scores(b)["m"], _scores(b, "infer/arith-route-x")["m"]
    assert tr["m"]["mean"] == pytest.approx((s1 + s2) / 2) and tr["m"]["n"] == 2
    assert tr["m"]["tasks"] == {"infer/arith-route-small": s1, "infer/arith-route-x": s2}
    assert tr["n"]["n"] == 1


def test_selection_falls_back_to_test_only_without_validation_and_says_so(tmp_path):
    _task(tmp_path, {"m": [(10**8, 0.8, 0.8)]})
    t = _board(tmp_path)["infer/arith-route-small"]
    assert t["score"]["selected_on"] == "validation"
    write_run(tmp_path, task="infer/arith-route-small", track="infer", method="noval", value=0.7,
              cloud_flops=10**8, extra={"metrics": {"acc": 0.7, "accuracy": 0.7}})
    t = _board(tmp_path)["infer/arith-route-small"]
    assert t["score"]["selected_on"].startswith("test")


def test_spec_table_and_axes():
    assert scoring.spec_for("infer/arith-route-small", "infer").axis == "cloud_flops"
    assert scoring.spec_for("plan/fogmaze", "plan").axis == "cloud_flops"
    assert scoring.spec_for("train/new-task", "train").cloud_ref == ("centralized",)
    f = {"costs": {"bytes_up": 3, "bytes_down": 4, "cloud_flops": 9, "cloud_nodes": 5}, "cloud_kind": "solver",
         "derived": {"lte": {"latency_mean_s": 0.25}}, "headline_profile": "lte", "metrics": {"ms": 2.0}}
    assert [scoring.axis_cost(f, a) for a in ("bytes", "cloud_work", "cloud_flops", "latency", "metric:ms")] == [
        7.0, 5.0, 9.0, 0.25, 2.0]
    with pytest.raises(ValueError, match="unknown cost axis"):
        scoring.axis_cost(f, "watts")


def test_a_submitted_plugin_joins_a_star_preset(tmp_path):
    """`lsbench suite --preset=P --methods=mine.py,edge-only` runs the plugin where it applies."""
    import json as _json

    from conftest import TINY_METHOD, TINY_TASK
    from lsbench.suite.grid import _plugins, expand, load_preset
    assert _plugins(["a/mine.py", "pkg.mod:Cls", "edge-*", "fedavg", "x.py:Y"]) == ["a/mine.py", "pkg.mod:Cls",
                                                                                     "x.py:Y"]
    p = tmp_path / "p.json"
    p.write_text(_json.dumps({"seeds": [0], "groups": [{"tasks": [TINY_TASK], "methods": "*", "sweep": 2}]}))
    items = expand(load_preset(str(p)), methods=[TINY_METHOD])
    assert {it.method for it in items} == {TINY_METHOD} and {it.point for it in items} == {"default", "lr=0.1"}


def test_compress_scores_setup_bytes_and_an_over_budget_cloud_reference_still_anchors(tmp_path):
    """compress/*: accuracy against the edge model's bytes shipped; the fp32 cloud model
    is over the edge budget (shown, not ranked) and still anchors the grid."""
    t = "compress/fix"
    for name, ref, sb, q, st in (("scratch", "edge-only", 10**4, 0.5, "completed"),
                                 ("cloud-model", "cloud-only", 10**6, 0.9, "over_budget"),
                                 ("int8", None, 2.5 * 10**5, 0.88, "completed")):
        write_run(tmp_path, task=t, track="infer", method=name, reference=ref, value=q, status="completed",
                  extra={"status": st, "metrics": {"acc": q, "accuracy": q}, "validation": {"accuracy": q},
                         "costs": {"bytes_up": 0, "bytes_down": 0, "messages": 0, "edge_flops": 1,
                                   "cloud_flops": 0, "setup_bytes_down": int(sb)}})
    b = _board(tmp_path)[t]
    assert b["score"]["axis"] == "setup_bytes_down" and b["score"]["anchor"] == 10**6
    s = {m["method"]: m for m in b["score"]["methods"]}
    assert s["int8"]["rank"] == 1 and s["int8"]["score"] > 0.1
    assert next(r for r in b["rows"] if r["method"] == "cloud-model")["unranked"] == "over budget"


def test_adapt_anchors_on_full_federated_fine_tuning(tmp_path):
    """adapt/*: the gap runs from local training to fedavg-full (a method, ranked like any)."""
    t = "adapt/fix"
    for name, ref, up, q in (("local-full", "local", 0, 0.6), ("fedavg-full", None, 10**6, 0.8),
                             ("fedlora", None, 10**4, 0.78)):
        write_run(tmp_path, task=t, method=name, reference=ref, value=q, bytes_up=up, bytes_down=0,
                  extra={"validation": {"acc": q}})
    sc = _board(tmp_path)[t]["score"]
    assert (sc["anchor"], sc["q_edge"], sc["q_cloud"]) == (10**6, 0.6, 0.8)
    s = {m["method"]: m for m in sc["methods"]}
    assert s["fedavg-full"]["score"] == 1 / 20 and s["fedlora"]["rank"] == 1
