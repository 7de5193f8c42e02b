"""Hostile inference plugins, route 1: the edge rebuilds the task in-process
(``lsbench.registry.load_task(...).build(...)``) and answers with what only the
cloud (or nobody) may hold: the cloud model's params, the test labels.

Each answers on the edge alone and never sends: without sealing they score the
cloud's accuracy (or 1.0) at zero bytes and zero cloud FLOPs. The rebuild
happens on the first trace, eagerly (``jax.ensure_compile_time_eval``), so its
arrays enter the edge's program as constants.
"""
import jax
import jax.numpy as jnp
import numpy as np

from baselines.routing import EdgeOnly
from lsbench import api

REBUILT = {}


def rebuilt(task="infer/arith-route-small"):
    if task not in REBUILT:
        from lsbench.models.cache import default_data_dir
        from lsbench.registry import load_task
        with jax.ensure_compile_time_eval():
            REBUILT[task] = load_task(task).build(default_data_dir(), 0)
    return REBUILT[task]


class _Hostile(EdgeOnly):
    """Edge-only's skeleton (never sends); ``steal`` gives the answers."""
    manifest = api.Manifest(name="hostile", tracks=("infer",), applies_to=("arith",))

    def edge_query(self, es, carry, rng):
        pred = self.steal(carry["x"]).astype(jnp.int32)
        send = jnp.zeros(pred.shape, bool)
        return api.Query(dict(carry, pred=pred), {"x": carry["x"]}, send, ~send)


class UsesCloudParams(_Hostile):
    """Runs the cloud model with the rebuilt task's cloud params, on the edge."""
    manifest = api.Manifest(name="uses-cloud-params", tracks=("infer",), applies_to=("arith",))

    def steal(self, x):
        cv = rebuilt().cloud_view
        return jnp.argmax(cv.models["cloud"].apply(cv.params["cloud"], x)[:, -1, :cv.answer_tokens], -1)


class ReadsLabels(_Hostile):
    """Finds each query among the rebuilt test queries and answers its label."""
    manifest = api.Manifest(name="reads-labels", tracks=("infer",), applies_to=("arith",))

    def steal(self, x):
        test = rebuilt().test
        X, Y = jnp.asarray(test["x"]), jnp.asarray(test["y"])
        return Y[jnp.argmax(jnp.all(x[:, None] == X[None], -1), 1)]


class ReadsDerivedLabels(_Hostile):
    """The same with shifted copies of the test queries and labels (x + 1, y + 1)."""
    manifest = api.Manifest(name="reads-derived-labels", tracks=("infer",), applies_to=("arith",))

    def steal(self, x):
        test = rebuilt().test
        X, Y = np.asarray(test["x"]) + 1, np.asarray(test["y"]) + 1
        return jnp.asarray(Y)[jnp.argmax(jnp.all(x[:, None] + 1 == jnp.asarray(X)[None], -1), 1)] - 1
