"""Methods for the leak test of ``lsbench check`` on tests/plugins/tiny_infer.py.

``Leaky`` rebuilds the task inside the edge and answers with a slightly
perturbed copy of the cloud's weights: a derived constant that the static
seal does not recognise, so only the dynamic (scrambled-channel) test catches it.
"""
import os

import jax.numpy as jnp
import numpy as np

from lsbench import api
from lsbench.registry import load_task

import importlib.util

_spec = importlib.util.spec_from_file_location("tiny_infer_for_leak", os.path.join(os.path.dirname(__file__),
                                                                                    "tiny_infer.py"))
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)
TASK = tiny.TASK


class EdgeOnly(tiny.Cascade):
    manifest = api.Manifest(name="tiny-edge-only", tracks=("infer",), reference="edge-only")
    default_hparams = {"tau": 0.0}


class Honest(tiny.Cascade):
    manifest = api.Manifest(name="tiny-honest", tracks=("infer",))
    default_hparams = {"tau": 0.9}


class Leaky(tiny.Cascade):
    manifest = api.Manifest(name="tiny-leaky", tracks=("infer",))
    default_hparams = {"tau": 0.9}

    def edge_query(self, es, carry, rng):
        inst = TASK.build("", 0)
        stolen = np.asarray(inst.cloud_view.params["cloud"], np.float64) * 1.0001  # derived copy
        q = super().edge_query(es, carry, rng)
        pred = jnp.argmax(carry["x"] @ jnp.asarray(stolen, jnp.float32), -1).astype(jnp.int32)
        return q._replace(carry=dict(q.carry, pred=pred), send=jnp.zeros_like(q.send))  # 0 bytes
