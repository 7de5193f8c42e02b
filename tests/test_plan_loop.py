"""The planning loop on the tiny plugin: bytes equal the layout times the calls,
setup is metered, resume equals an uninterrupted run, the cloud sees the world
only when asked."""
import os

from lsbench.harness.runner import RunConfig, execute

from conftest import PLUGINS

PLAN_TASK = os.path.join(PLUGINS, "tiny_plan.py") + ":TASK"
PLAN_METHOD = os.path.join(PLUGINS, "tiny_plan.py") + ":AskOnce"
SETUP_METHOD = os.path.join(PLUGINS, "tiny_plan.py") + ":AskOnceWithSetup"


def run(tmp, task, method, name="r", **kw):
    cfg = RunConfig(task=task, method=method, seed=0, workdir=str(tmp / name), data_dir=str(tmp / "d"), **kw)
    return execute(cfg, log=lambda s: None)


def test_plan_bytes_equal_layout_times_calls(tmp_path):
    f = run(tmp_path, PLAN_TASK, PLAN_METHOD)
    calls = f["metrics"]["calls_per_episode"] * 300
    assert calls == 300 and f["metrics"]["success"] == 1.0
    assert f["costs"]["bytes_up"] == calls * 1 and f["costs"]["bytes_down"] == calls * 1
    # No setup exchange: nothing billed for it; one message each way per call.
    assert all(f["costs"][k] == 0 for k in ("setup_bytes_up", "setup_bytes_down", "setup_edge_flops",
                                             "setup_cloud_flops"))
    assert f["costs"]["messages"] == 2 * calls


def test_plan_without_cloud_fails_more(tmp_path):
    f = run(tmp_path, PLAN_TASK, PLAN_METHOD, hparams={"ask": False})
    assert f["costs"]["bytes_up"] == 0 and f["metrics"]["success"] < 1.0


def test_plan_setup_is_metered_per_side(tmp_path):
    """edge_setup -> channel -> cloud_setup -> channel -> edge_install: bytes are the
    messages' raw sizes, FLOPs the matmuls each side's setup programs do."""
    f = run(tmp_path, PLAN_TASK, SETUP_METHOD)
    c = f["costs"]
    assert c["setup_bytes_up"] == 8 * 4 and c["setup_bytes_down"] == 16 * 4
    assert c["setup_cloud_flops"] == 2 * 8 * 16 and c["setup_edge_flops"] == 2 * 16 * 4
    assert c["setup_cloud_flops_all"] >= c["setup_cloud_flops"]
    assert c["messages"] == 2 * 300 + 2  # two setup messages
    assert c["bytes_up"] == 300 and f["metrics"]["success"] == 1.0  # per-step billing unchanged


def test_plan_resume_equals_uninterrupted(tmp_path):
    full = run(tmp_path, PLAN_TASK, SETUP_METHOD, name="full")
    part = run(tmp_path, PLAN_TASK, SETUP_METHOD, name="cut", max_units=1)
    assert part["stopped_early"] and part["units"] == 300
    resumed = run(tmp_path, PLAN_TASK, SETUP_METHOD, name="cut", resume=True)
    assert resumed["metrics"] == full["metrics"] and resumed["costs"] == full["costs"]


def test_cloud_sees_the_world_only_on_sent_steps(tmp_path, capfd):
    """cloud_reply runs on every step (vmapped), but where the edge did not send it gets
    zeros for the world, like the uplink: nothing about the world leaves the cloud for free."""
    task = os.path.join(PLUGINS, "tiny_plan.py") + ":TASK20"
    f = run(tmp_path, task, os.path.join(PLUGINS, "tiny_plan.py") + ":PrintWorld")
    out = capfd.readouterr().out
    goals = [int(v) for line in out.splitlines() if line.startswith("world-g")
             for v in line.split(None, 1)[1].strip("[]").split()]
    sent = round(f["metrics"]["calls_per_episode"] * 20)
    assert sent == 20 and len(goals) >= 20 * 2  # printed on every step, sent on the first only
    assert 0 < sum(g != 0 for g in goals) <= sent
