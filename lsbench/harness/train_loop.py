"""The training-track loop: rounds of metered cloud<->edge collaboration over
sealed sides (``lsbench.harness.sealed``).

Setup (metered): ``cloud_setup(rng)`` once on the cloud; ``edge_setup(rng)``
once per client, vmapped over each tier's clients on that tier's edge object.
Their FLOPs are billed as ``setup_cloud_flops`` / ``setup_edge_flops`` (matmul;
``*_all``: all ops), the edge's summed over every client. A method that sets
``edge_uses_public`` gets the public split on its edge views (the task puts it
on the cloud view only), billed as ``setup_bytes_down``: its bytes once per
client; so is a pretrained model (``TrainView.pretrained``).

A round is one traced program, composed only of the sides' sealed programs
(called through their ``Side`` handles) and the harness's own code:
- sampling, in JAX from the root key: per capacity tier (stratified: each tier
  gets ``round(clients_per_round * n_tier / C)`` clients, at least one, so
  shapes are fixed); stragglers draw their step count in [1, budget];
- per tier: the cloud's ``cloud_downlink`` -> channel -> vmap over the tier's
  clients of the edge's ``client_init``; ``client_step`` in a ``while_loop``
  while ``s < steps`` (so a round is padded only to its own longest client,
  not to the task's); ``client_final`` -> channel;
- each client's report: its example count (float32) and local step count
  (int32): 8 bytes more up per client, billed when ``cloud_update`` reads them
  (``Round.examples`` / ``Round.local_steps``; a cloud that never looks at
  them, e.g. the ``local`` reference, is sent none);
- ``cloud_update`` on one :class:`api.Round`: the delivered uplinks,
  concatenated over tiers when every tier's uplink has the same structure and
  per-client shapes (else a dict ``{tier: stacked}`` in tier order).
Rounds between two evaluations (or checkpoints) run as one ``while_loop`` over
rounds (``run_units``), with no Python per round; the loop returns each
round's per-client byte counts, real rows and losses, from which the host
bills the cost counters (int64) and writes one metrics row per round. Edge
state for every client lives here, on the device.

Local batches: each round a client draws one permutation of its examples;
position p of the round's stream is example ``perm[p mod n]``, so epochs beyond
the first repeat that round's order. Rows past ``ceil(local_epochs * n)`` are
masked. Client keys derive from (seed, round, tier, client id), so the
``loop`` (Python loops, one jitted call per step: debugging), ``vmap`` and
``shard`` (clients on a 1-D device mesh, padded to a multiple of the device
count with masked clients that are never billed) backends compute the same
thing; so does ``scan`` (the clients of a tier one after another inside the
compiled round, ``lax.map``: on CPU a vmapped convolution with per-client
weights becomes a slow grouped convolution). Edge FLOPs are billed per real example: ``client_step`` FLOPs x real
rows / batch size, plus ``client_init`` and ``client_final`` once per client.

Evaluation (``predict_edge`` on each tier's edge object, ``predict_global_edge``
and ``predict_cloud`` on the cloud's) goes through the sealed sides too, and
is not billed.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from lsbench import api
from lsbench.errors import PluginError
from lsbench.harness.trees import finite as _finite, nbytes as _nbytes
from lsbench.metering.channel import Channel
from lsbench.task import TrainInstance

COST_KEYS = ("bytes_up", "bytes_down", "messages", "edge_flops", "cloud_flops",
             "edge_flops_all", "cloud_flops_all")
SETUP_KEYS = ("setup_bytes_up", "setup_bytes_down", "setup_edge_flops", "setup_cloud_flops",
              "setup_edge_flops_all", "setup_cloud_flops_all")
# What each client reports with its uplink (billed: 4 + 4 bytes).
REPORT = {"examples": jnp.float32, "local_steps": jnp.int32}
SAMPLE_SALT = 7_007  # the sampler's key: fold_in(fold_in(root, round + 1), SAMPLE_SALT)


def _sds(x):
    return jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x))


def _row_abs(tree):
    """Abstract value of one row of a stacked pytree."""
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), tree)


def _stack_abs(tree, k):
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct((k,) + tuple(a.shape), a.dtype), tree)








def _client_sig(stacked):
    """Structure and per-client leaf shapes/dtypes of a stacked pytree."""
    leaves, tdef = jax.tree_util.tree_flatten(stacked)
    return tdef, tuple((tuple(a.shape[1:]), jnp.dtype(a.dtype)) for a in leaves)


def merge_tiers(uplinks: dict):
    """``Round.messages`` from ``{tier: stacked}`` (tier order): concatenated along
    the client axis when all tiers' uplinks share structure and per-client shapes,
    else the dict itself. Works on arrays and on abstract values."""
    vals = list(uplinks.values())
    if not vals:
        return {}
    if any(_client_sig(v) != _client_sig(vals[0]) for v in vals[1:]):
        return dict(uplinks)
    if len(vals) == 1:
        return vals[0]
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *vals)


# ----------------------------------------------------------------- instance views
def pooled_view(inst: TrainInstance) -> TrainInstance:
    """One client holding all training data (the centralized reference)."""
    def cat(x, n):
        return np.concatenate([x[c, : n[c]] for c in range(len(n))])[None]
    tx, ty = cat(inst.train_x, inst.train_n), cat(inst.train_y, inst.train_n)
    vx, vy = cat(inst.test_x, inst.test_n), cat(inst.test_y, inst.test_n)
    n = int(inst.train_n.sum())
    tier = inst.tiers[0]
    epochs = inst.local_epochs if inst.pooled_epochs is None else inst.pooled_epochs / inst.rounds
    steps = max(1, math.ceil(epochs * n / inst.batch_size))

    def view(v):
        return dataclasses.replace(v, tiers=(tier,), tier_width={tier: v.tier_width.get(tier, 1.0)},
                                   num_clients=1, clients_per_round=1, max_local_steps=steps,
                                   stragglers=0.0, max_client_n=n)
    val = {}
    if inst.val_x is not None:  # the clients' own validation rows, pooled like their test rows
        px = cat(inst.val_x, inst.val_n)
        val = dict(val_x=px, val_y=cat(inst.val_y, inst.val_n), val_n=np.array([px.shape[1]]))
    return dataclasses.replace(
        inst, edge_views={tier: view(inst.edge_views[tier])}, cloud_view=view(inst.cloud_view),
        train_x=tx, train_y=ty, train_n=np.array([n]), test_x=vx, test_y=vy,
        test_n=np.array([vx.shape[1]]), client_tier=np.zeros(1, np.int32), tiers=(tier,),
        clients_per_round=1, max_local_steps=steps, straggler_fraction=0.0, **val)


def edge_public_view(inst: TrainInstance) -> TrainInstance:
    """The edge views with the cloud's public split (``edge_uses_public``)."""
    pub = inst.cloud_view.public
    return dataclasses.replace(inst, edge_views={t: dataclasses.replace(v, public=pub)
                                                 for t, v in inst.edge_views.items()})


