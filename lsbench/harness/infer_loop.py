"""The inference-track loop: setup once, then batches of examples, each run in metered turns.

The method is built once per side (``lsbench.harness.sealed``); every call goes
through its :class:`~lsbench.harness.sealed.Side`, so each function runs as
its own sealed program and the only values passing between the sides are what
the channels delivered.

Setup (once; metered): ``edge_setup`` -> channel up -> ``cloud_setup`` ->
channel down (the package) -> ``edge_install``. Setup messages go through raw
channels (their exact bytes: ``setup_bytes_up``/``setup_bytes_down``); setup
FLOPs are ``setup_edge_flops``/``setup_cloud_flops`` (matmul) and ``..._all``.

Per batch of B rows (the last batch padded by repeating its last row):
``edge_start`` and ``cloud_start(batch_size=B)``; then turns of ``edge_query``
-> channel up (``Channel.transmit_rows_tree``: rows whose send is set) ->
``cloud_first_reply`` (turn 0, when defined) or ``cloud_reply`` -> channel
down (the reply's rows reach the rows that sent) -> ``edge_receive``, until
every row is done or ``max_turns``; then ``finalize``. A turn in which no
row sends skips the cloud (the edge receives an empty inbox). A row is done
once a query marks it done (it still receives that turn's reply); a query
without a done mask marks the rows it does not send.

Each function is sealed per input structure, so a carry (or uplink) whose
pytree structure changes after the first turn (e.g. a key ``edge_receive``
adds) gives the later turns their own programs, metered on their own: a router
can decide on the query alone in turn 0 and run the edge model in turn 1,
where only the rows it kept are active.

Billing, per example and turn (``log[key][turn, example]``), padded rows never
billed: a call's FLOPs divided by B go to every row active in it (edge:
``edge_query`` + ``edge_receive``; ``edge_start`` on the first turn, to every real row) or that sent (cloud: the reply
function, plus ``cloud_start`` on a row's first sent turn); bytes are the
channel's per row; ``messages`` 2 per sent row (up and down); ``sent`` and
``active`` flags. A row's prediction is ``finalize``'s output at the end of
the turn the row was done in (work after that cannot change it), and that
call's FLOPs are billed to it. Generation tasks (``finalize`` returns ``tokens`` int32[B, L])
also get ``tokens``: the output positions that first hold their final value in
that turn (the longest prefix equal to the final output, read after every turn;
positions not generated yet should hold -1). Latency and energy come from
``lsbench.metering.profiles.derived(log)`` only.

Validation: after the test batches, ``finish`` runs the installed method on the
task's validation split (``InferInstance.val``) the same way, with its own keys
and log, and returns the same metrics on it as ``validation`` (final.json);
the test run's metrics, predictions and costs do not change, and validation
work is not billed.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lsbench import api
from lsbench.errors import PluginError
from lsbench.harness.trees import finite as _finite, nbytes as _nbytes
from lsbench.metering.channel import Channel
from lsbench.task import InferInstance

LOG_KEYS = ("edge_flops", "cloud_flops", "edge_flops_all", "cloud_flops_all", "bytes_up",
            "bytes_down", "messages")
PER_BATCH = ("edge_start", "edge_query", "edge_receive", "finalize")
MIN_CONST = 16  # smaller constants (masks, index tables) are not counted as held parameters
VAL_STREAM = 0x7A11  # the validation pass's keys: fold_in(root, VAL_STREAM), then the batch
SETUP_KEYS = ("setup_edge_flops", "setup_cloud_flops", "setup_edge_flops_all",
              "setup_cloud_flops_all", "setup_bytes_up", "setup_bytes_down")


def _sds(tree):
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), tree)


def _zeros(tree):
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), tree)






def _struct(tree):
    leaves, tdef = jax.tree_util.tree_flatten(tree)
    return tdef, tuple((tuple(np.shape(x)), str(jnp.result_type(x))) for x in leaves)


def _rows_leaves(msg):
    """The leaves of a message that must lead with the batch (Rows data and masks, plain leaves)."""
    out = []
    for leaf in jax.tree_util.tree_leaves(msg, is_leaf=lambda x: isinstance(x, api.Rows)):
        if isinstance(leaf, api.Rows):
            out += jax.tree_util.tree_leaves(leaf.data) + [leaf.mask]
        else:
            out.append(leaf)
    return out


def _prefix_len(snap, final):
    """Per row, the longest prefix of ``snap`` [B, L] equal to ``final`` [B, L]."""
    eq = np.asarray(snap) == np.asarray(final)
    return np.cumprod(eq, axis=1).sum(1)


class InferLoop:
    unit = "batch"

    def __init__(self, inst: InferInstance, sides, seed: int, scramble: bool = False):
        self.inst, self.sides = inst, sides
        self.edge, self.cloud = sides.edge_of(), sides.cloud
        self.name = self.edge.manifest.name
        self.root = jax.random.PRNGKey(seed)
        test = inst.test
        self.N = len(next(iter(test.values())))
        self.B = min(inst.batch_size, self.N)
        self.T = inst.max_turns
        self.num_units = math.ceil(self.N / self.B)
        keys = tuple(inst.edge_view.input_keys)
        if self.edge.manifest.reference == "oracle":  # a reference, never ranked
            keys += tuple(k for k in inst.oracle_keys if k not in keys)
        self.keys = keys
        hp = self.edge.hp
        self.up = Channel(hp.get("codec_up", self.edge.codec_up), scramble=scramble)
        self.down = Channel(hp.get("codec_down", self.cloud.codec_down), scramble=scramble)
        self.setup_up = Channel("raw", scramble=scramble)
        self.setup_down = Channel("raw", scramble=scramble)
        self.j_start = jax.jit(lambda es, batch: self.edge("edge_start", es, batch))
        self.j_cstart = jax.jit(lambda cs: self.cloud("cloud_start", cs, batch_size=self.B))
        self.j_query = jax.jit(self._query)
        self.j_reply = jax.jit(self._reply, static_argnames="first")
        self.j_receive = jax.jit(lambda es, carry, inbox, key: self.edge("edge_receive", es, carry,
                                                                         inbox, key))
        self.j_final = jax.jit(lambda es, carry: self.edge("finalize", es, carry))
        self._turn_cost = {}
        self._static = None
        self._setup = None

    # ---- the sides' halves of a turn (each side's program is sealed; the channel runs here)
    def _cloud_fn(self, first):
        return "cloud_first_reply" if first and self.cloud.has("cloud_first_reply") else "cloud_reply"

    def _query(self, es, carry, active, key):
        q = self.edge("edge_query", es, carry, key)
        if not isinstance(q, api.Query):
            raise PluginError(f"method {self.name}: edge_query must return an api.Query, "
                              f"not {type(q).__name__}")
        send = jnp.asarray(q.send, bool) & active
        done = ~send if q.done is None else jnp.asarray(q.done, bool)
        delivered, ubytes = self.up.transmit_rows_tree(q.uplink, send)
        return q.carry, delivered, send, done, ubytes, _finite(delivered)

    def _reply(self, cs, ccarry, delivered, send, key, first=False):
        ccarry, reply = self.cloud(self._cloud_fn(first), cs, ccarry, delivered, key)
        got, dbytes = self.down.transmit_rows_tree(reply, send)
        return ccarry, api.Inbox(got, send), dbytes, _finite(got)

    # ---- setup -----------------------------------------------------------------
    def _run_setup(self, abstract=False):
        """Runs (or, abstract, traces) setup; returns (edge state, cloud state, costs)."""
        ke, kc, ki = jax.random.split(jax.random.fold_in(self.root, 0), 3)

        def chain(ke, kc, ki):
            es0, up = self.edge("edge_setup", ke)
            up_d, ub = self.setup_up.transmit(up, True)
            cs, pkg = self.cloud("cloud_setup", up_d, kc)
            pkg_d, db = self.setup_down.transmit(pkg, True)
            es = self.edge("edge_install", es0, pkg_d, ki)
            return es, cs, (es0, up_d, pkg_d), ub, db

        if abstract:
            es, cs, mid, ub, db = jax.eval_shape(chain, ke, kc, ki)
        else:  # eagerly: setup runs once, and its constants (a calibration split) stay out of XLA
            es, cs, mid, ub, db = chain(ke, kc, ki)
        es0, up_d, pkg_d = mid
        fe = self.edge.flops("edge_setup", ke) + self.edge.flops("edge_install", es0, pkg_d, ki)
        fc = self.cloud.flops("cloud_setup", up_d, kc)
        costs = None if abstract else {
            "setup_edge_flops": int(fe.matmul), "setup_cloud_flops": int(fc.matmul),
            "setup_edge_flops_all": int(fe.total), "setup_cloud_flops_all": int(fc.total),
            "setup_bytes_up": int(ub), "setup_bytes_down": int(db)}
        return es, cs, costs

    # ---- shapes, checks and per-call FLOPs ---------------------------------------
    def _batch(self, u, data=None):
        data = self.inst.test if data is None else data
        N = len(next(iter(data.values())))
        lo, hi = u * self.B, min((u + 1) * self.B, N)
        pad = self.B - (hi - lo)
        batch = {}
        for k in self.keys:
            if k not in data:
                raise PluginError(f"task {self.inst.edge_view.task} has no test key '{k}' "
                                  "(input_keys / oracle_keys)")
            a = np.asarray(data[k][lo:hi])
            batch[k] = np.concatenate([a, np.repeat(a[-1:], pad, 0)]) if pad else a
        return batch, lo, hi

    def _check_lead(self, what, tree):
        for leaf in _rows_leaves(tree):
            if np.shape(leaf)[:1] != (self.B,):
                raise PluginError(f"method {self.name}: every {what} leaf must lead with the batch "
                                  f"({self.B} rows), got shape {list(np.shape(leaf))}")

    def _static_costs(self, es, cs):
        """FLOPs of edge_start and cloud_start; the abstract predictions (traced
        through the turns until the carries' structure settles)."""
        if self._static is None:
            batch = _sds(self._batch(0)[0])
            carry = self.edge.shape("edge_start", es, batch)
            ccarry = self.cloud.shape("cloud_start", cs, batch_size=self.B)
            seen = set()
            for t in range(self.T):
                key = (_struct(carry), _struct(ccarry), t == 0)
                if key in seen:
                    break
                seen.add(key)
                carry, ccarry = self._costs(es, cs, carry, ccarry, t == 0)["next"]
            preds = self.edge.shape("finalize", es, carry)
            if not isinstance(preds, dict):
                raise PluginError(f"method {self.name}: finalize must return a dict of arrays, "
                                  f"e.g. {{'pred': int32[B]}}")
            self._check_lead("finalize output", preds)
            self._static = {
                "start": self.edge.flops("edge_start", es, batch),
                "cstart": self.cloud.flops("cloud_start", cs, batch_size=self.B),
                "preds": preds,
            }
        return self._static

    def _costs(self, es, cs, carry, ccarry, first):
        """Per-call FLOPs of one turn for this carry structure (sealed and checked once)."""
        key = (_struct(carry), _struct(ccarry), first)
        if key in self._turn_cost:
            return self._turn_cost[key]
        B, k = self.B, _sds(self.root)
        active = jax.ShapeDtypeStruct((B,), jnp.bool_)
        q = self.edge.shape("edge_query", es, carry, k)
        if not isinstance(q, api.Query):
            raise PluginError(f"method {self.name}: edge_query must return an api.Query "
                              f"(carry, uplink, send, done), not {type(q).__name__}")
        for what, mask in (("send", q.send), ("done", q.done)):
            if mask is not None and (mask.shape != (B,) or mask.dtype != jnp.bool_):
                raise PluginError(f"method {self.name}: edge_query's {what} must be bool[{B}], "
                                  f"got {mask.dtype}{list(mask.shape)}")
        if q.peer is not None and jax.tree_util.tree_leaves(q.peer):
            raise PluginError(f"method {self.name}: inference has no edge-to-edge channel; "
                              "return Query(..., peer=None)")
        self._check_lead("uplink", q.uplink)
        qc, delivered, send = jax.eval_shape(self._query, es, carry, active, k)[:3]
        fname = self._cloud_fn(first)
        cc2, inbox = jax.eval_shape(lambda *a: self._reply(*a, first=first), cs, ccarry, delivered,
                                    send, k)[:2]
        self._check_lead("reply", inbox.msg)
        c2 = self.edge.shape("edge_receive", es, qc, inbox, k)
        cost = {
            "query": self.edge.flops("edge_query", es, carry, k),
            "receive": self.edge.flops("edge_receive", es, qc, inbox, k),
            "reply": self.cloud.flops(fname, cs, ccarry, delivered, k),
            "inbox": inbox, "next": (c2, cc2),
        }
        self._turn_cost[key] = cost
        return cost

    def preflight(self):
        es, cs, _ = self._run_setup(abstract=True)
        return self._static_costs(es, cs)

    # ---- the loop protocol -------------------------------------------------------
    def init_state(self):
        es, cs, costs = self._run_setup()
        self._setup = costs
        st = self._static_costs(es, cs)
        if self.inst.edge_view.mode == "compress":  # the edge starts empty (compress/*): arrays
            costs["setup_bytes_down"] += self._edge_consts()  # its programs hold count as shipped
        log, preds = self._empty(st, self.N)
        state_costs = {k: np.zeros((), np.int64) for k in LOG_KEYS}
        state_costs.update({k: np.int64(v) for k, v in costs.items()})
        return {"edge": es, "cloud": cs, "log": log, "preds": preds, "costs": state_costs}

    def _empty(self, st, N):
        """A zero per-turn log and zero predictions for N examples."""
        log = {k: np.zeros((self.T, N), np.int64) for k in LOG_KEYS}
        log["sent"] = np.zeros((self.T, N), bool)
        log["active"] = np.zeros((self.T, N), bool)
        if self._generates(st["preds"]):
            log["tokens"] = np.zeros((self.T, N), np.int64)
        preds = {k: np.zeros((N,) + tuple(v.shape[1:]), v.dtype) for k, v in st["preds"].items()}
        return log, preds

    @staticmethod
    def _generates(preds) -> bool:
        tok = preds.get("tokens") if isinstance(preds, dict) else None
        return tok is not None and len(tok.shape) == 2 and jnp.issubdtype(tok.dtype, jnp.integer)

    def run_unit(self, state, u):
        es, cs = state["edge"], state["cloud"]
        log = {k: np.array(v) for k, v in state["log"].items()}
        new_preds = {k: np.array(v) for k, v in state["preds"].items()}
        ok, hi = self._run_batch(es, cs, self.inst.test, u, jax.random.fold_in(self.root, u + 1),
                                 log, new_preds)
        costs = {k: np.int64(log[k].sum()) for k in LOG_KEYS}
        costs.update({k: np.int64(v) for k, v in state["costs"].items() if k in SETUP_KEYS})
        return {"edge": es, "cloud": cs, "log": log, "preds": new_preds, "costs": costs}, \
            {"examples_done": hi}, ok

    def _run_batch(self, es, cs, data, u, bkey, log, preds):
        """Runs batch ``u`` of ``data`` (test or validation); writes its rows of
        ``log`` and ``preds`` in place; returns (all payloads finite, end row)."""
        B = self.B
        st = self._static_costs(es, cs)
        gen = self._generates(st["preds"])
        batch, lo, hi = self._batch(u, data)
        n = hi - lo
        valid = np.arange(B) < n
        carry = self.j_start(es, batch)
        ccarry = self.j_cstart(cs)
        snaps = []
        done = ~valid
        ever_sent = np.zeros(B, bool)
        out = {k: np.zeros((B,) + tuple(v.shape[1:]), v.dtype) for k, v in st["preds"].items()}
        taken = ~valid  # rows whose prediction is recorded
        ok = True
        for t in range(self.T + 1):
            last = t == self.T or done.all()
            if t > 0 and (gen or last or (done & ~taken).any()):
                # A row's prediction is finalize's output at the end of the turn it was done
                # in (or the last): work done after that cannot change it.
                final = self.j_final(es, carry)
                if gen:
                    snaps.append(np.asarray(final["tokens"]))
                take = ~taken & (done | last)
                fin = self.edge.flops("finalize", es, carry)
                for k, v in final.items():
                    out[k][take] = np.asarray(v)[take]
                log["edge_flops"][t - 1, lo:hi] += np.where(take, fin.matmul // B, 0)[:n]
                log["edge_flops_all"][t - 1, lo:hi] += np.where(take, fin.total // B, 0)[:n]
                taken |= take
            if last:
                break
            active = ~done
            first = t == 0
            cost = self._costs(es, cs, carry, ccarry, first)
            tkey = jax.random.fold_in(bkey, t)
            kq, kc, kr = (jax.random.fold_in(tkey, i) for i in range(3))
            qcarry, delivered, send, d, ub, fin_up = self.j_query(es, carry, jnp.asarray(active), kq)
            send_np = np.asarray(send)
            if send_np.any():
                ccarry, inbox, db, fin_down = self.j_reply(cs, ccarry, delivered, send, kc, first=first)
                ok = ok and bool(fin_down)
                db = np.asarray(db, np.int64)
            else:
                inbox = api.Inbox(_zeros(cost["inbox"].msg), jnp.zeros((B,), bool))
                db = np.zeros(B, np.int64)
            ok = ok and bool(fin_up)
            carry = self.j_receive(es, qcarry, inbox, kr)
            ef = cost["query"] + cost["receive"]
            if first:  # every real row is active on the first turn
                ef = ef + st["start"]
            cf = cost["reply"]
            fresh = send_np & ~ever_sent
            row = {
                "edge_flops": np.where(active, ef.matmul, 0) // B,
                "edge_flops_all": np.where(active, ef.total, 0) // B,
                "cloud_flops": (np.where(send_np, cf.matmul, 0) + np.where(fresh, st["cstart"].matmul, 0)) // B,
                "cloud_flops_all": (np.where(send_np, cf.total, 0) + np.where(fresh, st["cstart"].total, 0)) // B,
                "bytes_up": np.asarray(ub, np.int64), "bytes_down": db,
                "messages": send_np.astype(np.int64) * 2,
            }
            ever_sent |= send_np
            for k, v in row.items():
                log[k][t, lo:hi] = v[:n]
            log["sent"][t, lo:hi] = send_np[:n]
            log["active"][t, lo:hi] = active[:n]
            done = done | (np.asarray(d) & active)
        if gen:
            final = out["tokens"]
            pre = np.maximum.accumulate(np.stack([np.zeros(B, np.int64)]
                                                 + [_prefix_len(s, final) for s in snaps]), axis=0)
            delivered = np.diff(pre, axis=0)  # [turns run, B]
            log["tokens"][:len(delivered), lo:hi] = delivered[:, :n]
        for k, v in out.items():
            preds[k][lo:hi] = v[:n]
        return ok, hi

    def is_eval_unit(self, u):
        return False

    def evaluate(self, state):
        return {}

    def _edge_consts(self) -> int:
        """Bytes of the arrays the edge's per-batch programs hold as constants (a
        model kept as a constant is held just as one kept in the state)."""
        seen, total = set(), 0
        for prog in list(self.sides.sealer._progs.values()):
            if prog.side != "edge" or prog.name.split("[")[0] not in PER_BATCH:
                continue
            for c in prog.closed.consts:
                if id(c) in seen or not hasattr(c, "dtype") or np.size(c) < MIN_CONST:
                    continue
                seen.add(id(c))
                total += int(np.size(c)) * jnp.dtype(c.dtype).itemsize
        return total

    def edge_footprint(self, state) -> dict:
        """``param_bytes``: bytes the edge holds between batches: its installed
        state plus the arrays its per-batch programs hold as constants;
        ``flops_per_example``: the largest edge matmul FLOPs billed to one test
        example so far."""
        log = state["log"]
        seen = np.asarray(log["active"]).any(0)
        per = np.asarray(log["edge_flops"]).sum(0)
        return {"param_bytes": _nbytes(state["edge"]) + self._edge_consts(),
                "flops_per_example": int(per[seen].max()) if seen.any() else 0}

    def finish(self, state, rows):
        from lsbench.metering import profiles
        N = self.N
        if rows and len(rows) < self.num_units:  # a --max_units run: only the rows it evaluated
            N = int(min(N, rows[-1].get("examples_done", N)))
        log = {k: v[:, :N] for k, v in state["log"].items()}
        preds = {k: v[:N] for k, v in state["preds"].items()}
        test = {k: v[:N] for k, v in self.inst.test.items()}
        metrics = self._summarise(preds, test, log)
        derived = profiles.derived(log)
        costs = {k: int(v) for k, v in state["costs"].items()}
        out = {"metrics": metrics, "costs": costs, "derived": derived, "unit": "example", "units": N}
        if self.inst.val is not None and N == self.N:  # a partial run is never ranked: no validation
            out["validation"] = self.validate(state)
        return out

    def _summarise(self, preds, data, log) -> dict:
        """The task's metrics plus the harness's per-example costs of one split."""
        N = len(next(iter(data.values())))
        metrics = dict(self.inst.metrics_fn(preds, data, log))
        per = {k: float(log[k].sum() / N) for k in LOG_KEYS}
        metrics.update({f"{k}_per_example": v for k, v in per.items()})
        metrics["offload_rate"] = float(log["sent"].any(0).mean())
        metrics["turns_mean"] = float(log["active"].sum(0).mean())
        return metrics

    def validate(self, state) -> dict:
        """The same metrics on the task's validation split: the installed method
        (setup is not rerun) answers every validation example in batches of B,
        with its own keys and its own log. Nothing of the test run changes: its
        log, predictions and costs are the state's, and validation costs are
        not billed (they appear only as the validation metrics' per-example
        figures). The suite selects operating points on these metrics."""
        data = self.inst.val
        es, cs = state["edge"], state["cloud"]
        st = self._static_costs(es, cs)
        N = len(next(iter(data.values())))
        log, preds = self._empty(st, N)
        vroot = jax.random.fold_in(self.root, VAL_STREAM)
        for u in range(math.ceil(N / self.B)):
            self._run_batch(es, cs, data, u, jax.random.fold_in(vroot, u), log, preds)
        return self._summarise(preds, data, log)
