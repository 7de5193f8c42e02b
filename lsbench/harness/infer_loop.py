"""The inference-track loop: batches of examples, each run in metered turns.

``prepare`` runs once (its FLOPs are setup cost, billed to the cloud: it is
offline work). Then per batch: ``edge_start``/``cloud_start``, and turns of
``edge_turn`` -> channel (rows with the send mask) -> ``cloud_turn`` ->
channel (the same rows) until every row is done or ``max_turns``. The harness
logs per example and per turn: edge/cloud FLOPs, bytes up/down, sent, active;
FLOPs are the per-call count divided by the batch size, billed to the rows
that were active (edge) or sent (cloud). Padded rows are never billed.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lsbench import api
from lsbench.metering.channel import Channel
from lsbench.registry import PluginError
from lsbench.task import InferInstance

LOG_KEYS = ("edge_flops", "cloud_flops", "edge_flops_all", "cloud_flops_all", "bytes_up",
            "bytes_down", "messages")


def _rows(msg, send):
    if isinstance(msg, api.Rows):
        return api.Rows(msg.data, jnp.asarray(msg.mask, bool) & send)
    return api.Rows(msg, send)


def _transmit(channel, msg, send):
    """Bills and delivers an uplink/downlink: one ``Rows``, a plain pytree (all
    rows billed where sent), or a pytree whose leaves are ``Rows`` with their
    own masks (e.g. a prompt sent once plus drafts every turn). Returns the
    delivered message in the sender's form and int32[B] bytes per row."""
    leaves, tdef = jax.tree_util.tree_flatten(msg, is_leaf=lambda x: isinstance(x, api.Rows))
    if isinstance(msg, api.Rows) or not any(isinstance(l, api.Rows) for l in leaves):
        got, nbytes = channel.transmit_rows(_rows(msg, send))
        return (got if isinstance(msg, api.Rows) else got.data), nbytes
    out, total = [], 0
    for leaf in leaves:
        got, nbytes = channel.transmit_rows(_rows(leaf, send))
        out.append(got if isinstance(leaf, api.Rows) else got.data)
        total = total + nbytes
    return jax.tree_util.tree_unflatten(tdef, out), total


def _sds(tree):
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), tree)


