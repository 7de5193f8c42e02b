"""Route 4 (inference): work outside the meter. router-learned used to fit its
router in ``prepare`` with the cloud's calibration split and the edge model for
free; now a fit in a constructor is refused, and the fit in ``cloud_setup`` is
metered and billed: the edge's params go up, the router comes down, the fit is
cloud FLOPs; eager JAX work (``jax.ensure_compile_time_eval``) in a constructor or
inside a setup trace, which would run outside the meter, is refused."""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lsbench
from lsbench.metering.flops import count_jaxpr
from lsbench.registry import load_task

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins"))
from infer_util import TASK, data_dir, plugin, refused as _refused  # noqa: E402


@pytest.fixture(scope="module")
def inst():
    return load_task(TASK).build(data_dir(), 0)


def test_router_fit_in_the_constructor_is_refused():
    mod = plugin("infer_setup")
    assert "its constructor does JAX work" in _refused(mod.RouterFitInCtor)
    assert "its constructor stores an array in self.w" in _refused(mod.RouterNumpyCtor)


def _fit_lower_bound(inst):
    """The matmul FLOPs of running both models on the calibration split (part of any fit)."""
    x = jnp.asarray(inst.cloud_view.calib["x"])
    tot = 0
    for role, view in (("edge", inst.edge_view), ("cloud", inst.cloud_view)):
        m = view.models[role]
        tot += count_jaxpr(jax.make_jaxpr(m.apply)(view.params[role], x)).matmul
    return tot


def test_router_fit_in_cloud_setup_is_metered_and_billed(inst):
    from baselines.routing import RouterLearned
    f = lsbench.run(task=TASK, method=RouterLearned, data_dir=data_dir())
    c, v = f["costs"], inst.edge_view
    assert c["setup_bytes_up"] == sum(np.asarray(a).nbytes for a in jax.tree_util.tree_leaves(v.params["edge"]))
    assert c["setup_bytes_down"] == 4 * (v.vocab + 1)  # the package: one fp32 weight per token, a bias
    assert c["setup_cloud_flops"] >= _fit_lower_bound(inst) and c["setup_edge_flops"] == 0


def test_router_fit_eagerly_in_the_constructor_is_refused():
    """Eager JAX work (jax.ensure_compile_time_eval) in the cloud's constructor, the router
    left on the class (not on self): the eager work itself is refused."""
    msg = _refused(plugin("infer_setup").RouterEagerCtorOnClass)
    assert msg.startswith("method router-eager-ctor-on-class: its constructor does eager JAX work")


def test_router_fit_at_trace_time_is_refused():
    """The same fit, eagerly inside cloud_setup's trace (its FLOPs would not be in the program)."""
    msg = _refused(plugin("infer_setup").RouterFitAtTraceTime)
    assert msg.startswith("cloud function cloud_setup does eager JAX work")
