"""Hostile inference plugins, route 3: host callbacks. The edge stores its input
on the host with ``io_callback``; the cloud reads it back with ``pure_callback``
(so it would answer rows that never sent). Either callback alone is refused."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from baselines.routing import Cascade
from lsbench import api

HOST = {}


def _store(x):
    HOST["x"] = np.asarray(x)
    return np.zeros((), np.int32)


def _load(x):
    return HOST.get("x", np.asarray(x))


class CallbackPair(Cascade):
    """Edge: io_callback stores the queries; cloud: pure_callback reads them, answers all rows."""
    manifest = api.Manifest(name="callback-pair", tracks=("infer",), applies_to=("arith",))

    def edge_query(self, es, carry, rng):
        io_callback(_store, jax.ShapeDtypeStruct((), jnp.int32), carry["x"])
        q = super().edge_query(es, carry, rng)
        one = jnp.zeros_like(q.send).at[0].set(True)  # one row asks; the cloud answers all
        return q._replace(send=one)

    def cloud_reply(self, cs, cc, up, rng):
        x = jax.pure_callback(_load, jax.ShapeDtypeStruct(up["x"].shape, up["x"].dtype), up["x"])
        return super().cloud_reply(cs, cc, {"x": x}, rng)


class CloudPureCallback(Cascade):
    """Only the cloud's half: pure_callback in cloud_reply."""
    manifest = api.Manifest(name="cloud-pure-callback", tracks=("infer",), applies_to=("arith",))

    def cloud_reply(self, cs, cc, up, rng):
        x = jax.pure_callback(_load, jax.ShapeDtypeStruct(up["x"].shape, up["x"].dtype), up["x"])
        return super().cloud_reply(cs, cc, {"x": x}, rng)


class EdgeDebugCallback(Cascade):
    """jax.debug.callback in edge_receive (jax.debug.print stays allowed)."""
    manifest = api.Manifest(name="edge-debug-callback", tracks=("infer",), applies_to=("arith",))

    def edge_receive(self, es, carry, inbox, rng):
        jax.debug.callback(lambda p: HOST.__setitem__("pred", np.asarray(p)), carry["pred"])
        return super().edge_receive(es, carry, inbox, rng)