class InferLoop:
    unit = "batch"

    def __init__(self, inst: InferInstance, method, seed: int, meter):
        self.inst, self.m, self.meter = inst, method, meter
        self.root = jax.random.PRNGKey(seed)
        test = inst.test
        self.N = len(next(iter(test.values())))
        self.B = min(inst.batch_size, self.N)
        self.T = inst.max_turns
        self.num_units = math.ceil(self.N / self.B)
        keys = inst.ctx.extras.get("input_keys", ("x",))
        if method.manifest.reference == "oracle":
            keys = tuple(test)
        self.keys = tuple(keys)
        hp = method.hp
        self.up = Channel(hp.get("codec_up", method.codec_up))
        self.down = Channel(hp.get("codec_down", method.codec_down))
        m = method
        self.j_start = jax.jit(m.edge_start)
        self.j_cstart = jax.jit(m.cloud_start, static_argnums=1)
        self.j_edge = jax.jit(self._edge_turn)
        self.j_cloud = jax.jit(self._cloud_turn)
        self.j_cloud0 = jax.jit(lambda *a: self._cloud_turn(*a, first=True))
        self.j_final = jax.jit(m.finalize)
        self._abs = None

    # ---- jitted turn halves (the channel runs inside them) -------------------
    def _edge_turn(self, es, carry, inbox, active, key):
        carry, up, send, done = self.m.edge_turn(es, carry, inbox, key)
        send = jnp.asarray(send, bool) & active
        delivered, ubytes = _transmit(self.up, up, send)  # the cloud gets what the edge sent
        return carry, delivered, send, jnp.asarray(done, bool), ubytes

    def _cloud_fn(self, first=False):
        return (self.m.cloud_first_turn if first and self.m.cloud_first_turn is not None
                else self.m.cloud_turn)

    def _cloud_turn(self, cs, ccarry, delivered, send, key, first=False):
        ccarry, down = self._cloud_fn(first)(cs, ccarry, delivered, key)
        got, dbytes = self.down.transmit_rows(_rows(down, send))
        return ccarry, api.Inbox(got.data, send), dbytes

    def _batch(self, u):
        lo, hi = u * self.B, min((u + 1) * self.B, self.N)
        pad = self.B - (hi - lo)
        batch = {}
        for k in self.keys:
            a = np.asarray(self.inst.test[k][lo:hi])
            batch[k] = np.concatenate([a, np.repeat(a[-1:], pad, 0)]) if pad else a
        return batch, lo, hi

    def _abstract(self, es, cs):
        """Abstract carry/uplink/downlink, FLOP counts per call, checked once."""
        if self._abs is not None:
            return self._abs
        m, name, B = self.m, self.m.manifest.name, self.B
        batch = _sds(self._batch(0)[0])
        k = _sds(self.root)
        carry = jax.eval_shape(m.edge_start, es, batch)
        ccarry = jax.eval_shape(lambda c: m.cloud_start(c, B), cs)
        # The downlink's shape needs the uplink's: trace edge -> cloud once, with
        # an inbox shaped by the method's downlink_like(B) (empty by default).
        like = m.downlink_like(B)
        empty = jax.tree_util.tree_map(lambda l: jnp.zeros(l.shape, l.dtype), like)

        def first(es, cs, carry, ccarry, key):
            c2, up, send, done = m.edge_turn(es, carry, api.Inbox(empty, jnp.zeros((B,), bool)), key)
            _, down = m.cloud_turn(cs, ccarry, up, key)
            return c2, up, send, done, down
        try:
            c2, up, send, done, down = jax.eval_shape(first, es, cs, carry, ccarry, k)
        except (KeyError, TypeError, AttributeError, IndexError) as e:
            raise PluginError(f"method {name}: edge_turn failed on the first turn's empty inbox "
                              f"({type(e).__name__}: {e}); define downlink_like(batch_size)") from None
        from lsbench.harness.preflight import same_structure
        same_structure(name, "edge_turn (carry)", c2, carry)
        for what, mask in (("send_mask", send), ("done_mask", done)):
            if mask.shape != (B,) or mask.dtype != jnp.bool_:
                raise PluginError(f"method {name}: edge_turn's {what} must be bool[{B}], "
                                  f"got {mask.dtype}{list(mask.shape)}")
        down_rows = down.data if isinstance(down, api.Rows) else down
        for leaf in jax.tree_util.tree_leaves((up.data if isinstance(up, api.Rows) else up, down_rows)):
            if leaf.shape[:1] != (B,):
                raise PluginError(f"method {name}: every uplink/downlink leaf must lead with the "
                                  f"batch ({B} rows), got shape {list(leaf.shape)}")
        inbox = api.Inbox(down_rows, jax.ShapeDtypeStruct((B,), jnp.bool_))
        meter = self.meter
        self._abs = {
            "carry": carry, "inbox": inbox,
            "start": meter.count("edge_start", m.edge_start, es, batch),
            "edge": meter.count("edge_turn", m.edge_turn, es, carry, inbox, k),
            "cloud": meter.count("cloud_turn", m.cloud_turn, cs, ccarry, up, k),
            "cloud0": meter.count("cloud_first_turn", self._cloud_fn(True), cs, ccarry, up, k),
            "cstart": meter.count("cloud_start", lambda c: m.cloud_start(c, B), cs),
            "final": meter.count("finalize", m.finalize, es, carry),
            "preds": jax.eval_shape(m.finalize, es, carry),
        }
        return self._abs

    # ---- the loop protocol ----------------------------------------------------
    def init_state(self):
        key = jax.random.fold_in(self.root, 0)
        calib = {k: jnp.asarray(v) for k, v in self.inst.calib.items()}
        es, cs = jax.jit(self.m.prepare)(calib, key)
        self.setup = self.meter.count("prepare", self.m.prepare, calib, key)
        a = self._abstract(es, cs)
        log = {k: np.zeros((self.T, self.N), np.int64) for k in LOG_KEYS}
        log["sent"] = np.zeros((self.T, self.N), bool)
        log["active"] = np.zeros((self.T, self.N), bool)
        preds = {k: np.zeros((self.N,) + v.shape[1:], v.dtype) for k, v in a["preds"].items()}
        costs = {k: np.zeros((), np.int64) for k in LOG_KEYS}
        return {"edge": es, "cloud": cs, "log": log, "preds": preds, "costs": costs}

    def preflight(self):
        jax.eval_shape(lambda: None)
        key = jax.random.fold_in(self.root, 0)
        calib = {k: _sds(v) for k, v in self.inst.calib.items()}
        es, cs = jax.eval_shape(self.m.prepare, calib, key)
        self._abstract(es, cs)

    def run_unit(self, state, u):
        a, B = self._abs, self.B
        es, cs = state["edge"], state["cloud"]
        batch, lo, hi = self._batch(u)
        n = hi - lo
        valid = np.arange(B) < n
        bkey = jax.random.fold_in(self.root, u + 1)
        carry = self.j_start(es, batch)
        ccarry = self.j_cstart(cs, B)
        inbox = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), a["inbox"])
        done = ~valid
        ever_sent = np.zeros(B, bool)
        log = {k: np.array(v) for k, v in state["log"].items()}
        ok = True
        for t in range(self.T):
            active = ~done
            if not active.any():
                break
            tkey = jax.random.fold_in(bkey, t)
            carry, delivered, send, d, ub = self.j_edge(es, carry, inbox, jnp.asarray(active), tkey)
            send_np = np.asarray(send)
            j_cloud = self.j_cloud0 if t == 0 else self.j_cloud
            ccarry, inbox, db = j_cloud(cs, ccarry, delivered, send, jax.random.fold_in(tkey, 1))
            ok = ok and bool(_finite(delivered)) and bool(_finite(inbox.msg))
            first = t == 0
            ef = a["edge"].matmul + (a["start"].matmul if first else 0)
            efa = a["edge"].total + (a["start"].total if first else 0)
            cfx = np.where(send_np & ~ever_sent, a["cstart"].matmul, 0)
            ca = a["cloud0"] if first else a["cloud"]
            row = {
                "edge_flops": np.where(active, ef, 0) // B,
                "edge_flops_all": np.where(active, efa, 0) // B,
                "cloud_flops": (np.where(send_np, ca.matmul, 0) + cfx) // B,
                "cloud_flops_all": (np.where(send_np, ca.total, 0) + cfx) // B,
                "bytes_up": np.asarray(ub, np.int64), "bytes_down": np.asarray(db, np.int64),
                "messages": send_np.astype(np.int64) * 2,
            }
            ever_sent |= send_np
            for k, v in row.items():
                log[k][t, lo:hi] = v[:n]
            log["sent"][t, lo:hi] = send_np[:n]
            log["active"][t, lo:hi] = active[:n]
            done = done | (np.asarray(d) & active)
        preds = self.j_final(es, carry)
        last = max(t, 0)
        log["edge_flops"][last, lo:hi] += a["final"].matmul // B
        log["edge_flops_all"][last, lo:hi] += a["final"].total // B
        new_preds = {k: np.array(v) for k, v in state["preds"].items()}
        for k, v in preds.items():
            new_preds[k][lo:hi] = np.asarray(v)[:n]
        costs = {k: np.int64(log[k].sum()) for k in LOG_KEYS}
        return {"edge": es, "cloud": cs, "log": log, "preds": new_preds, "costs": costs}, \
            {"examples_done": hi}, ok

    def is_eval_unit(self, u):
        return False

    def evaluate(self, state):
        return {}

    def finish(self, state, rows):
        from lsbench.metering import profiles
        log = state["log"]
        N = self.N
        metrics = dict(self.inst.metrics_fn(state["preds"], self.inst.test, log))
        per = {k: float(log[k].sum() / N) for k in LOG_KEYS}
        metrics.update({f"{k}_per_example": v for k, v in per.items()})
        metrics["offload_rate"] = float(log["sent"].any(0).mean())
        metrics["turns_mean"] = float(log["active"].sum(0).mean())
        derived = profiles.derived(log, latency_fn=self.inst.latency_fn)
        costs = {k: int(v) for k, v in state["costs"].items()}
        if not hasattr(self, "setup"):
            calib = {k: jnp.asarray(v) for k, v in self.inst.calib.items()}
            self.setup = self.meter.count("prepare", self.m.prepare, calib, jax.random.fold_in(self.root, 0))
        costs.update(setup_cloud_flops=int(self.setup.matmul), setup_bytes_up=0, setup_bytes_down=0)
        return {"metrics": metrics, "costs": costs, "derived": derived, "unit": "example", "units": N}


def _finite(tree):
    ok = jnp.array(True)
    for leaf in jax.tree_util.tree_leaves(tree):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            ok = ok & jnp.all(jnp.isfinite(leaf))
    return ok
