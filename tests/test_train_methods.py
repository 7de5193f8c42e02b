"""The large-small training methods (issue 5): runs, byte accounting, heterogeneity.

Default tests run on a tiny heterogeneous copy of tests/plugins/tiny_train.py
(two tiers whose edge MLPs differ in width) and finish in well under a minute.
"""
import dataclasses
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsbench import api
from lsbench.harness.runner import RunConfig, execute
from lsbench.task import TaskSpec

PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins")
sys.path.insert(0, PLUGINS)
import tiny_train  # noqa: E402

METHODS = ("heterofl", "fedmd", "feddf", "fedgkt", "dsfl", "bikd")
WIDTHS = {"small": 4, "full": 16}


def _mlp(d, k, h):
    def init(rng):
        k1, k2 = jax.random.split(rng)
        return {"l1": {"w": jax.random.normal(k1, (d, h)) / math.sqrt(d), "b": jnp.zeros((h,))},
                "l2": {"w": jax.random.normal(k2, (h, k)) / math.sqrt(h), "b": jnp.zeros((k,))}}

    def apply(p, x):
        return jax.nn.relu(x @ p["l1"]["w"] + p["l1"]["b"]) @ p["l2"]["w"] + p["l2"]["b"]
    return api.ModelDef(f"mlp{h}", init, apply, info={"hidden": h})


def build_het(spec, data_dir, seed):
    inst = tiny_train.build(spec, data_dir, seed)
    d, k = spec.config["dim"], spec.config["classes"]
    models = {"edge": _mlp(d, k, WIDTHS["full"]), "cloud": _mlp(d, k, 64)}
    models.update({f"edge/{t}": _mlp(d, k, h) for t, h in WIDTHS.items()})
    extras = {"tiers": tuple(WIDTHS), "tier_width": {t: h / WIDTHS["full"] for t, h in WIDTHS.items()}}
    inst.ctx = dataclasses.replace(inst.ctx, models=models, extras=extras)
    return inst


HET = TaskSpec(name="test/tiny-het", version="1", track="train", description="tiny task, two edge widths",
               primary_metric="edge_accuracy", target=0.5, tier="small",
               config=dict(tiny_train.TASK.config, tiers=tuple(WIDTHS), rounds=4), builder=build_het)
HET_REF = os.path.abspath(__file__) + ":HET"
SMALL_HP = {"heterofl": {}, "fedmd": {"n_pub": 20, "digest_steps": 2},
            "dsfl": {"n_pub": 20, "digest_steps": 2, "server_steps": 2},
            "feddf": {"distill_steps": 2}, "fedgkt": {"server_steps": 2},
            "bikd": {"n_pub": 20, "digest_steps": 2, "cloud_steps": 2}}


def run(tmp, method, task=HET_REF, name=None, **kw):
    hp = dict(SMALL_HP.get(method, {}), **kw.pop("hparams", {}))
    cfg = RunConfig(task=task, method=method, workdir=str(tmp / (name or method)), hparams=hp,
                    data_dir=str(tmp / "data"), **kw)
    return execute(cfg, log=lambda s: None)


@pytest.mark.parametrize("method", ["heterofl", "fedmd", "feddf", "dsfl", "bikd"])
def test_methods_complete_on_tiny(tmp_path, method):
    f = run(tmp_path, method)
    assert f["status"] == "completed"
    assert f["costs"]["bytes_up"] > 0 and f["costs"]["edge_flops"] > 0


def _loop(method, hp=None, spec=HET):
    from lsbench.harness.train_loop import TrainLoop
    from lsbench.metering.flops import FlopMeter
    from lsbench.registry import load_method
    inst = spec.build("", 0)
    cls = load_method(method, spec)
    m = cls(inst.ctx, dict(cls.default_hparams, **SMALL_HP.get(method, {}), **(hp or {})))
    return TrainLoop(inst, m, 0, FlopMeter()), inst


@pytest.mark.parametrize("method", ["heterofl", "fedmd"])
def test_edge_states_differ_in_shape_across_tiers(method):
    loop, inst = _loop(method)
    state = loop.init_state()
    state, _, ok = loop.run_unit(state, 0)
    assert ok
    small, full = (jax.tree_util.tree_leaves(state["edge"][t]) for t in range(2))
    # leading axis = that tier's clients; the per-client shapes differ between tiers
    assert [a.shape[1:] for a in small] != [a.shape[1:] for a in full]
    assert sum(a[0].size for a in small) < sum(a[0].size for a in full)
    assert small[0].shape[0] + full[0].shape[0] == len(inst.train_n)
