"""The run lifecycle: determinism, kill-and-resume, results, bad input."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import PLUGINS, ROOT, TINY_METHOD, TINY_TASK, cli
from lsbench.harness.runner import RunConfig, UsageError, execute
from lsbench.registry import PluginError
from lsbench.results.schema import load_final, load_metrics


def run(tmp, name="r", **kw):
    cfg = RunConfig(task=kw.pop("task", TINY_TASK), method=kw.pop("method", TINY_METHOD),
                    workdir=str(tmp / name), **kw)
    return execute(cfg, log=lambda s: None)


def test_same_seed_same_results_and_files(tmp_path):
    a, b = run(tmp_path, "a"), run(tmp_path, "b")
    assert a["status"] == "completed"
    assert a["metrics"] == b["metrics"] and a["costs"] == b["costs"]
    c = run(tmp_path, "c", seed=1)
    assert c["metrics"] != a["metrics"]
    man = json.load(open(tmp_path / "a" / "manifest.json"))
    for key in ("versions", "git_revision", "hashes", "hparams", "seed", "flags", "devices"):
        assert key in man
    assert {"task_spec", "data"} <= set(man["hashes"])
    load_final(str(tmp_path / "a" / "final.json"))  # validates against the schema


def test_fedavg_bytes_equal_model_size(tmp_path):
    f = run(tmp_path)
    d, k, clients, rounds = 5, 3, 4, 6
    model_bytes = 4 * (d * k + k)
    assert f["costs"]["bytes_down"] == rounds * clients * model_bytes
    # up: the model plus each client's report (float32 examples + int32 local steps)
    assert f["costs"]["bytes_up"] == rounds * clients * (model_bytes + 8)
    assert f["costs"]["messages"] == 2 * rounds * clients
    assert f["costs"]["edge_flops"] > 0 and f["costs"]["cloud_flops"] > 0


def test_loop_backend_equals_vmap(tmp_path):
    a, b = run(tmp_path, "v", backend="vmap"), run(tmp_path, "l", backend="loop")
    assert a["costs"] == b["costs"]
    for k, v in a["metrics"].items():
        assert abs(v - b["metrics"][k]) < 1e-5, k


def test_metrics_rows_one_per_round(tmp_path):
    run(tmp_path)
    rows = load_metrics(str(tmp_path / "r" / "metrics.jsonl"))
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert all(rows[i]["bytes_up"] < rows[i + 1]["bytes_up"] for i in range(5))  # cumulative


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    task = os.path.join(PLUGINS, "tiny_train.py") + ":LONG"
    ref = run(tmp_path, "ref", task=task)
    wd = str(tmp_path / "killed")
    args = [sys.executable, "-m", "lsbench.cli.main", "run", f"--task={task}", f"--method={TINY_METHOD}",
            f"--workdir={wd}", "--checkpoint_every=100"]
    p = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = os.path.join(wd, "metrics.jsonl")
    deadline = time.time() + 120
    while time.time() < deadline:
        if os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= 350:
            break
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not os.path.exists(os.path.join(wd, "final.json")), "run finished before the kill"
    r = cli("run", f"--task={task}", f"--method={TINY_METHOD}", f"--workdir={wd}", "--resume",
            "--checkpoint_every=100")
    assert r.returncode == 0, r.stderr
    got = load_final(os.path.join(wd, "final.json"))
    assert got["metrics"] == ref["metrics"] and got["costs"] == ref["costs"]
    steps = [row["step"] for row in load_metrics(metrics)]
    assert steps == list(range(1, 1501))  # no duplicate or missing rows


def test_existing_workdir_needs_resume_or_overwrite(tmp_path):
    run(tmp_path)
    before = open(tmp_path / "r" / "final.json").read()
    with pytest.raises(UsageError, match="--resume"):
        run(tmp_path)
    assert open(tmp_path / "r" / "final.json").read() == before
    assert run(tmp_path, resume=True)["status"] == "completed"  # completed: nothing to redo


def test_overwrite_keeps_old_result_if_new_run_is_bad(tmp_path):
    run(tmp_path)
    before = open(tmp_path / "r" / "final.json").read()
    with pytest.raises(UsageError):
        run(tmp_path, overwrite=True, hparams={"nope": 1})
    assert open(tmp_path / "r" / "final.json").read() == before


BAD_PLUGINS = {
    "missing": ("", "does not implement"),
    "shape": ("""
    def client_step(self, params, batch, rng):
        return {"w": params["w"][:2], "b": params["b"]}, jnp.float32(0)
    """, "changed the state's structure|leaf"),
    "jit": ("""
    def client_step(self, params, batch, rng):
        if batch["x"].sum() > 0:
            return params, jnp.float32(0)
        return params, jnp.float32(1)
    """, "not jittable"),
    "loss": ("""
    def client_step(self, params, batch, rng):
        return params, jnp.zeros((3,))
    """, "float scalar loss"),
}


def _bad_plugin(tmp_path, kind):
    body, _ = BAD_PLUGINS[kind]
    src = open(TINY_METHOD).read()
    if kind == "missing":
        src = src.replace("    def client_step(", "    def _unused_step(")
    else:
        src = src.replace("class TinyFedAvg(api.TrainMethod):", "class Base(api.TrainMethod):")
        src = src.replace('    manifest = api.Manifest(name="tiny-fedavg"', '    manifest = api.Manifest(name="base"')
        src += "\n\nclass Bad(Base):\n    manifest = api.Manifest(name='bad', tracks=('train',))\n" \
            + textwrap.indent(textwrap.dedent(body), "    ")
    p = tmp_path / f"bad_{kind}.py"
    p.write_text(src)
    return str(p) + ("" if kind == "missing" else ":Bad")


@pytest.mark.parametrize("kind", sorted(BAD_PLUGINS))
def test_bad_plugins_one_line_exit_2_no_final(tmp_path, kind):
    method = _bad_plugin(tmp_path, kind)
    wd = tmp_path / "w"
    r = cli("run", f"--task={TINY_TASK}", f"--method={method}", f"--workdir={wd}")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lsbench: error:"), r.stderr
    import re
    assert re.search(BAD_PLUGINS[kind][1], lines[0]), lines[0]
    assert not (wd / "final.json").exists()


@pytest.mark.parametrize("args,pattern", [
    (["--task=train/nope"], "unknown task"),
    (["--method=nope"], "unknown method"),
    (["--hparams={lr: 1"], "not valid JSON"),
    (["--hparams=[1]"], "JSON object"),
    (["--hparams={\"lrr\": 1}"], "unknown hyper-parameter 'lrr'"),
    (["--method=/no/such/file.py"], "does not exist"),
])
def test_bad_cli_input(tmp_path, args, pattern):
    base = {"--task": TINY_TASK, "--method": TINY_METHOD, "--workdir": str(tmp_path / "w")}
    for a in args:
        base[a.split("=")[0]] = a.split("=", 1)[1]
    r = cli("run", *[f"{k}={v}" for k, v in base.items()])
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and pattern in r.stderr, r.stderr
    assert not (tmp_path / "w" / "final.json").exists()


def test_nan_is_recorded_as_diverged(tmp_path):
    f = run(tmp_path, hparams={"lr": 1e39})  # inf in float32: NaN parameters after the first step
    assert f["status"] == "diverged"
    assert f["costs"]["bytes_up"] > 0  # what was spent before diverging is kept


def test_fedavg_one_client_one_step_is_sgd(tmp_path):
    """The harness's round with one client and one full batch is one SGD step."""
    import dataclasses

    import jax
    import jax.numpy as jnp
    import numpy as np

    from lsbench.harness import sealed
    from lsbench.harness.train_loop import TrainLoop
    from lsbench.metering.flops import count_jaxpr
    from lsbench.registry import load_method, load_task
    spec = load_task(TINY_TASK)
    spec = dataclasses.replace(spec, config=dict(spec.config, clients=1, clients_per_round=1, max_n=8,
                                                 batch_size=8, max_local_steps=1))
    inst = spec.build("", 0)
    inst.train_n[:] = 8
    cls = load_method(TINY_METHOD, spec)
    sides = sealed.build_sides(cls, "train", inst, {"lr": 0.3},
                               sealed.Sealer(sealed.guard_for("train", inst), meter=count_jaxpr))
    loop = TrainLoop(inst, sides, 0)
    s0 = loop.init_state()
    s1, _, ok = loop.run_unit(s0, 0)
    assert ok
    x, y = jnp.asarray(inst.train_x[0]), jnp.asarray(inst.train_y[0])
    step, _ = sides.edge_of("full")("client_step", s0["cloud"], {"x": x, "y": y, "mask": jnp.ones(8, bool)},
                                    jax.random.PRNGKey(0))
    for a, b in zip(jax.tree_util.tree_leaves(s1["cloud"]), jax.tree_util.tree_leaves(step)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_python_api_runs_a_class_defined_in_the_calling_script(tmp_path):
    """lsbench.run with a Method class defined right here returns the final dict."""
    import jax
    import jax.numpy as jnp

    import lsbench
    from lsbench import api

    class MyFedAvg(api.TrainMethod):
        manifest = api.Manifest(name="my-fedavg", tracks=("train",))
        default_hparams = {"lr": 0.5}

        def cloud_setup(self, rng):
            return self.view.models["edge"].init(rng)

        def edge_setup(self, rng):
            return self.view.models["edge"].init(rng)

        def cloud_downlink(self, cloud, tier, ids):
            return cloud

        def client_init(self, edge_state, down, rng):
            return down

        def client_step(self, p, batch, rng):
            def loss(q):
                lp = jax.nn.log_softmax(self.view.models["edge"].apply(q, batch["x"]))
                nll = -jnp.take_along_axis(lp, batch["y"][:, None], -1)[:, 0]
                return jnp.sum(nll * batch["mask"]) / jnp.maximum(batch["mask"].sum(), 1)
            value, g = jax.value_and_grad(loss)(p)
            return jax.tree_util.tree_map(lambda a, b: a - self.hp["lr"] * b, p, g), value

        def client_final(self, p, edge_state, rng):
            return p, p

        def cloud_update(self, cloud, rnd, rng):
            w = rnd.examples / rnd.examples.sum()
            return jax.tree_util.tree_map(lambda u: jnp.tensordot(w, u, 1), rnd.messages)

        def predict_edge(self, p, x):
            return self.view.models["edge"].apply(p, x)

    final = lsbench.run(task=TINY_TASK, method=MyFedAvg, seed=0, hparams={"lr": 0.3})
    assert final["status"] == "completed" and final["method"] == "my-fedavg"
    assert final["hparams"]["lr"] == 0.3 and final["units"] == 6
    assert 0.0 <= final["metrics"]["edge_accuracy"] <= 1.0
    d, k, clients, rounds = 5, 3, 4, 6
    assert final["costs"]["bytes_down"] == rounds * clients * 4 * (d * k + k)
    # the same class again (a second workdir, a fresh temporary one): the same result
    again = lsbench.run(task=TINY_TASK, method=MyFedAvg, seed=0, hparams={"lr": 0.3})
    assert again["metrics"] == final["metrics"] and again["costs"] == final["costs"]
