"""Must show (slow): on the routing task, a cascade with interior operating points
scores higher than random routing, both swept the way the suite sweeps them
(the default plus interior points), selected on validation."""
import pytest

pytestmark = pytest.mark.slow

TASK = "infer/arith-route-small"


def test_cascade_with_interior_points_beats_random_routing(tmp_path):
    import lsbench
    from lsbench.leaderboard.load import load_results
    from lsbench.leaderboard.summary import summarize
    from lsbench.registry import load_method, load_task
    from lsbench.suite.grid import pick_points, point_label
    spec = load_task(TASK)
    for name in ("edge-only", "cloud-only", "cascade", "router-random"):
        cls = load_method(name, spec)
        for pt in pick_points(getattr(cls, "sweep", ()), 4, cls.default_hparams):
            label = point_label(pt)
            lsbench.run(TASK, name, seed=0, hparams=pt or None, sweep_point=label,
                        workdir=str(tmp_path / name / label))
    t = summarize(load_results([str(tmp_path)]))[TASK]
    s = {m["method"]: m for m in t["score"]["methods"]}
    assert t["score"]["selected_on"] == "validation"
    assert s["cloud-only"]["score"] == pytest.approx(1 / 20)
    assert len(s["cascade"]["points"]) >= 3
    # measured (1 seed, 2 shared cores): cascade 0.147, router-random 0.138
    assert s["cascade"]["score"] > s["router-random"]["score"], (s["cascade"], s["router-random"])