def _reseal(inst, sides):
    """The method rebuilt per side from changed views (pooled data, public on the
    edge), on the same sealer (nothing is sealed yet), guarded by the new views."""
    from lsbench.harness import sealed
    cls, hp = type(sides.cloud.obj), sides.cloud.hp
    sides.sealer.guard = sealed.guard_for("train", inst)
    return sealed.build_sides(cls, "train", inst, hp, sides.sealer)


# ----------------------------------------------------------------- the loop
class TrainLoop:
    unit = "round"
    max_chunk = 50  # rounds per compiled scan, at most
    # vmap backend: clients per bucket (sorted by step count; 0: one vmapped loop
    # per tier, run to the round's longest client). Results equal either way.
    bucket = 0

    def __init__(self, inst: TrainInstance, sides, seed: int, backend: str = "vmap",
                 scramble: bool = False, bucket: int | None = None):
        if bucket is not None:
            self.bucket = int(bucket)
        cloud = sides.cloud
        rebuilt = False
        if cloud.pooled:
            inst, rebuilt = pooled_view(inst), True
        self.public_bytes = 0
        if cloud.edge_uses_public and inst.cloud_view.public is not None:
            inst, rebuilt = edge_public_view(inst), True
            self.public_bytes = int(np.asarray(inst.cloud_view.public).nbytes)
        if rebuilt:
            sides = _reseal(inst, sides)
        self.inst, self.sides, self.seed, self.backend = inst, sides, seed, backend
        self.cloud = sides.cloud
        self.name = self.cloud.manifest.name
        self.root = jax.random.PRNGKey(seed)
        self.num_units = inst.rounds
        self.C = len(inst.train_n)
        self.B = inst.batch_size
        n = np.asarray(inst.train_n)
        self.steps = np.minimum(inst.max_local_steps,
                                np.ceil(inst.local_epochs * n / self.B)).astype(np.int32)
        self.steps = np.maximum(self.steps, 1)
        self.S = int(self.steps.max())
        self.rows = np.minimum(self.steps * self.B, np.ceil(inst.local_epochs * n)).astype(np.int32)
        self.members = [np.where(inst.client_tier == t)[0].astype(np.int32) for t in range(len(inst.tiers))]
        self.tiers = [t for t in range(len(inst.tiers)) if len(self.members[t])]
        cpr = min(inst.clients_per_round, self.C)
        self.k = {t: min(len(self.members[t]), max(1, round(cpr * len(self.members[t]) / self.C)))
                  for t in self.tiers}
        self.pos = np.zeros(self.C, np.int32)
        for t in self.tiers:
            self.pos[self.members[t]] = np.arange(len(self.members[t]))
        hp = cloud.hp
        self.up = Channel(hp.get("codec_up", cloud.codec_up), scramble=scramble)
        self.down = Channel(hp.get("codec_down", cloud.codec_down), scramble=scramble)
        self.report = Channel("raw", scramble=scramble)
        self.per_client = bool(cloud.per_client_downlink)
        # Client data and tables on the device (the compiled rounds index them).
        self.x = jnp.asarray(inst.train_x)
        self.y = jnp.asarray(inst.train_y)
        self.tables = {"x": self.x, "y": self.y, "n": jnp.asarray(n, jnp.int32),
                       "steps": jnp.asarray(self.steps), "rows": jnp.asarray(self.rows)}
        self._pos = jnp.asarray(self.pos)
        self._members = {t: jnp.asarray(self.members[t]) for t in self.tiers}
        # Rounds per compiled scan: up to the next evaluation (runs end chunks early
        # at evaluations, checkpoints and the last round; one program serves all).
        self.chunk = max(1, min(int(inst.eval_every), self.num_units, self.max_chunk))
        self.ndev = len(jax.devices()) if backend == "shard" else 1
        self._jit = {}

    def edge(self, t):
        """The sealed edge side of tier index ``t``."""
        return self.sides.edge_of(self.inst.tiers[t])

    def _key_abs(self):
        return _sds(self.root)

    # ---- state -------------------------------------------------------------
    def _edge_keys(self, t):
        key = jax.random.fold_in(jax.random.fold_in(self.root, 0), 1)
        return jax.vmap(lambda c: jax.random.fold_in(key, c))(jnp.asarray(self.members[t]))

    def init_state(self):
        ck = jax.random.fold_in(jax.random.fold_in(self.root, 0), 0)
        if "setup" not in self._jit:
            self._jit["setup"] = jax.jit(lambda k: self.cloud("cloud_setup", k))
        cloud = self._jit["setup"](ck)
        costs = {k: np.zeros((), np.int64) for k in COST_KEYS + SETUP_KEYS}
        fc = self.cloud.flops("cloud_setup", ck)
        costs["setup_cloud_flops"] += fc.matmul
        costs["setup_cloud_flops_all"] += fc.total
        edge = []
        for t in range(len(self.inst.tiers)):
            ids = self.members[t]
            if not len(ids):
                edge.append({})
                continue
            keys = self._edge_keys(t)
            side = self.edge(t)
            if ("edge_setup", t) not in self._jit:
                self._jit[("edge_setup", t)] = jax.jit(jax.vmap(lambda k: side("edge_setup", k)))
            edge.append(self._jit[("edge_setup", t)](keys))
            fe = side.flops("edge_setup", self._key_abs())
            costs["setup_edge_flops"] += fe.matmul * len(ids)
            costs["setup_edge_flops_all"] += fe.total * len(ids)
        costs["setup_bytes_down"] += self.public_bytes * self.C
        pre = self.inst.cloud_view.pretrained  # a pretrained model shipped to every client once
        if pre is not None:
            costs["setup_bytes_down"] += _nbytes(pre) * self.C
        return {"cloud": cloud, "edge": edge, "costs": costs}

    # ---- sampling (JAX, from the root key) --------------------------------------
    def _sample_jax(self, root, r, tab):
        """Round ``r``'s clients: ``{t: sorted int32[k_t] ids}`` and ``{t: int32[k_t]
        local steps}`` (stragglers: a random number of steps in [1, budget])."""
        skey = jax.random.fold_in(jax.random.fold_in(root, r + 1), SAMPLE_SALT)
        frac = float(self.inst.straggler_fraction)
        picks, steps = {}, {}
        for t in self.tiers:
            k_pick, k_strag, k_len = jax.random.split(jax.random.fold_in(skey, t), 3)
            ids = jnp.sort(jax.random.choice(k_pick, self._members[t], (self.k[t],), replace=False))
            st = tab["steps"][ids]
            if frac > 0:
                strag = jax.random.uniform(k_strag, (self.k[t],)) < frac
                st = jnp.where(strag, jax.random.randint(k_len, (self.k[t],), 1, st + 1), st)
            picks[t], steps[t] = ids.astype(jnp.int32), st.astype(jnp.int32)
        return picks, steps

    def sample(self, r):
        """Round ``r``'s clients per tier (numpy) and every client's local steps
        that round (the task's budget; stragglers' own counts where sampled)."""
        if "sample" not in self._jit:
            self._jit["sample"] = jax.jit(self._sample_jax)
        picks, st = jax.device_get(self._jit["sample"](self.root, r, self.tables))
        steps = self.steps.copy()
        for t in self.tiers:
            steps[picks[t]] = st[t]
        return {t: np.asarray(p) for t, p in picks.items()}, steps

    # ---- one client -----------------------------------------------------------
    def _client(self, side, edge_state, down, X, Y, c, n, steps, rows, key):
        """One client's round: ``client_init``; ``client_step`` while ``s < steps``
        (vmapped, a tier's clients run to that round's longest one); ``client_final``
        -> channel."""
        B = self.B
        k_init, k_perm, k_step, k_final = jax.random.split(key, 4)
        cs = side("client_init", edge_state, down, k_init)
        perm = _permutation(k_perm, n, X.shape[1])
        n_safe = jnp.maximum(n, 1)

        def body(carry):
            s, cs, lsum, fin = carry
            p = s * B + jnp.arange(B)
            idx = perm[p % n_safe]
            batch = {"x": X[c, idx], "y": Y[c, idx], "mask": p < rows}
            cs, loss = side("client_step", cs, batch, jax.random.fold_in(k_step, s))
            return s + 1, cs, lsum + loss.astype(jnp.float32), fin & jnp.all(jnp.isfinite(loss))

        init = (jnp.int32(0), cs, jnp.float32(0), jnp.array(True))
        _, cs, lsum, fin = jax.lax.while_loop(lambda cr: cr[0] < steps, body, init)
        edge_state, up = side("client_final", cs, edge_state, k_final)
        up, up_bytes = self.up.transmit(up, True)
        return edge_state, up, up_bytes, lsum / jnp.maximum(steps, 1), fin & _finite(up)

    def _report(self, n, steps):
        return {"examples": jnp.asarray(n, jnp.float32), "local_steps": jnp.asarray(steps, jnp.int32)}

    # ---- a round, traced --------------------------------------------------------
    def _tier(self, t, cloud, edge_tier, tab, ids, steps, rkey):
        """Tier ``t``'s part of a round: downlink -> channel -> clients -> channel."""
        side, name, k = self.edge(t), self.inst.tiers[t], self.k[t]
        pos, n = self._pos[ids], tab["n"][ids]
        rows = jnp.minimum(tab["rows"][ids], steps * self.B)
        tkey = jax.random.fold_in(rkey, t)
        keys = jax.vmap(lambda c: jax.random.fold_in(tkey, c))(ids)
        down = self.cloud("cloud_downlink", cloud, name, ids)
        if self.per_client:
            down, dbytes = jax.vmap(self.down.transmit)(down)
        else:
            down, b = self.down.transmit(down, True)
            dbytes = jnp.full(ids.shape, b)
        es = jax.tree_util.tree_map(lambda a: a[pos], edge_tier)
        batched = (es, down, ids, n, steps, rows, keys) if self.per_client else (es, ids, n, steps, rows, keys)
        pad = (-k) % self.ndev
        if pad:  # masked clients (copies of the first), dropped below and never billed
            sel = jnp.concatenate([jnp.arange(k), jnp.zeros(pad, jnp.int32)])
            batched = jax.tree_util.tree_map(lambda a: a[sel], batched)
        if self.backend == "shard":
            batched = _shard_clients(batched)
        def client(es, d, *rest):
            return self._client(side, es, d, tab["x"], tab["y"], *rest)
        if self.backend == "scan":  # one client after another (convolutions stay ungrouped)
            res = jax.lax.map(lambda a: client(a[0], a[1] if self.per_client else down, *a[2:]),
                              batched if self.per_client else batched[:1] + (None,) + batched[1:])
        else:
            if not self.per_client:
                batched = batched[:1] + (down,) + batched[1:]
            vclient = jax.vmap(client, in_axes=(0, 0 if self.per_client else None, 0, 0, 0, 0, 0))
            b = self.bucket
            if self.backend == "vmap" and 0 < b < k:
                res = _bucketed(vclient, batched, steps, b, self.per_client)
            else:
                res = vclient(*batched)
        if pad:
            res = jax.tree_util.tree_map(lambda a: a[:k], res)
        es2, up, ubytes, loss, ok = res
        rep, rbytes = jax.vmap(self.report.transmit)(self._report(n, steps))
        edge_tier = jax.tree_util.tree_map(lambda a, b: a.at[pos].set(b), edge_tier, es2)
        out = {"ids": ids, "rows": rows, "dbytes": dbytes, "ubytes": ubytes + rbytes * self.report_read,
               "loss": loss}
        return edge_tier, up, rep, out, jnp.all(ok)

    def _clients_part(self, root, cloud, edge, tab, r):
        """A round up to the delivered uplinks: (edge, {tier: uplink}, report,
        per-client outputs, ok, picks)."""
        rkey = jax.random.fold_in(root, r + 1)
        picks, steps = self._sample_jax(root, r, tab)
        edge, ups, reps, outs, ok = list(edge), {}, [], [], jnp.array(True)
        for t in self.tiers:
            edge[t], up, rep, out, ok_t = self._tier(t, cloud, edge[t], tab, picks[t], steps[t], rkey)
            ups[self.inst.tiers[t]] = up
            reps.append(rep)
            outs.append(out)
            ok = ok & ok_t
        cat = lambda *a: jnp.concatenate(a)  # noqa: E731
        rep = jax.tree_util.tree_map(cat, *reps) if len(reps) > 1 else reps[0]
        out = jax.tree_util.tree_map(cat, *outs) if len(outs) > 1 else outs[0]
        return edge, ups, rep, out, ok, picks

    def _update_part(self, cloud, ups, rep, ids, rkey):
        """``cloud_update`` on the round's delivered uplinks: (cloud, ok)."""
        tier = jnp.concatenate([jnp.full((self.k[t],), t, jnp.int32) for t in self.tiers])
        rnd = api.Round(messages=merge_tiers(ups), examples=rep["examples"],
                        client_ids=jnp.asarray(ids, jnp.int32), tier=tier, local_steps=rep["local_steps"])
        cloud = self.cloud("cloud_update", cloud, rnd, jax.random.fold_in(rkey, 10_000))
        return cloud, _finite(cloud)

    def _round_fn(self, root, cloud, edge, tab, r):
        """One whole round as traced code: sampling, every tier, ``cloud_update``.
        Returns (cloud, edge, per-client outputs, ok)."""
        edge, ups, rep, out, ok, _ = self._clients_part(root, cloud, edge, tab, r)
        cloud, ok_c = self._update_part(cloud, ups, rep, out["ids"], jax.random.fold_in(root, r + 1))
        return cloud, edge, out, ok & ok_c

    def _round_attacked(self, cloud, edge, r):
        """A round of a task with Byzantine clients: the compiled clients' part,
        the attack on the host (``inst.attack.round``), the compiled update."""
        if "clients" not in self._jit:
            self._jit["clients"] = jax.jit(self._clients_part)
            self._jit["update_part"] = jax.jit(self._update_part)
        edge, ups, rep, out, ok, picks = self._jit["clients"](self.root, cloud, edge, self.tables, np.int32(r))
        rkey = jax.random.fold_in(self.root, r + 1)
        picks = {t: np.asarray(p) for t, p in picks.items()}
        ups = self.inst.attack.round(self, cloud, ups, picks, rkey)  # lsbench.attacks.hook
        cloud, ok_c = self._jit["update_part"](cloud, ups, rep, out["ids"], rkey)
        return cloud, edge, jax.device_get(out), bool(ok) and bool(ok_c)

    def _chunk_fn(self, seeds: bool = False):
        """The compiled program of up to ``self.chunk`` rounds ``r0 + i``: one
        ``while_loop`` that stops at ``r_end`` or after a round that failed (NaN/Inf);
        slots of rounds not run stay zero (ok). ``seeds``: vmapped over a leading seed
        axis of (root, cloud, edge, tables)."""
        key = ("chunk", seeds)
        if key in self._jit:
            return self._jit[key]

        n = self.chunk

        def chunk(root, cloud, edge, tab, r0, r_end):
            # A while_loop over rounds, not a scan of conds: it stops at r_end or after
            # a failed round, and its body holds no lax.cond (on CPU a cond copies the
            # edge state in and out every round). Unused output slots stay zero / ok.
            shapes = jax.eval_shape(lambda c, e, r: self._round_fn(root, c, e, tab, r)[2], cloud, edge, r0)
            outs = jax.tree_util.tree_map(lambda s: jnp.zeros((n,) + s.shape, s.dtype), shapes)

            def body(carry):
                i, cloud, edge, _, outs, oks = carry
                cloud, edge, out, ok = self._round_fn(root, cloud, edge, tab, r0 + i)
                outs = jax.tree_util.tree_map(lambda b, v: b.at[i].set(v), outs, out)
                return i + 1, cloud, edge, ~ok, outs, oks.at[i].set(ok)

            def go(carry):
                i, _, _, dead, _, _ = carry
                return (i < n) & (r0 + i < r_end) & ~dead

            init = (jnp.int32(0), cloud, edge, jnp.array(False), outs, jnp.ones(n, bool))
            _, cloud, edge, _, outs, oks = jax.lax.while_loop(go, body, init)
            return cloud, edge, outs, oks

        fn = jax.vmap(chunk, in_axes=(0, 0, 0, 0, None, None)) if seeds else chunk
        if self.backend == "shard":  # results replicated: every process's host reads them (jax.distributed)
            fn = (lambda f: lambda *a: _shard_clients(f(*a), replicate=True))(fn)
        self._jit[key] = jax.jit(fn)
        return self._jit[key]

    # ---- rounds, driven from the host ---------------------------------------------
    def run_units(self, state, start: int, end: int):
        """Rounds ``[start, end)``. Returns (state, rows, ok): one metrics row per
        round done (``train_loss`` and the cumulative cost counters), and ok=False
        when a round produced NaN/Inf (its row is the last; the state is the one
        after it). vmap/shard: ``self.chunk`` rounds per compiled call; loop: a
        Python loop of jitted per-step calls (debugging)."""
        costs, rows = dict(state["costs"]), []
        cloud, edge = state["cloud"], state["edge"]
        r = start
        while r < end:
            if self.backend == "loop" or getattr(self.inst.attack, "active", False):
                hi = r + 1
                step = self._round_loop if self.backend == "loop" else self._round_attacked
                cloud, edge, out, ok = step(cloud, edge, r)
                outs, oks = [out], [ok]
            else:
                hi = min(end, r + self.chunk)
                cloud, edge, outs_d, oks_d = self._chunk_fn()(self.root, cloud, edge, self.tables,
                                                              np.int32(r), np.int32(hi))
                outs_d, oks = jax.device_get((outs_d, oks_d))
                outs = [jax.tree_util.tree_map(lambda a, i=i: a[i], outs_d) for i in range(hi - r)]
            for out, ok in zip(outs, oks):
                costs = self._bill(out, costs)
                row = {"train_loss": float(np.asarray(out["loss"]).mean())}
                row.update({k: int(v) for k, v in costs.items()})
                rows.append(row)
                if not bool(ok):
                    return {"cloud": cloud, "edge": edge, "costs": costs}, rows, False
            r = hi
        return {"cloud": cloud, "edge": edge, "costs": costs}, rows, True

    def run_unit(self, state, r):
        """One round (``run_units(state, r, r + 1)``): (state, row, ok)."""
        state, rows, ok = self.run_units(state, r, r + 1)
        return state, rows[0], ok

    # ---- seed batching --------------------------------------------------------------
    def batch_signature(self):
        """What must be equal for runs (seeds) to share one compiled program: the
        protocol's shapes and tables, and every sealed program (jaxpr and constants,
        as sealed so far: call after ``preflight``)."""
        import hashlib
        h = hashlib.sha256()
        for key, prog in sorted(self.sides.sealer._progs.items(), key=lambda kv: repr(kv[0])):
            h.update(repr(key).encode() + str(prog.closed.jaxpr).encode())
            for c in prog.closed.consts:
                h.update(np.asarray(c).tobytes() if hasattr(c, "dtype") else repr(c).encode())
        return (self.backend, self.bucket, self.C, self.B, tuple(sorted(self.k.items())), self.inst.tiers, self.chunk,
                self.num_units, self.per_client, self.report_read, tuple(self.pos.tolist()),
                tuple(np.asarray(self.inst.client_tier).tolist()), tuple(self.x.shape[2:]), str(self.x.dtype),
                str(self.y.dtype), getattr(self.inst.attack, "active", False), h.hexdigest())

    @staticmethod
    def run_units_seeds(loops, states, start: int, end: int):
        """Rounds ``[start, end)`` of several runs that differ only in their seed
        (equal ``batch_signature``), as one program vmapped over seeds: each run's
        own root key, data and tables (client data padded to the longest), state.
        Returns ``[(state, rows, ok)]`` per run, as ``run_units`` would."""
        lead = loops[0]
        nmax = max(lp.x.shape[1] for lp in loops)

        def pad(tab):
            w = nmax - tab["x"].shape[1]
            if not w:
                return tab
            widen = lambda a: jnp.pad(a, [(0, 0), (0, w)] + [(0, 0)] * (a.ndim - 2))  # noqa: E731
            return dict(tab, x=widen(tab["x"]), y=widen(tab["y"]))
        stack = lambda trees: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)  # noqa: E731
        tabs = stack([pad(lp.tables) for lp in loops])
        roots = jnp.stack([lp.root for lp in loops])
        cloud = stack([st["cloud"] for st in states])
        edge = stack([st["edge"] for st in states])
        res = [None] * len(loops)
        costs = [dict(st["costs"]) for st in states]
        rows = [[] for _ in loops]
        r = start
        while r < end and any(x is None for x in res):
            hi = min(end, r + lead.chunk)
            cloud, edge, outs_d, oks_d = lead._chunk_fn(seeds=True)(roots, cloud, edge, tabs, np.int32(r),
                                                                   np.int32(hi))
            outs_d, oks = jax.device_get((outs_d, oks_d))
            for i, lp in enumerate(loops):
                if res[i] is not None:
                    continue
                for j in range(hi - r):
                    out = jax.tree_util.tree_map(lambda a: a[i, j], outs_d)
                    costs[i] = lp._bill(out, costs[i])
                    row = {"train_loss": float(np.asarray(out["loss"]).mean())}
                    row.update({k: int(v) for k, v in costs[i].items()})
                    rows[i].append(row)
                    if not bool(oks[i, j]):  # frozen after this round inside the scan
                        res[i] = ({"cloud": jax.tree_util.tree_map(lambda a: a[i], cloud),
                                   "edge": jax.tree_util.tree_map(lambda a: a[i], edge),
                                   "costs": costs[i]}, rows[i], False)
                        break
            r = hi
        for i in range(len(loops)):
            if res[i] is None:
                res[i] = ({"cloud": jax.tree_util.tree_map(lambda a: a[i], cloud),
                           "edge": jax.tree_util.tree_map(lambda a: a[i], edge), "costs": costs[i]}, rows[i], True)
        return res

    @functools.cached_property
    def _flop_table(self):
        """Per sampled client (tier order): matmul and all-ops FLOPs of
        ``client_init`` + ``client_final`` and of one ``client_step``; and the
        cloud's per round (every tier's ``cloud_downlink`` and ``cloud_update``)."""
        k = self._key_abs()
        cloud = self.cloud.shape("cloud_setup", k)
        fixed, step, fixed_all, step_all = [], [], [], []
        c_mm = c_all = 0
        for t in self.tiers:
            es_row = self.edge(t).shape("edge_setup", k)
            fl = self._edge_flops(t, cloud, _stack_abs(es_row, self.k[t]))
            fixed += [fl["init"].matmul + fl["final"].matmul] * self.k[t]
            fixed_all += [fl["init"].total + fl["final"].total] * self.k[t]
            step += [fl["step"].matmul] * self.k[t]
            step_all += [fl["step"].total] * self.k[t]
            ids = jax.ShapeDtypeStruct((self.k[t],), jnp.int32)
            cd = self.cloud.flops("cloud_downlink", cloud, self.inst.tiers[t], ids)
            c_mm, c_all = c_mm + cd.matmul, c_all + cd.total
        rnd = self._abstract_round(self._abstract_uplinks(cloud))
        cu = self.cloud.flops("cloud_update", cloud, rnd, k)
        a = lambda v: np.asarray(v, np.int64)  # noqa: E731
        return {"fixed": a(fixed), "step": a(step), "fixed_all": a(fixed_all), "step_all": a(step_all),
                "cloud": int(c_mm + cu.matmul), "cloud_all": int(c_all + cu.total)}

    def _bill(self, out, costs):
        """The cost counters after one round, from its per-client outputs (int64 on
        the host): bytes as the channel counted them, edge FLOPs per real example
        (``client_step`` x real rows / batch size, plus init and final)."""
        ft, B = self._flop_table, self.B
        rows = np.asarray(out["rows"], np.int64)
        new = dict(costs)
        new["bytes_down"] = costs["bytes_down"] + np.asarray(out["dbytes"], np.int64).sum()
        new["bytes_up"] = costs["bytes_up"] + np.asarray(out["ubytes"], np.int64).sum()
        new["messages"] = costs["messages"] + np.int64(2 * len(rows))
        new["edge_flops"] = costs["edge_flops"] + (ft["fixed"] + ft["step"] * rows // B).sum()
        new["edge_flops_all"] = costs["edge_flops_all"] + (ft["fixed_all"] + ft["step_all"] * rows // B).sum()
        new["cloud_flops"] = costs["cloud_flops"] + np.int64(ft["cloud"])
        new["cloud_flops_all"] = costs["cloud_flops_all"] + np.int64(ft["cloud_all"])
        return new

    # ---- the loop backend (debugging: Python loops, one jitted call per step) --------
    def _round_loop(self, cloud, edge, r):
        picks, steps = self.sample(r)
        rows = np.minimum(self.rows, steps * self.B)
        rkey = jax.random.fold_in(self.root, r + 1)
        edge, ups, reps, outs, ok_all = list(edge), {}, [], [], True
        for t in self.tiers:
            ids = picks[t]
            tkey = jax.random.fold_in(rkey, t)
            keys = jax.vmap(lambda c: jax.random.fold_in(tkey, c))(jnp.asarray(ids))
            edge[t], up, rep, db, ub, loss, ok = self._tier_loop(
                t, cloud, edge[t], ids, self.pos[ids], np.asarray(self.inst.train_n)[ids], steps[ids],
                rows[ids], keys)
            ups[self.inst.tiers[t]] = up
            reps.append(rep)
            outs.append({"ids": ids, "rows": rows[ids], "dbytes": np.asarray(db), "ubytes": np.asarray(ub),
                         "loss": np.asarray(loss)})
            ok_all = ok_all and bool(np.all(np.asarray(ok)))
        cat = lambda *a: np.concatenate(a)  # noqa: E731
        out = jax.tree_util.tree_map(cat, *outs) if len(outs) > 1 else outs[0]
        rep = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *reps) if len(reps) > 1 else reps[0]
        if self.inst.attack is not None:  # the task's Byzantine clients (lsbench.attacks.hook)
            ups = self.inst.attack.round(self, cloud, ups, picks, rkey)
        tier = np.concatenate([np.full(self.k[t], t, np.int32) for t in self.tiers])
        rnd = api.Round(messages=merge_tiers(ups), examples=rep["examples"],
                        client_ids=jnp.asarray(out["ids"], jnp.int32), tier=jnp.asarray(tier),
                        local_steps=rep["local_steps"])
        if "update" not in self._jit:
            self._jit["update"] = jax.jit(lambda c, rd, k: self.cloud("cloud_update", c, rd, k))
        cloud = self._jit["update"](cloud, rnd, jax.random.fold_in(rkey, 10_000))
        return cloud, edge, out, ok_all and bool(_finite(cloud))

    def _tier_loop(self, t, cloud, edge_tier, ids, pos, n, steps, rows, keys):
        """One tier of a round, client by client, step by step. Its compiled
        functions are kept per tier (tiers differ in shapes)."""
        side, name, cloud_side = self.edge(t), self.inst.tiers[t], self.cloud
        if ("loop", t) not in self._jit:
            self._jit[("loop", t)] = (
                jax.jit(lambda es, d, k: side("client_init", es, d, k)),
                jax.jit(lambda cs, b, k: side("client_step", cs, b, k)),
                jax.jit(lambda cs, es, k: side("client_final", cs, es, k)),
                jax.jit(lambda c, i: cloud_side("cloud_downlink", c, name, i)),
                jax.jit(self.up.transmit), jax.jit(self.down.transmit), jax.jit(self.report.transmit))
        c_init, c_step, c_final, c_down, t_up, t_down, t_rep = self._jit[("loop", t)]
        down_all = c_down(cloud, jnp.asarray(ids))
        outs = []
        for j, c in enumerate(ids):
            down = jax.tree_util.tree_map(lambda a: a[j], down_all) if self.per_client else down_all
            down, db = t_down(down, True)
            es = jax.tree_util.tree_map(lambda a: a[pos[j]], edge_tier)
            k_init, k_perm, k_step, k_final = jax.random.split(keys[j], 4)
            cs = c_init(es, down, k_init)
            perm = np.asarray(_permutation(k_perm, n[j], self.x.shape[1]))
            losses = []
            for s in range(int(steps[j])):
                p = s * self.B + np.arange(self.B)
                idx = perm[p % max(int(n[j]), 1)]
                batch = {"x": self.x[c][idx], "y": self.y[c][idx], "mask": jnp.asarray(p < rows[j])}
                cs, loss = c_step(cs, batch, jax.random.fold_in(k_step, s))
                losses.append(loss)
            es, up = c_final(cs, es, k_final)
            up, ub = t_up(up, True)
            rep, rb = t_rep(self._report(n[j], steps[j]), True)
            rb = rb * self.report_read
            ok = bool(_finite(jnp.stack(losses))) and bool(_finite(up))
            loss = sum(jnp.asarray(v, jnp.float32) for v in losses) / max(len(losses), 1)
            outs.append((es, up, rep, db, ub + rb, loss, ok))
        stack = lambda i: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[o[i] for o in outs])  # noqa: E731
        edge_tier = jax.tree_util.tree_map(lambda a, b: a.at[pos].set(b), edge_tier, stack(0))
        return (edge_tier, stack(1), stack(2), jnp.stack([o[3] for o in outs]),
                jnp.stack([o[4] for o in outs]), jnp.stack([jnp.asarray(o[5]) for o in outs]),
                jnp.asarray([o[6] for o in outs]))

    @functools.cached_property
    def report_read(self) -> int:
        """1 if ``cloud_update`` reads ``Round.examples`` or ``Round.local_steps``,
        else 0. The report is billed (8 bytes per client) only where it is read:
        a method whose cloud never looks at the counts sends none."""
        k = self._key_abs()
        cloud = self.cloud.shape("cloud_setup", k)
        rnd = self._abstract_round(self._abstract_uplinks(cloud))
        prog = self.cloud.program("cloud_update", cloud, rnd, k)
        flags = []
        for i, part in enumerate((cloud, rnd.messages, rnd.examples, rnd.client_ids, rnd.tier,
                                  rnd.local_steps, k)):
            flags += [i in (2, 5)] * len(jax.tree_util.tree_leaves(part))
        used = _used_inputs(prog.closed.jaxpr)
        return int(any(u and f for u, f in zip(used, flags)))

    def _abstract_uplinks(self, cloud) -> dict:
        """{tier: abstract stacked uplink} of a round."""
        ups, k = {}, self._key_abs()
        for t in self.tiers:
            side = self.edge(t)
            es_row = side.shape("edge_setup", k)
            es, _, cs, _ = self._edge_abs(t, cloud, _stack_abs(es_row, self.k[t]))
            _, up = side.shape("client_final", cs, es, k)
            ups[self.inst.tiers[t]] = _stack_abs(up, self.k[t])
        return ups

    def _abstract_round(self, ups: dict) -> api.Round:
        K = sum(self.k[t] for t in self.tiers)
        msgs = jax.eval_shape(lambda u: merge_tiers(u), ups)
        i32 = jax.ShapeDtypeStruct((K,), jnp.int32)
        return api.Round(msgs, jax.ShapeDtypeStruct((K,), jnp.float32), i32, i32, i32)

    def _edge_abs(self, t, cloud, edge_tier):
        """Abstract (edge state row, downlink row, carry, batch) of tier ``t``."""
        side, name = self.edge(t), self.inst.tiers[t]
        es = _row_abs(edge_tier)
        ids = jax.ShapeDtypeStruct((self.k[t],), jnp.int32)
        down = self.cloud.shape("cloud_downlink", cloud, name, ids)
        if self.per_client:
            down = _row_abs(down)
        k = self._key_abs()
        cs = side.shape("client_init", es, down, k)
        xs = self.inst.train_x.shape[2:]
        batch = {"x": jax.ShapeDtypeStruct((self.B,) + xs, self.x.dtype),
                 "y": jax.ShapeDtypeStruct((self.B,), self.y.dtype),
                 "mask": jax.ShapeDtypeStruct((self.B,), jnp.bool_)}
        return es, down, cs, batch

    def _edge_flops(self, t, cloud, edge_tier):
        key = ("edge_flops", t)
        if key not in self._jit:
            side, k = self.edge(t), self._key_abs()
            es, down, cs, batch = self._edge_abs(t, cloud, edge_tier)
            self._jit[key] = {"init": side.flops("client_init", es, down, k),
                              "step": side.flops("client_step", cs, batch, k),
                              "final": side.flops("client_final", cs, es, k)}
        return self._jit[key]

    # ---- budgets ------------------------------------------------------------
    def edge_footprint(self, state) -> dict:
        """What one edge holds and spends, the largest over tiers: ``param_bytes``
        (bytes of the edge state that ``predict_edge`` reads, plus the array
        constants its program holds: the edge model's parameters), ``state_bytes`` (bytes of one client's persistent edge
        state) and ``flops_per_example`` (``client_step`` matmul FLOPs per local
        training example, rounded up)."""
        out = {"param_bytes": 0, "state_bytes": 0, "flops_per_example": 0}
        gx = self.inst.global_test_x
        x_abs = jax.ShapeDtypeStruct((1,) + tuple(np.shape(gx)[1:]), jnp.asarray(gx[:1]).dtype)
        for t in self.tiers:
            es = _row_abs(state["edge"][t])
            out["state_bytes"] = max(out["state_bytes"], _nbytes(es))
            prog = self.edge(t).program("predict_edge", es, x_abs)
            n_es = len(jax.tree_util.tree_leaves(es))
            used = _used_inputs(prog.closed.jaxpr)[:n_es]
            pb = sum(_nbytes(a) for a, u in zip(jax.tree_util.tree_leaves(es), used) if u)
            pb += _const_bytes(prog.closed)  # a model held as program constants counts too
            out["param_bytes"] = max(out["param_bytes"], pb)
            step = self._edge_flops(t, state["cloud"], state["edge"][t])["step"]
            out["flops_per_example"] = max(out["flops_per_example"], -(-step.matmul // self.B))
        return out

    # ---- validation and summary ----------------------------------------------
    def preflight(self):
        """Seals every function on abstract inputs and checks the protocol's shapes."""
        from lsbench.harness.preflight import same_structure
        name, k = self.name, self._key_abs()
        cloud = self.cloud.shape("cloud_setup", k)
        ups = {}
        for t in self.tiers:
            side, tier = self.edge(t), self.inst.tiers[t]
            es_row = side.shape("edge_setup", k)
            ids = jax.ShapeDtypeStruct((self.k[t],), jnp.int32)
            down = self.cloud.shape("cloud_downlink", cloud, tier, ids)
            if self.per_client:
                lead = {a.shape[:1] for a in jax.tree_util.tree_leaves(down)}
                if lead and lead != {(self.k[t],)}:
                    raise PluginError(f"method {name}: per-client cloud_downlink leaves must lead with "
                                      f"{self.k[t]} clients, got {sorted(lead)}")
            es, down_row, cs, batch = self._edge_abs(t, cloud, _stack_abs(es_row, self.k[t]))
            cs2, loss = side.shape("client_step", cs, batch, k)
            same_structure(name, "client_step", cs2, cs)
            _scalar(loss, "client_step", name)
            es2, up = side.shape("client_final", cs, es, k)
            same_structure(name, "client_final", es2, es)
            side.shape("predict_edge", es, jax.ShapeDtypeStruct((2,) + self.inst.train_x.shape[2:],
                                                               self.x.dtype))
            ups[tier] = _stack_abs(up, self.k[t])
        new = self.cloud.shape("cloud_update", cloud, self._abstract_round(ups), k)
        same_structure(name, "cloud_update", new, cloud)

    def finish(self, state, rows):
        from lsbench.metering import profiles
        last = next((r for r in reversed(rows) if "edge_accuracy" in r), {})
        keys = ("edge_accuracy", "edge_personal_accuracy", "cloud_accuracy")
        metrics = {k: last[k] for k in keys if k in last}
        metrics.update({k: v for k, v in last.items() if k.startswith("attack_")})
        for k in keys:
            vals = [r[k] for r in rows if r.get(k) is not None]
            if vals:
                metrics["best_" + k] = max(vals)
        if rows:
            metrics["train_loss"] = rows[-1].get("train_loss")
        vkeys = ("val_edge_accuracy", "val_edge_personal_accuracy", "val_cloud_accuracy")
        validation = {k[4:]: last[k] for k in vkeys if k in last}
        for k in vkeys:
            vals = [r[k] for r in rows if r.get(k) is not None]
            if vals:
                validation["best_" + k[4:]] = max(vals)
        costs = {k: int(v) for k, v in state["costs"].items()}
        units = len(rows)
        derived = profiles.train_derived(costs, units, sum(self.k.values()))
        return {"metrics": metrics, "validation": validation, "costs": costs, "derived": derived,
                "unit": "round", "units": units}

    # ---- evaluation (not billed) ------------------------------------------------
    def _eval_fns(self, t, cloud):
        key = ("eval", t)
        if key in self._jit:
            return self._jit[key]
        side = self.edge(t)
        gx, gy = jnp.asarray(self.inst.global_test_x), jnp.asarray(self.inst.global_test_y)

        def personal(edge_tier, tx, ty, tn):
            def one(es, x, y, n):
                return _acc(side("predict_edge", es, x), y, jnp.arange(x.shape[0]) < n)
            return jax.vmap(one)(edge_tier, tx, ty, tn)

        def on_global(edge_tier, gx, gy):
            return jax.vmap(lambda es: _acc(side("predict_edge", es, gx), gy))(edge_tier)

        self._jit[key] = (jax.jit(personal), jax.jit(on_global))
        return self._jit[key]

    def _cloud_eval(self, cloud):
        if "eval_cloud" not in self._jit:
            gx = jnp.asarray(self.inst.global_test_x)
            fns = []
            for fname in ("predict_global_edge", "predict_cloud"):
                if self.cloud.shape(fname, cloud, gx) is None:
                    fns.append(None)
                    continue
                fns.append(jax.jit(functools.partial(
                    lambda f, c, x, y: _acc(self.cloud(f, c, x), y), fname)))
            self._jit["eval_cloud"] = tuple(fns)
        return self._jit["eval_cloud"]

    def evaluate(self, state):
        inst = self.inst
        out = self._global(state, inst.global_test_x, inst.global_test_y)
        out["edge_personal_accuracy"] = self._personal(state, inst.test_x, inst.test_y, inst.test_n)
        if inst.global_val_x is not None:  # the same global metrics on the validation split
            val = self._global(state, inst.global_val_x, inst.global_val_y)
            out.update({"val_" + k: v for k, v in val.items()})
        if inst.val_x is not None:  # each client's own validation rows
            out["val_edge_personal_accuracy"] = self._personal(state, inst.val_x, inst.val_y, inst.val_n)
        if inst.attack is not None:  # attack metrics, e.g. the backdoor's success rate (attack_*)
            out.update(inst.attack.evaluate(self, state))
        return out

    def _global(self, state, x, y) -> dict:
        """``edge_accuracy`` (the global edge model's, else the mean of the clients' models) and
        ``cloud_accuracy`` (where the method has a cloud model) on one global split."""
        x, y = jnp.asarray(x), jnp.asarray(y)
        g_edge, g_cloud = self._cloud_eval(state["cloud"])
        if g_edge is not None:
            out = {"edge_accuracy": float(g_edge(state["cloud"], x, y))}
        else:
            out = {"edge_accuracy": float(np.concatenate(
                [np.asarray(self._eval_fns(t, state["cloud"])[1](state["edge"][t], x, y))
                 for t in self.tiers]).mean())}
        if g_cloud is not None:
            out["cloud_accuracy"] = float(g_cloud(state["cloud"], x, y))
        return out

    def _personal(self, state, xs, ys, ns) -> float:
        """Accuracy of each client's edge model on its own rows (padded ``[C, n, ...]``), pooled."""
        hits, total = 0.0, 0
        for t in self.tiers:
            personal = self._eval_fns(t, state["cloud"])[0]
            ids = self.members[t]
            n = np.asarray(ns)[ids]
            hits += float(np.asarray(personal(state["edge"][t], jnp.asarray(xs[ids]), jnp.asarray(ys[ids]),
                                              jnp.asarray(n))).sum())
            total += int(n.sum())
        return hits / max(total, 1)

    def is_eval_unit(self, r):
        return (r + 1) % self.inst.eval_every == 0 or r + 1 == self.num_units


def _permutation(key, n, nmax: int):
    """A random order of slots ``0..nmax-1`` with the ``n`` real ones first: one
    single-operand sort of uint32 words (random high bits, the slot index in the
    low bits; slots past ``n`` get all-ones high bits and so sort last). On CPU
    this is about 4x cheaper than ``argsort`` of uniforms (a round of
    ``train/mnist1d`` spent about 1 ms of its 9 in those argsorts). Ties in the
    random bits keep index order."""
    ib = max(1, (int(nmax) - 1).bit_length())
    if ib > 20:  # too few random bits would be left: argsort of uniforms
        u = jax.random.uniform(key, (nmax,))
        return jnp.argsort(jnp.where(jnp.arange(nmax) < n, u, 2.0))
    r = jax.random.bits(key, (nmax,), jnp.uint32) >> ib
    idx = jnp.arange(nmax, dtype=jnp.uint32)
    r = jnp.where(idx < jnp.asarray(n).astype(jnp.uint32), r, jnp.uint32((1 << (32 - ib)) - 1))
    return (jax.lax.sort((r << ib) | idx) & jnp.uint32((1 << ib) - 1)).astype(jnp.int32)


def _bucketed(vclient, batched, steps, b: int, per_client: bool):
    """``vclient(*batched)`` with the clients sorted by step count and run in
    buckets of ``b`` (one vmapped ``while_loop`` per bucket, ``lax.map`` over
    buckets): each bucket runs to its own longest client, so the short clients do
    not ride along with the long ones. Padding clients (copies of the first) run
    0 steps and are dropped; results come back in the clients' order."""
    k = steps.shape[0]
    g = -(-k // b)
    order = jnp.argsort(steps, stable=True)
    sel = jnp.concatenate([order, jnp.full(g * b - k, order[0], order.dtype)])
    arr = list(jax.tree_util.tree_map(lambda a: a[sel], batched[:1]) + (batched[1],)) if not per_client else \
        list(jax.tree_util.tree_map(lambda a: a[sel], batched[:2]))
    rest = [a[sel] for a in batched[2:]]
    rest[2] = jnp.where(jnp.arange(g * b) < k, rest[2], 0)  # steps: padding clients run none
    split = lambda a: a.reshape((g, b) + a.shape[1:])  # noqa: E731
    if per_client:
        groups = jax.tree_util.tree_map(split, (arr[0], arr[1], *rest))
        res = jax.lax.map(lambda a: vclient(*a), groups)
    else:
        down = arr[1]
        groups = jax.tree_util.tree_map(split, (arr[0], *rest))
        res = jax.lax.map(lambda a: vclient(a[0], down, *a[1:]), groups)
    inv = jnp.argsort(order)
    return jax.tree_util.tree_map(lambda a: a.reshape((g * b,) + a.shape[2:])[inv], res)


def _acc(logits, y, mask=None):
    hit = (jnp.argmax(logits, -1) == y).astype(jnp.float32)
    return hit.mean() if mask is None else (hit * mask).sum()


def _used_inputs(jaxpr) -> list:
    """Which invars of a jaxpr its outputs depend on (calls are looked into)."""
    live = {v for v in jaxpr.outvars if isinstance(v, jcore.Var)}
    for eqn in reversed(jaxpr.eqns):
        if not any(o in live for o in eqn.outvars) and not eqn.effects:
            continue
        inner = eqn.params.get("jaxpr") if eqn.primitive.name in ("pjit", "jit", "closed_call") else None
        if inner is not None:
            sub = inner.jaxpr if hasattr(inner, "jaxpr") else inner
            sub_live = set(sub.outvars[i] for i, o in enumerate(eqn.outvars) if o in live)
            used = _used_inputs(_with_outvars(sub, sub_live))
            live.update(v for v, u in zip(eqn.invars, used) if u and isinstance(v, jcore.Var))
        else:
            live.update(v for v in eqn.invars if isinstance(v, jcore.Var))
    return [v in live for v in jaxpr.invars]


def _const_bytes(closed) -> int:
    """Bytes of the array constants (>= 16 elements) of a closed jaxpr and its sub-jaxprs."""
    from lsbench.harness.sealed import MIN_ASSET, _walk
    total = 0
    for eqn, const in _walk(closed.jaxpr, closed.consts):
        if eqn is None and hasattr(const, "shape") and hasattr(const, "dtype") \
                and math.prod(np.shape(const)) >= MIN_ASSET:
            total += math.prod(np.shape(const)) * np.dtype(const.dtype).itemsize
    return total


class _with_outvars:
    """A view of a jaxpr with a subset of its outputs (for ``_used_inputs``)."""

    def __init__(self, jaxpr, outs):
        self.eqns, self.invars = jaxpr.eqns, jaxpr.invars
        self.outvars = list(outs)


def _scalar(x, what, name):
    if x.shape != () or not jnp.issubdtype(x.dtype, jnp.floating):
        raise PluginError(f"method {name}: {what} must return a float scalar loss, got {x.dtype}{list(x.shape)}")


def _shard_clients(tree, replicate=False):
    """Puts the leading (client) axis of every leaf on a 1-D device mesh (the
    caller pads it to a multiple of the device count); ``replicate``: a full copy
    on every device instead. The mesh spans every process's devices."""
    devs = jax.devices()
    if len(devs) < 2:
        return tree
    mesh = jax.sharding.Mesh(np.array(devs), ("clients",))
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*(() if replicate else ("clients",))))
    return jax.tree_util.tree_map(lambda a: jax.lax.with_sharding_constraint(a, spec), tree)
