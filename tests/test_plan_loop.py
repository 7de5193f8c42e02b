"""The planning loop on the tiny plugin: bytes equal the layout times the calls."""
import os

from lsbench.harness.runner import RunConfig, execute

from conftest import PLUGINS

PLAN_TASK = os.path.join(PLUGINS, "tiny_plan.py") + ":TASK"
PLAN_METHOD = os.path.join(PLUGINS, "tiny_plan.py") + ":AskOnce"


def run(tmp, task, method, name="r", **kw):
    cfg = RunConfig(task=task, method=method, seed=0, workdir=str(tmp / name), data_dir=str(tmp / "d"), **kw)
    return execute(cfg, log=lambda s: None)


def test_plan_bytes_equal_layout_times_calls(tmp_path):
    f = run(tmp_path, PLAN_TASK, PLAN_METHOD)
    calls = f["metrics"]["calls_per_episode"] * 300
    assert calls == 300 and f["metrics"]["success"] == 1.0
    assert f["costs"]["bytes_up"] == calls * 1 and f["costs"]["bytes_down"] == calls * 1


def test_plan_without_cloud_fails_more(tmp_path):
    f = run(tmp_path, PLAN_TASK, PLAN_METHOD, hparams={"ask": False})
    assert f["costs"]["bytes_up"] == 0 and f["metrics"]["success"] < 1.0
