"""The leaderboard generator over hand-made result directories (no JAX, no runs)."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import lsbench
from conftest import ROOT
from lsbench.leaderboard import tables
from lsbench.leaderboard.load import LoadError, load_results
from lsbench.leaderboard.pareto import pareto_front
from lsbench.leaderboard.perf_profile import profile, ratios
from lsbench.leaderboard.site import build
from lsbench.leaderboard.stats import mean_ci, wilson
from lsbench.leaderboard.summary import cost_to_target_by_track, summarize
from lsbench.results import schema
from lsbench.results.rundir import RunDir

# The 97.5% quantiles of Student's t with 1, 2 and 4 degrees of freedom (statistical tables).
T975 = {1: 12.7062047, 2: 4.3026527, 4: 2.7764451}
REV = "0123456789abcdef0123456789abcdef01234567"   # a clean code revision (manifest.json)


def write_run(root, task="train/fix", method="m", point="default", seed=0, value=0.5, *, track="train",
              reference=None, bytes_up=1000, bytes_down=2000, edge_flops=10**6, cloud_flops=10**9,
              reached_bytes=None, status="completed", task_version="1", bench="1.0", latency=None,
              higher=True, target=0.5, rows=3, extra=None, revision=REV):
    """Writes one run directory (final.json validated by the schema, metrics.jsonl and,
    unless ``revision`` is None, a manifest.json naming the code revision)."""
    d = os.path.join(str(root), task, method, point, f"seed{seed}")
    rd = RunDir(d)
    costs = {"bytes_up": bytes_up, "bytes_down": bytes_down, "messages": 4,
             "edge_flops": edge_flops, "cloud_flops": cloud_flops}
    ctt = {"target": target, "reached": reached_bytes is not None, "bytes": reached_bytes,
           "edge_flops": None if reached_bytes is None else edge_flops // 2,
           "cloud_flops": None if reached_bytes is None else cloud_flops // 2, "step": 1}
    derived = {} if latency is None else {"lte": {"latency_mean_s": latency, "latency_p95_s": 2 * latency,
                                                  "edge_energy_j": 0.1},
                                          "lan": {"latency_mean_s": latency / 10, "latency_p95_s": latency / 5}}
    final = {"schema": schema.SCHEMA, "benchmark_version": bench, "status": status, "task": task,
             "task_version": task_version, "track": track, "method": method, "seed": seed,
             "primary_metric": "acc", "higher_is_better": higher, "target": target,
             "metrics": {"acc": value if status == "completed" else None, "other": 1.0},
             "costs": costs, "derived": derived, "headline_profile": "lte", "wall_s": 1.5,
             "sweep_point": point, "hparams": {"p": point}, "reference": reference,
             "cost_to_target": ctt, "lsbench_version": "0.1.0", **(extra or {})}
    os.makedirs(d, exist_ok=True)
    for s in range(1, rows + 1):
        rd.append_metrics({"step": s, "acc": value, **costs})
    rd.write_final(final)
    if revision is not None:
        rd.write_manifest({"git_revision": revision, "task_name": task, "task_description": f"the {task} task",
                           "method_manifest": {"name": method, "paper": f"https://example.org/{method}"},
                           "platform": "cpu", "devices": ["cpu:0"], "versions": {"jax": "0.0"}})
    return d


@pytest.fixture
def board_dir(tmp_path):
    r = tmp_path / "runs"
    for s, v in enumerate((0.70, 0.80, 0.90)):
        write_run(r, method="fedavg", point="lr=0.1", seed=s, value=v, reached_bytes=500, latency=0.2)
    for s, v in enumerate((0.6, 0.62, 0.58)):
        write_run(r, method="fedavg", point="lr=0.5", seed=s, value=v, bytes_up=10**6, latency=0.3)
    write_run(r, method="local", seed=0, value=0.55, reference="local", bytes_up=0, bytes_down=0)
    write_run(r, method="centralized", seed=0, value=0.95, reference="centralized", bytes_up=10**5, bytes_down=0)
    write_run(r, method="weak", seed=0, value=0.3, reached_bytes=None)
    write_run(r, method="broken", seed=0, status="diverged")
    write_run(r, task="infer/fix", track="infer", method="cascade", value=0.9, latency=0.05,
              reached_bytes=100)
    return r


def test_ci_is_student_t_over_seeds(board_dir):
    rows = {(r["method"], r["sweep_point"]): r for r in summarize(load_results([str(board_dir)]))
            ["train/fix"]["rows"]}
    r = rows[("fedavg", "lr=0.1")]
    v = np.array([0.7, 0.8, 0.9])
    assert r["seeds"] == 3 and r["mean"] == pytest.approx(v.mean())
    assert r["ci95"] == pytest.approx(T975[2] * v.std(ddof=1) / math.sqrt(3), rel=1e-6)
    assert r["quality_lo"] == pytest.approx(v.mean() - r["ci95"]) and r["quality_ci"] == "Student-t over seeds"
    assert rows[("weak", "default")]["ci95"] is None and rows[("weak", "default")]["seeds"] == 1
    for df, q in T975.items():
        m, hw, n = mean_ci([0.0, 1.0] + [0.5] * (df - 1))
        assert n == df + 1
        assert hw == pytest.approx(q * np.std([0.0, 1.0] + [0.5] * (df - 1), ddof=1) / math.sqrt(n), rel=1e-6)
    assert mean_ci([1.0, 1.0, 1.0])[1] == 0.0 and mean_ci([])[0] is None


def test_wilson_interval_for_success_rates(tmp_path):
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.16113, abs=1e-4)     # the Wilson bound 3.84/(20+3.84)
    lo, hi = wilson(10, 20)
    assert lo == pytest.approx(0.29929, abs=1e-4) and hi == pytest.approx(0.70071, abs=1e-4)
    assert wilson(5, 0) is None
    # planning success over seeds pools every episode into one Wilson interval, inside [0, 1]
    for s, v in enumerate((1.0, 1.0, 0.96875)):
        write_run(tmp_path, task="plan/fix", track="plan", method="ask", seed=s, value=v,
                  extra={"metrics": {"acc": v, "success": v}, "unit": "episode", "units": 64})
    r = summarize(load_results([str(tmp_path)]))["plan/fix"]["rows"][0]
    assert r["quality_ci"] == "Wilson over 192 episodes" and r["quality_hi"] <= 1.0
    assert (r["quality_lo"], r["quality_hi"]) == pytest.approx(wilson(190, 192))


def test_rank_by_score_references_not_ranked(board_dir):
    t = summarize(load_results([str(board_dir)]))["train/fix"]
    ms = t["score"]["methods"]
    ranked = [m for m in ms if m["rank"]]
    assert [m["rank"] for m in ranked] == list(range(1, len(ranked) + 1))
    assert all((a["score"], -a["cost"]) >= (b["score"], -b["cost"]) for a, b in zip(ranked, ranked[1:]))
    local = next(m for m in ms if m["method"] == "local")
    assert local["rank"] is None and local["score"] == 0.0
    rows = t["rows"]
    assert rows[-1]["method"] == "broken" and rows[-1]["not_completed"] == ["diverged"]
    md = tables.markdown(t)
    assert "not ranked" in md and "±" in md and "score (20 budgets)" in md


def test_lower_is_better_scores_the_flipped_gap(tmp_path):
    for m, ref, v, up in (("e", "local", 3.0, 0), ("c", "centralized", 1.0, 1000), ("a", None, 2.0, 100),
                          ("b", None, 1.5, 100)):
        write_run(tmp_path, method=m, value=v, higher=False, reference=ref, bytes_up=up, bytes_down=0)
    t = summarize(load_results([str(tmp_path)]))["train/fix"]
    assert [m["method"] for m in t["score"]["methods"] if m["rank"]] == ["b", "a"]
    assert t["score"]["methods"][0]["score"] > 0


def test_pareto_front_hand_made():
    pts = [(1, 0.5), (2, 0.6), (3, 0.55), (2, 0.6), (0.5, 0.2), (4, 0.9), (5, 0.9)]
    assert pareto_front(pts) == [4, 0, 1, 3, 5]   # (3, .55) and (5, .9) are dominated
    assert pareto_front([(1, 3.0), (2, 1.0), (3, 2.0)], higher_is_better=False) == [0, 1]
    assert pareto_front([((1, 5), 0.5), ((2, 1), 0.5), ((2, 5), 0.5)]) == [0, 1]
    assert pareto_front([]) == []


def test_perf_profile_maths_with_misses():
    inf = math.inf
    costs = {"a": {"t1": 10, "t2": 40, "t3": inf}, "b": {"t1": 20, "t2": 20, "t3": 5},
             "never": {"t1": inf, "t2": inf, "t3": inf}}
    methods, tasks, r = ratios(costs)
    assert methods == ["a", "b", "never"] and tasks == ["t1", "t2", "t3"]
    assert r[0].tolist() == [1.0, 2.0, inf] and r[1].tolist() == [2.0, 1.0, 1.0]
    assert np.isinf(r[2]).all()
    p = profile(costs)
    assert p["r_max"] == 4.0 and p["tau"][0] == 1.0 and p["tau"][-1] == 4.0
    rho = dict(zip(p["methods"], p["rho"]))
    assert rho["a"][0] == pytest.approx(1 / 3) and rho["b"][0] == pytest.approx(2 / 3)
    assert rho["a"][-1] == pytest.approx(2 / 3) and rho["b"][-1] == 1.0
    assert (rho["never"] == 0).all()
    assert all(np.all(np.diff(x) >= 0) for x in p["rho"])          # non-decreasing in tau
    score = dict(zip(p["methods"], p["score"]))
    # linear area to r_max = 4: a has ratios (1, 2, inf): (3 + 2 + 0) / 3 tasks / 3
    assert score["a"] == pytest.approx(5 / 9) and score["b"] == pytest.approx(8 / 9) and score["never"] == 0.0
    # adding a far worse method changes no one's score (r_max is fixed, not data-dependent)
    p2 = profile({**costs, "slow": {"t1": 1000, "t2": 1000, "t3": 1000}})
    assert dict(zip(p2["methods"], p2["score"]))["a"] == pytest.approx(5 / 9)
    assert profile({"x": {"t": 3}, "y": {"t": 3}})["score"].tolist() == [1.0, 1.0]   # ties both best
    # zero best cost: equal zeros are best, anything else is infinitely worse
    assert ratios({"a": {"t": 0}, "b": {"t": 5}})[2][:, 0].tolist() == [1.0, inf]


def test_cost_to_target_by_track(board_dir):
    ct = cost_to_target_by_track(summarize(load_results([str(board_dir)])))
    b = ct["train"]["bytes"]
    assert b["fedavg"]["train/fix"] == 500 and math.isinf(b["weak"]["train/fix"])
    assert "local" not in b                       # references are not in the profile
    assert set(ct) == {"train", "infer"}


@pytest.mark.parametrize("case", ["bench", "task_version", "corrupt", "truncated", "missing_metrics",
                                  "bad_schema", "duplicate"])
def test_refuses_mixed_versions_and_bad_files(tmp_path, case):
    a = tmp_path / "a"
    d = write_run(a, seed=0)
    roots = [str(a)]
    if case == "bench":
        write_run(a, seed=1, bench="2.0")
    elif case == "task_version":
        write_run(a, seed=1, task_version="2")
    elif case == "corrupt":
        open(os.path.join(d, "final.json"), "w").write('{"schema": "lsbench.fin')
    elif case == "truncated":
        with open(os.path.join(d, "metrics.jsonl"), "a") as f:
            f.write('{"step": 4, "acc": 0.')
    elif case == "missing_metrics":
        os.remove(os.path.join(d, "metrics.jsonl"))
    elif case == "bad_schema":
        f = json.load(open(os.path.join(d, "final.json")))
        f["costs"]["bytes_up"] = -1
        json.dump(f, open(os.path.join(d, "final.json"), "w"))
    elif case == "duplicate":
        write_run(tmp_path / "b", seed=0)
        roots.append(str(tmp_path / "b"))
    with pytest.raises(LoadError) as e:
        load_results(roots)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path) in msg and ("final.json" in msg or "metrics.jsonl" in msg)


def _cli(*args):
    """The leaderboard CLI in a fresh interpreter that fails if JAX gets imported."""
    code = ("import sys\nfrom lsbench.leaderboard.cli import main\nrc = main(sys.argv[1:])\n"
            "assert not any(m == 'jax' or m.startswith('jax.') for m in sys.modules), 'imported jax'\n"
            "sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_cli_bad_input_one_line_exit_2(tmp_path):
    for args in ([f"--out={tmp_path}/o"], [f"--results={tmp_path}/nope", f"--out={tmp_path}/o"],
                 [f"--results={tmp_path}", f"--out={tmp_path}/o"], ["--bogus=1"]):
        r = _cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "error" in r.stderr, r.stderr
    write_run(tmp_path / "a", seed=0)
    write_run(tmp_path / "a", seed=1, task_version="9")
    r = _cli(f"--results={tmp_path}/a", f"--out={tmp_path}/o")
    assert r.returncode == 2 and "version" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "o" / "index.html")


def test_site_end_to_end_without_jax(board_dir, tmp_path):
    out = tmp_path / "site"
    r = _cli(f"--results={board_dir}", f"--out={out}")
    assert r.returncode == 0, r.stderr
    board = json.load(open(out / "board.json"))
    for task, head in (("train-fix", "bytes"), ("infer-fix", "cloud_flops")):
        for ext in ("md", "csv", "html", "tex"):
            assert (out / "tables" / f"{task}.{ext}").stat().st_size > 0
        axes = board["tasks"][task.replace("-", "/", 1)]["plots"]
        assert axes[0] == head             # the task's headline axis first
        for axis in axes:
            assert (out / "plots" / f"{task}-{axis}.png").read_bytes()[:4] == b"\x89PNG"
            assert b"<svg" in (out / "plots" / f"{task}-{axis}.svg").read_bytes()[:1000]
        page = (out / "tasks" / f"{task}.html").read_text()
        assert "<table" in page and f"{task}-{head}.png" in page and lsbench.__version__ in page
    # train/fix: edge FLOPs are one constant over its points, so no edge-FLOPs plot
    assert "edge_flops" not in board["tasks"]["train/fix"]["plots"]
    assert (out / "methods" / "fedavg.html").exists()
    assert (out / "plots" / "profile-train-bytes.png").exists()
    index = (out / "index.html").read_text()
    assert "tasks/train-fix.html" in index and "lsbench leaderboard --results" in index
    assert "http://" not in index and "https://" not in index     # renders offline
    tex = (out / "tables" / "train-fix.tex").read_text()
    assert r"$\pm$" in tex and "lr=0.1" in tex and "\\begin{tabular}" in tex
    csv_rows = (out / "tables" / "train-fix.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 6 and csv_rows[0].startswith("rank,score,task,method")
    assert set(board["tasks"]) == {"train/fix", "infer/fix"}


def test_tex_and_markdown_escape():
    assert tables.tex_escape("a_b & 50% ±") == r"a\_b \& 50\% $\pm$"
    info = {"task": "t", "task_version": "1", "primary_metric": "acc", "higher_is_better": True,
            "target": None, "headline_profile": "lte", "cloud_kind": None, "track": "train",
            "quality": "acc", "quality_higher": True}
    row = {"rank": 1, "method": "a|b", "sweep_point": "x", "reference": None, "mean": 0.5, "ci95": None,
           "seeds": 1, "runs": 1, "not_completed": [], "bytes_up": 1.5e6, "bytes_down": 0, "bytes": 1.5e6,
           "edge_flops": 2e9, "cloud_flops": None, "cloud_nodes": None, "latency_mean_s": None,
           "latency_p95_s": None, "quality": 0.5, "quality_lo": None, "quality_ci95": None, "val": None,
           "cost": 1.5e6, "coincides": None}
    score = {"axis": "bytes", "points": 20, "methods": [{"method": "a|b", "reference": None, "rank": 1,
                                                         "score": 0.25, "cost": 1.5e6}]}
    md = tables.markdown({"info": info, "rows": [row], "score": score})
    assert "a\\|b" in md and "1.5 MB" in md and "2 GFLOP" in md and "0.250" in md


def test_rows_differ_by_fingerprint_and_partial_runs_are_not_ranked(tmp_path):
    """Two runs that share (task, method, point) but not a fingerprint (other
    hyper-parameters, or a plugin that calls itself fedavg) never share a row;
    --max_units runs and leak-test runs are shown but never ranked."""
    r = tmp_path / "runs"
    write_run(r / "a", method="fedavg", seed=0, value=0.5, extra={"fingerprint_id": "aaaa1111"})
    write_run(r / "b", method="fedavg", seed=0, value=0.9, extra={"fingerprint_id": "bbbb2222"})
    write_run(r / "c", method="capped", seed=0, value=0.99, extra={"stopped_early": True})
    write_run(r / "d", method="leaky", seed=0, value=0.98, extra={"scrambled": True})
    write_run(r / "e", method="local", reference="local", value=0.1, bytes_up=0, bytes_down=0)
    write_run(r / "e", method="centralized", reference="centralized", value=0.95)
    rows = summarize(load_results([str(r)]))["train/fix"]["rows"]
    fed = [x for x in rows if x["method"] == "fedavg"]
    assert len(fed) == 2 and {x["seeds"] for x in fed} == {1}
    assert {x["sweep_point"] for x in fed} == {"default [aaaa1111]", "default [bbbb2222]"}
    by = {x["method"]: x for x in rows}
    assert by["capped"]["rank"] is None and by["capped"]["unranked"] == "partial (--max_units)"
    assert by["leaky"]["rank"] is None and by["leaky"]["unranked"] == "leak test"
    assert sorted(x["rank"] for x in rows if x["rank"]) == [1, 1]    # fedavg: one ranked method
    m = summarize(load_results([str(r)]))["train/fix"]["score"]["methods"][0]
    assert m["method"] == "fedavg" and m["picks"][-1] == "default [bbbb2222]"    # its better point


def _prov_runs(root, revs):
    for i, rev in enumerate(revs):
        write_run(root, method=f"m{i}", seed=0, revision=rev)


@pytest.mark.parametrize("revs,ok", [((REV, REV), True), ((REV, REV + "-dirty"), False),
                                     ((REV, "fedcba9876543210fedcba9876543210fedcba98"), False),
                                     ((REV, None), False)])
def test_publishing_refuses_dirty_or_mixed_results(tmp_path, revs, ok):
    """--publish refuses a dirty tree, an unknown revision or two code revisions;
    --allow_mixed publishes them and the pages say so."""
    _prov_runs(tmp_path / "runs", revs)
    out = tmp_path / "site"
    if ok:
        s = build([str(tmp_path / "runs")], str(out), "x", publish=True)
        assert not s["meta"]["provenance"]["allow_mixed"]
        assert "--allow_mixed" not in (out / "index.html").read_text()
        return
    with pytest.raises(LoadError, match="allow_mixed"):
        build([str(tmp_path / "runs")], str(out), "x", publish=True)
    assert not (out / "index.html").exists()
    s = build([str(tmp_path / "runs")], str(out), "x", publish=True, allow_mixed=True)
    assert s["meta"]["provenance"]["allow_mixed"]
    for page in ("index.html", "tasks/train-fix.html", "methods/m0.html"):
        assert "<b>--allow_mixed</b>" in (out / page).read_text()
    # a local board (not --publish) lists the revisions and builds
    s = build([str(tmp_path / "runs")], str(tmp_path / "local"), "x")
    assert not s["meta"]["provenance"]["allow_mixed"] and len(s["meta"]["provenance"]["revisions"]) >= 1


def test_commits_that_only_add_results_are_one_code_revision(tmp_path):
    """Committing results under leaderboard/ as they finish keeps one code revision."""
    from lsbench.leaderboard import provenance
    g = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True,  # noqa: E731
                                  text=True).stdout.strip()
    g("init", "-q")
    g("config", "user.email", "t@t")
    g("config", "user.name", "t")
    (tmp_path / "code.py").write_text("x = 1\n")
    g("add", "code.py")
    g("commit", "-qm", "a")
    a = g("rev-parse", "HEAD")
    os.makedirs(tmp_path / "leaderboard" / "results")
    (tmp_path / "leaderboard" / "results" / "final.json").write_text("{}")
    g("add", "leaderboard")
    g("commit", "-qm", "results")
    b = g("rev-parse", "HEAD")
    (tmp_path / "code.py").write_text("x = 2\n")
    g("commit", "-qam", "code")
    c = g("rev-parse", "HEAD")
    assert provenance.same_code(a, b, str(tmp_path)) and not provenance.same_code(a, c, str(tmp_path))
    assert provenance.code_groups([a, b, c], str(tmp_path)) == [[x for x in sorted([a, b, c]) if x != c], [c]] or \
        len(provenance.code_groups([a, b, c], str(tmp_path))) == 2


def test_publish_seed_reuses_only_current_code_and_sync_mirrors_finished_runs(tmp_path):
    """A publishing run resumes from committed results made by the same code;
    stale or dirty ones run again; sync mirrors the finished runs."""
    from lsbench.leaderboard import publish
    res, wd = tmp_path / "results", tmp_path / "work"
    write_run(res, method="a", revision=REV)
    write_run(res, method="b", revision=REV + "-dirty")
    write_run(res, method="c", revision="fedcba9876543210fedcba9876543210fedcba98")   # not in this repo
    c = publish.seed(str(res), str(wd), current=REV)
    assert (c["reused"], c["stale"], c["present"]) == (1, 2, 0)
    assert (wd / "runs" / "train/fix/a/default/seed0/final.json").exists()
    assert not (wd / "runs" / "train/fix/b").exists()
    assert publish.seed(str(res), str(wd), current=REV)["present"] == 1          # idempotent
    write_run(wd / "runs", method="d", revision=REV)
    os.makedirs(wd / "runs" / "train/fix/e/default/seed0")                       # unfinished: no final.json
    assert publish.sync(str(wd), str(res))["runs"] == 2
    assert sorted(os.listdir(res / "train/fix")) == ["a", "d"]
    assert sorted(os.listdir(res / "train/fix/d/default/seed0")) == ["final.json", "manifest.json", "metrics.jsonl"]
