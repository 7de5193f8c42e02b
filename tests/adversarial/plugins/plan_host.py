"""Hostile planning plugins, route 3 (host callbacks) and route 4 (work outside
the meter), on the tiny corridor task (tests/plugins/tiny_plan.py): the edge
knows its position, only the cloud the goal; one answer is enough to succeed.
Each tries to get the goal to the edge, or do setup work, without the channel
or the meter.
"""
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from lsbench import api

HOST = {}


class _Corridor(api.PlanMethod):
    """Never asks; walks right unless it learned the direction some other way."""
    manifest = api.Manifest(name="corridor", tracks=("plan",))

    def edge_start(self, es, obs):
        return {"t": jnp.int32(0)}

    def edge_query(self, es, carry, obs, rng):
        return api.Query(carry, self.view.env.encode_up(obs), jnp.array(False))

    def cloud_reply(self, cs, world, uplink, rng):
        return {"dir": jnp.uint8(0)}

    def direction(self, es, obs):
        return jnp.int32(1)

    def edge_act(self, es, carry, obs, inbox, rng):
        return dict(carry, t=carry["t"] + 1), self.direction(es, obs)


class CallbackPair(_Corridor):
    """The cloud writes the goal to the host (io_callback); the edge reads it back
    (pure_callback)."""
    manifest = api.Manifest(name="callback-pair", tracks=("plan",))

    def cloud_reply(self, cs, world, uplink, rng):
        io_callback(lambda g: HOST.__setitem__("g", int(g)) or np.int32(0),
                    jax.ShapeDtypeStruct((), jnp.int32), world["g"], ordered=False)
        return super().cloud_reply(cs, world, uplink, rng)

    def direction(self, es, obs):
        g = jax.pure_callback(lambda: np.int32(HOST.get("g", 0)), jax.ShapeDtypeStruct((), jnp.int32))
        return (g > obs["p"]).astype(jnp.int32)


class EdgePureCallback(_Corridor):
    """The edge alone asks the host (pure_callback) for what a rebuilt task knows."""
    manifest = api.Manifest(name="edge-pure-callback", tracks=("plan",))

    def direction(self, es, obs):
        g = jax.pure_callback(lambda p: np.int32(HOST.get("g", 0)), jax.ShapeDtypeStruct((), jnp.int32),
                              obs["p"])
        return (g > obs["p"]).astype(jnp.int32)


class CloudDebugCallback(_Corridor):
    """jax.debug.callback in the cloud (any host callback but jax.debug.print is refused)."""
    manifest = api.Manifest(name="cloud-debug-callback", tracks=("plan",))

    def cloud_reply(self, cs, world, uplink, rng):
        jax.debug.callback(lambda g: HOST.__setitem__("g", int(g)), world["g"])
        return super().cloud_reply(cs, world, uplink, rng)


class ConstructorJaxWork(_Corridor):
    """Precomputes a table with JAX in the constructor (unmetered)."""
    manifest = api.Manifest(name="constructor-jax-work", tracks=("plan",))

    def __init__(self, view, hp):
        super().__init__(view, hp)
        self.table = jnp.cumsum(jnp.arange(64))


class ConstructorNumpyArray(_Corridor):
    """Precomputes a table with NumPy in the constructor and keeps it on self."""
    manifest = api.Manifest(name="constructor-numpy-array", tracks=("plan",))

    def __init__(self, view, hp):
        super().__init__(view, hp)
        self.table = np.cumsum(np.arange(64))

    def direction(self, es, obs):
        return (jnp.asarray(self.table)[obs["p"]] % 2).astype(jnp.int32)


class TraceTimeNumpy(_Corridor):
    """Does its array work in NumPy while being traced: a big constant the meter never saw."""
    manifest = api.Manifest(name="trace-time-numpy", tracks=("plan",))

    def direction(self, es, obs):
        table = np.cumsum(np.random.default_rng(0).integers(0, 2, 1 << 17)) % 2
        return jnp.asarray(table, jnp.int32)[obs["p"]]


class SucceedsAfterTheEnd(api.PlanMethod):
    """Route 5 (timing): asks the cloud for the goal once (1 B each way), then walks to
    one cell short of it and dawdles there until the episode's budget runs out; only
    its first step after the end enters the goal. The loop keeps stepping a finished
    episode's frozen state (vmapped), so if its info counted, this would score success
    on every episode whose parity allows it without ever succeeding in time."""
    manifest = api.Manifest(name="succeeds-after-the-end", tracks=("plan",))

    def edge_start(self, es, obs):
        return {"t": jnp.int32(0), "g": jnp.int32(-1), "start": obs["p"].astype(jnp.int32)}

    def edge_query(self, es, carry, obs, rng):
        return api.Query(carry, self.view.env.encode_up(obs), carry["g"] < 0)

    def cloud_reply(self, cs, world, uplink, rng):
        return {"g": world["g"].astype(jnp.uint8)}

    def edge_act(self, es, carry, obs, inbox, rng):
        g = jnp.where(inbox.got, inbox.msg["g"].astype(jnp.int32), carry["g"])
        p = obs["p"].astype(jnp.int32)
        budget = jnp.abs(g - carry["start"]) * 2 + 4  # the corridor's public budget rule
        toward = jnp.where(g > p, 1, 0)
        late = carry["t"] >= budget  # only true on the frozen steps after the end
        near = jnp.abs(g - p) <= 1
        a = jnp.where(late | ~near, toward, 1 - toward)  # short of the goal: step back
        return dict(carry, t=carry["t"] + 1, g=g), a.astype(jnp.int32)
