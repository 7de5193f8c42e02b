"""`lsbench verify`: a faithful results folder reproduces; a tampered cost or
metric gives one line per mismatch and exit 1; bad input exits 2."""
import json

from conftest import TINY_METHOD, TINY_TASK, cli
from lsbench.results.verify import compare


def test_compare_costs_exact_metrics_within_tolerance():
    old = {"status": "completed", "costs": {"bytes_up": 10, "edge_flops": 5}, "metrics": {"acc": 0.5, "x": None},
           "validation": {"acc": 0.4}}
    assert compare(old, json.loads(json.dumps(old)), 1e-4, 1e-6) == []
    new = {**old, "costs": {"bytes_up": 11, "edge_flops": 5}, "metrics": {"acc": 0.50001, "x": None},
           "validation": {"acc": 0.41}}
    d = compare(old, new, 1e-4, 1e-6)
    assert len(d) == 2 and d[0].startswith("costs.bytes_up 10 != 11") and d[1].startswith("validation.acc")
    assert compare(old, new, 1e-4, 0.02) == ["costs.bytes_up 10 != 11 (costs must match exactly)"]


def test_verify_reproduces_and_flags_tampering(tmp_path):
    import lsbench
    from lsbench.leaderboard.load import load_results
    from lsbench.results.verify import verify
    wd = tmp_path / "runs" / "tiny" / "seed0"
    lsbench.run(TINY_TASK, TINY_METHOD, seed=0, workdir=str(wd))
    lines = []
    assert verify(load_results([str(tmp_path / "runs")]), out=lines.append) == 0 and lines == []
    f = json.load(open(wd / "final.json"))
    f["costs"]["bytes_up"] += 1
    pm = f["primary_metric"]
    f["metrics"][pm] += 0.25
    json.dump(f, open(wd / "final.json", "w"))
    assert verify(load_results([str(tmp_path / "runs")]), out=lines.append) == 1
    assert len(lines) == 2 and all(x.startswith("MISMATCH") and "\n" not in x for x in lines)
    assert any("costs.bytes_up" in x for x in lines) and any(f"metrics.{pm}" in x for x in lines)


def test_verify_cli_bad_input_exit_2(tmp_path):
    for args in ([f"--results={tmp_path}/nope"], [], [f"--results={tmp_path}", "--rtol=-1"]):
        r = cli("verify", *args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
