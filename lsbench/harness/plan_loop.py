"""The planning-track loop: episodes vmapped, steps scanned, all in one jit.

Per step: ``edge_query`` -> channel up (if ``send``) -> ``cloud_plan`` (sees
the world) -> channel down -> ``edge_act`` -> ``env.step``. Steps after an
episode ends are masked: not billed and state frozen. FLOPs: per active step
``edge_query + edge_act`` (edge) and per sent step ``cloud_plan`` (cloud), from
the jaxpr of one episode's call; an exact-solver cloud is billed in expanded
nodes by the task's ``cloud_cost``. Episodes run in chunks (the checkpoint unit).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lsbench import api
from lsbench.metering.channel import Channel
from lsbench.task import PlanInstance

CHUNK = 256
STEP_KEYS = ("bytes_up", "bytes_down", "peer_bytes", "nodes", "sent", "active")


def _sds(tree):
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), tree)


def _where(c, a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.where(c, x, y), a, b)


class PlanLoop:
    unit = "chunk"

    def __init__(self, inst: PlanInstance, method, seed: int, meter):
        self.inst, self.m, self.meter = inst, method, meter
        self.root = jax.random.PRNGKey(seed)
        self.E = inst.num_episodes
        self.chunk = min(CHUNK, self.E)
        self.num_units = math.ceil(self.E / self.chunk)
        self.checkpoint_every = 1
        hp = method.hp
        self.up = Channel(hp.get("codec_up", method.codec_up))
        self.down = Channel(hp.get("codec_down", method.codec_down))
        self.peer = Channel("raw")
        self._rollout = jax.jit(jax.vmap(self._episode, in_axes=(None, None, 0, 0)))
        self._flops = None

    def _episode(self, es, cs, instance, key):
        m, inst = self.m, self.inst
        env, obs, world = inst.reset(instance)
        mem = m.edge_start(es, obs)

        def body(c, t):
            env, obs, mem, done = c
            k = jax.random.fold_in(key, t)
            active = ~done
            q = m.edge_query(es, mem, obs, jax.random.fold_in(k, 0))
            send = jnp.asarray(q.send, bool) & active
            up, ub = self.up.transmit(q.uplink, send)
            plan = m.cloud_plan(cs, world, up, jax.random.fold_in(k, 1))
            down, db = self.down.transmit(plan, send)
            pb = self.peer.transmit(q.peer, active)[1] if q.peer is not None else jnp.int32(0)
            nodes = inst.cloud_cost(world, up) if inst.cloud_cost is not None else jnp.int32(0)
            mem2, action = m.edge_act(es, q.mem, obs, api.Inbox(down, send), jax.random.fold_in(k, 2))
            env2, obs2, d2, info = inst.step(env, action)
            c2 = (_where(active, env2, env), _where(active, obs2, obs), _where(active, mem2, mem),
                  done | (d2 & active))
            rec = {"bytes_up": ub, "bytes_down": db, "peer_bytes": pb,
                   "nodes": jnp.where(send, jnp.asarray(nodes, jnp.int32), 0), "sent": send,
                   "active": active, "info": info}
            return c2, rec

        _, rec = jax.lax.scan(body, (env, obs, mem, jnp.array(False)), jnp.arange(inst.max_steps))
        return rec

    def _chunk_instances(self, u):
        lo, hi = u * self.chunk, min((u + 1) * self.chunk, self.E)
        idx = np.minimum(np.arange(lo, lo + self.chunk), self.E - 1)
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[idx], self.inst.instances), lo, hi

    def _count_flops(self, es, cs):
        if self._flops is not None:
            return self._flops
        m, inst = self.m, self.inst
        one = jax.tree_util.tree_map(lambda a: np.asarray(a)[0], inst.instances)
        env, obs, world = jax.eval_shape(inst.reset, one)
        k = _sds(self.root)
        mem = jax.eval_shape(m.edge_start, es, obs)
        q = jax.eval_shape(m.edge_query, es, mem, obs, k)
        down = jax.eval_shape(m.cloud_plan, cs, world, q.uplink, k)
        inbox = api.Inbox(down, jax.ShapeDtypeStruct((), jnp.bool_))
        self._flops = {
            "start": self.meter.count("edge_start", m.edge_start, es, obs),
            "query": self.meter.count("edge_query", m.edge_query, es, mem, obs, k),
            "act": self.meter.count("edge_act", m.edge_act, es, q.mem, obs, inbox, k),
            "plan": self.meter.count("cloud_plan", m.cloud_plan, cs, world, q.uplink, k),
        }
        from lsbench.harness.preflight import same_structure
        mem2, action = jax.eval_shape(m.edge_act, es, q.mem, obs, inbox, k)
        same_structure(m.manifest.name, "edge_act (memory)", mem2, mem)
        same_structure(m.manifest.name, "edge_query (memory)", q.mem, mem)
        if q.send.shape != ():
            from lsbench.registry import PluginError
            raise PluginError(f"method {m.manifest.name}: edge_query's send must be a bool scalar "
                              f"per episode, got {q.send.dtype}{list(q.send.shape)}")
        return self._flops

    # ---- the loop protocol ----------------------------------------------------
    def init_state(self):
        es, cs = jax.jit(self.m.init)(jax.random.fold_in(self.root, 0))
        self._count_flops(es, cs)
        chunk, _, _ = self._chunk_instances(0)
        rec = jax.eval_shape(self._rollout, es, cs, chunk,
                             jax.random.split(self.root, self.chunk))
        T = self.inst.max_steps
        steps = {k: np.zeros((self.E, T), np.dtype(rec[k].dtype)) for k in STEP_KEYS}
        info = {k: np.zeros((self.E, T), np.dtype(v.dtype)) for k, v in rec["info"].items()}
        costs = {k: np.zeros((), np.int64) for k in
                 ("bytes_up", "bytes_down", "messages", "edge_flops", "cloud_flops", "edge_flops_all",
                  "cloud_flops_all", "peer_bytes", "cloud_nodes")}
        return {"edge": es, "cloud": cs, "steps": steps, "info": info, "costs": costs}

    def preflight(self):
        es, cs = jax.eval_shape(self.m.init, _sds(self.root))
        self._count_flops(es, cs)

    def run_unit(self, state, u):
        es, cs = state["edge"], state["cloud"]
        chunk, lo, hi = self._chunk_instances(u)
        keys = jax.vmap(lambda i: jax.random.fold_in(self.root, i + 1))(jnp.arange(lo, lo + self.chunk))
        rec = jax.device_get(self._rollout(es, cs, chunk, keys))
        n = hi - lo
        steps = {k: np.array(v) for k, v in state["steps"].items()}
        info = {k: np.array(v) for k, v in state["info"].items()}
        for k in STEP_KEYS:
            steps[k][lo:hi] = rec[k][:n]
        for k, v in rec["info"].items():
            info[k][lo:hi] = v[:n]
        f = self._flops
        act, sent = steps["active"][:hi], steps["sent"][:hi]
        n_act, n_sent = int(act.sum()), int(sent.sum())
        costs = {
            "bytes_up": steps["bytes_up"][:hi].sum(), "bytes_down": steps["bytes_down"][:hi].sum(),
            "messages": 2 * n_sent, "peer_bytes": steps["peer_bytes"][:hi].sum(),
            "cloud_nodes": steps["nodes"][:hi].sum(),
            "edge_flops": hi * f["start"].matmul + n_act * (f["query"].matmul + f["act"].matmul),
            "edge_flops_all": hi * f["start"].total + n_act * (f["query"].total + f["act"].total),
            "cloud_flops": n_sent * f["plan"].matmul, "cloud_flops_all": n_sent * f["plan"].total,
        }
        costs = {k: np.int64(v) for k, v in costs.items()}
        ok = all(np.all(np.isfinite(v)) for v in info.values() if np.issubdtype(v.dtype, np.floating))
        return {"edge": es, "cloud": cs, "steps": steps, "info": info, "costs": costs}, \
            {"episodes_done": hi}, ok

    def is_eval_unit(self, u):
        return False

    def evaluate(self, state):
        return {}

    def trajectories(self, state) -> dict:
        """Per-episode sums (and the per-step info) for the task's metrics_fn."""
        s, f = state["steps"], self._flops
        act, sent = s["active"], s["sent"]
        traj = {"steps": act.sum(1), "calls": sent.sum(1),
                "bytes_up": s["bytes_up"].sum(1), "bytes_down": s["bytes_down"].sum(1),
                "peer_bytes": s["peer_bytes"].sum(1), "cloud_nodes": s["nodes"].sum(1),
                "edge_flops": f["start"].matmul + act.sum(1) * (f["query"].matmul + f["act"].matmul),
                "cloud_flops": sent.sum(1) * f["plan"].matmul, "info": state["info"],
                "active": act, "sent": sent}
        return traj

    def finish(self, state, rows):
        from lsbench.metering import profiles
        if self._flops is None:
            self._count_flops(state["edge"], state["cloud"])
        traj = self.trajectories(state)
        metrics = dict(self.inst.metrics_fn(traj, self.inst))
        s, f = state["steps"], self._flops
        log = {  # [steps, episodes], as the latency model expects turns x units
            "edge_flops": (s["active"] * (f["query"].matmul + f["act"].matmul)).T,
            "cloud_flops": (s["sent"] * f["plan"].matmul).T,
            "bytes_up": s["bytes_up"].T, "bytes_down": s["bytes_down"].T,
            "sent": s["sent"].T, "active": s["active"].T}
        derived = profiles.derived(log)
        costs = {k: int(v) for k, v in state["costs"].items()}
        return {"metrics": metrics, "costs": costs, "derived": derived, "unit": "episode",
                "units": self.E, "cloud_kind": self.inst.cloud_kind}
