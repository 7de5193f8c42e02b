"""The training-track loop: rounds of metered cloud<->edge collaboration.

Per round, clients are sampled per capacity tier (stratified: each tier gets
``round(clients_per_round * n_tier / C)`` clients, at least one, so shapes are
fixed and each tier's round compiles once). For each tier one jitted call runs
``cloud_downlink`` -> channel -> vmap over clients of (``client_init``; a
``lax.scan`` of ``client_step`` over the padded local steps, masked past each
client's real step count; ``client_final``) -> channel. Then ``cloud_update``
gets all tiers' delivered uplinks. Edge state for every client lives here.

Local batches: each round a client draws one permutation of its examples;
position p of the round's stream is example ``perm[p mod n]``, so epochs beyond
the first repeat that round's order. Rows past ``ceil(local_epochs * n)`` are
masked. Client keys derive from (seed, round, client id), so the ``loop`` and
``vmap`` backends compute the same thing.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lsbench.metering.channel import Channel
from lsbench.task import TrainInstance

COST_KEYS = ("bytes_up", "bytes_down", "messages", "edge_flops", "cloud_flops",
             "edge_flops_all", "cloud_flops_all")


def _sds(x):
    return jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x))


def _row_abs(tree):
    """Abstract value of one row of a stacked pytree."""
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), tree)


def _tree_where(c, a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.where(c, x, y), a, b)


def _finite(tree):
    ok = jnp.array(True)
    for leaf in jax.tree_util.tree_leaves(tree):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            ok = ok & jnp.all(jnp.isfinite(leaf))
    return ok


def pooled_view(inst: TrainInstance) -> TrainInstance:
    """One client holding all training data (the centralized reference)."""
    def cat(x, n):
        return np.concatenate([x[c, : n[c]] for c in range(len(n))])[None]
    tx, ty = cat(inst.train_x, inst.train_n), cat(inst.train_y, inst.train_n)
    vx, vy = cat(inst.test_x, inst.test_n), cat(inst.test_y, inst.test_n)
    n = int(inst.train_n.sum())
    return TrainInstance(
        ctx=inst.ctx, train_x=tx, train_y=ty, train_n=np.array([n]), test_x=vx, test_y=vy,
        test_n=np.array([vx.shape[1]]), global_test_x=inst.global_test_x,
        global_test_y=inst.global_test_y, client_tier=np.zeros(1, np.int32), tiers=inst.tiers[:1],
        rounds=inst.rounds, clients_per_round=1, local_epochs=inst.local_epochs,
        batch_size=inst.batch_size, max_local_steps=math.ceil(inst.local_epochs * n / inst.batch_size),
        eval_every=inst.eval_every, straggler_fraction=0.0, hashes=inst.hashes)


class TrainLoop:
    unit = "round"

    def __init__(self, inst: TrainInstance, method, seed: int, meter, backend: str = "vmap"):
        if method.pooled:
            inst = pooled_view(inst)
        self.inst, self.m, self.seed, self.meter, self.backend = inst, method, seed, meter, backend
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
        hp = method.hp
        self.up = Channel(hp.get("codec_up", method.codec_up))
        self.down = Channel(hp.get("codec_down", method.codec_down))
        self.x = jnp.asarray(inst.train_x)
        self.y = jnp.asarray(inst.train_y)
        self._jit = {}

    # ---- state -------------------------------------------------------------
    def init_state(self):
        m, key = self.m, jax.random.fold_in(self.root, 0)
        cloud = m.init(jax.random.fold_in(key, 0))
        edge = []
        for t in range(len(self.inst.tiers)):
            ids = self.members[t]
            if not len(ids):
                edge.append({})
                continue
            keys = jax.vmap(lambda c: jax.random.fold_in(jax.random.fold_in(key, 1), c))(jnp.asarray(ids))
            name = self.inst.tiers[t]
            edge.append(jax.jit(jax.vmap(lambda k: m.init_edge(name, k)))(keys))
        costs = {k: np.zeros((), np.int64) for k in COST_KEYS}
        return {"cloud": cloud, "edge": edge, "costs": costs}

    def setup_costs(self):
        ctx = self.ctx
        pub = 0
        if self.m.edge_uses_public and ctx.public is not None:
            pub = int(np.asarray(ctx.public).nbytes) * self.C
        return {"setup_bytes_down": pub, "setup_bytes_up": 0}

    @property
    def ctx(self):
        return self.inst.ctx

    # ---- one client -----------------------------------------------------------
    def _client(self, edge_state, down, x, y, n, steps, rows, key):
        m, B, S = self.m, self.B, self.S
        k_init, k_perm, k_step, k_final = jax.random.split(key, 4)
        cs = m.client_init(edge_state, down, k_init)
        nmax = x.shape[0]
        u = jax.random.uniform(k_perm, (nmax,))
        perm = jnp.argsort(jnp.where(jnp.arange(nmax) < n, u, 2.0))
        n_safe = jnp.maximum(n, 1)

        def body(cs, s):
            p = s * B + jnp.arange(B)
            idx = perm[p % n_safe]
            batch = {"x": x[idx], "y": y[idx], "mask": p < rows}
            new, loss = m.client_step(cs, batch, jax.random.fold_in(k_step, s))
            live = s < steps
            return _tree_where(live, new, cs), jnp.where(live, loss, 0.0)

        cs, losses = jax.lax.scan(body, cs, jnp.arange(S))
        edge_state, up = m.client_final(cs, edge_state, k_final)
        up, up_bytes = self.up.transmit(up, True)
        ok = _finite(losses) & _finite(up)
        return edge_state, up, up_bytes, losses.sum() / jnp.maximum(steps, 1), ok

    def _tier_fn(self, t):
        if t in self._jit:
            return self._jit[t]
        m, name = self.m, self.inst.tiers[t]

        def run(cloud, edge_tier, x, y, ids, pos, n, steps, rows, keys):
            down = m.cloud_downlink(cloud, name, ids)
            if m.per_client_downlink:
                down, dbytes = jax.vmap(self.down.transmit)(down)
                d_axis = 0
            else:
                down, b = self.down.transmit(down, True)
                dbytes, d_axis = jnp.full(ids.shape, b), None
            es = jax.tree_util.tree_map(lambda a: a[pos], edge_tier)
            xs, ys = x[ids], y[ids]
            if self.backend == "shard":
                xs = _shard_clients(xs)
            es2, up, ubytes, loss, ok = jax.vmap(self._client, in_axes=(0, d_axis, 0, 0, 0, 0, 0, 0))(
                es, down, xs, ys, n, steps, rows, keys)
            edge_tier = jax.tree_util.tree_map(lambda a, b: a.at[pos].set(b), edge_tier, es2)
            return edge_tier, up, dbytes, ubytes, loss, ok

        self._jit[t] = jax.jit(run)
        return self._jit[t]

    def _tier_loop(self, t, cloud, edge_tier, ids, pos, n, steps, rows, keys):
        """The FedJAX-style debug backend: Python loops, one jitted call per step."""
        m, name = self.m, self.inst.tiers[t]
        if "loop" not in self._jit:
            self._jit["loop"] = (
                jax.jit(m.client_init), jax.jit(m.client_step), jax.jit(m.client_final),
                jax.jit(lambda c, i: m.cloud_downlink(c, name, i)),
                jax.jit(self.up.transmit), jax.jit(self.down.transmit))
        c_init, c_step, c_final, c_down, t_up, t_down = self._jit["loop"]
        down_all = c_down(cloud, jnp.asarray(ids))
        outs = []
        for j, c in enumerate(ids):
            down = jax.tree_util.tree_map(lambda a: a[j], down_all) if m.per_client_downlink else down_all
            down, db = t_down(down, True)
            es = jax.tree_util.tree_map(lambda a: a[pos[j]], edge_tier)
            k_init, k_perm, k_step, k_final = jax.random.split(keys[j], 4)
            cs = c_init(es, down, k_init)
            nmax = self.x.shape[1]
            u = jax.random.uniform(k_perm, (nmax,))
            perm = np.asarray(jnp.argsort(jnp.where(jnp.arange(nmax) < n[j], u, 2.0)))
            losses = []
            for s in range(int(steps[j])):
                p = s * self.B + np.arange(self.B)
                idx = perm[p % max(int(n[j]), 1)]
                batch = {"x": self.x[c][idx], "y": self.y[c][idx], "mask": jnp.asarray(p < rows[j])}
                cs, loss = c_step(cs, batch, jax.random.fold_in(k_step, s))
                losses.append(loss)
            es, up = c_final(cs, es, k_final)
            up, ub = t_up(up, True)
            ok = bool(_finite(jnp.stack(losses))) and bool(_finite(up))
            outs.append((es, up, db, ub, sum(losses) / max(len(losses), 1), ok))
        stack = lambda i: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[o[i] for o in outs])
        es2 = stack(0)
        edge_tier = jax.tree_util.tree_map(lambda a, b: a.at[pos].set(b), edge_tier, es2)
        return (edge_tier, stack(1), jnp.stack([o[2] for o in outs]), jnp.stack([o[3] for o in outs]),
                jnp.stack([jnp.asarray(o[4]) for o in outs]), jnp.asarray([o[5] for o in outs]))

    # ---- a round ------------------------------------------------------------
    def sample(self, r):
        rng = np.random.default_rng([self.seed, r, 7])
        picks = {t: np.sort(rng.choice(self.members[t], self.k[t], replace=False)) for t in self.tiers}
        steps = self.steps.copy()
        frac = self.inst.straggler_fraction
        if frac > 0:
            for t in self.tiers:
                ids = picks[t]
                strag = rng.random(len(ids)) < frac
                steps[ids] = np.where(strag, rng.integers(1, steps[ids] + 1), steps[ids])
        return picks, steps

    def run_unit(self, state, r):
        m = self.m
        picks, steps = self.sample(r)
        rows = np.minimum(self.rows, steps * self.B)
        rkey = jax.random.fold_in(self.root, r + 1)
        cloud, edge = state["cloud"], list(state["edge"])
        uplinks, weights, idmap, losses, ok_all = {}, {}, {}, [], True
        costs = {k: 0 for k in COST_KEYS}
        for t in self.tiers:
            ids = picks[t]
            pos, n = self.pos[ids], np.asarray(self.inst.train_n)[ids]
            tkey = jax.random.fold_in(rkey, t)
            keys = jax.vmap(lambda c: jax.random.fold_in(tkey, c))(jnp.asarray(ids))
            args = (cloud, edge[t], jnp.asarray(ids), jnp.asarray(pos), jnp.asarray(n),
                    jnp.asarray(steps[ids]), jnp.asarray(rows[ids]), keys)
            if self.backend == "loop":
                out = self._tier_loop(t, cloud, edge[t], ids, pos, n, steps[ids], rows[ids], keys)
            else:
                out = self._tier_fn(t)(args[0], args[1], self.x, self.y, *args[2:])
            edge[t], up, dbytes, ubytes, loss, ok = out
            name = self.inst.tiers[t]
            uplinks[name], weights[name], idmap[name] = up, jnp.asarray(n, jnp.float32), jnp.asarray(ids)
            losses.append(np.asarray(loss))
            ok_all = ok_all and bool(np.all(np.asarray(ok)))
            costs["bytes_down"] += int(np.asarray(dbytes, np.int64).sum())
            costs["bytes_up"] += int(np.asarray(ubytes, np.int64).sum())
            costs["messages"] += 2 * len(ids)
            fl = self._edge_flops(t, cloud, edge[t], ids)
            costs["edge_flops"] += sum(fl["init"].matmul + fl["final"].matmul + fl["step"].matmul * int(rw) // self.B
                                       for rw in rows[ids])
            costs["edge_flops_all"] += sum(fl["init"].total + fl["final"].total + fl["step"].total * int(rw) // self.B
                                           for rw in rows[ids])
            cd = self.meter.count(f"cloud_downlink/{name}", lambda c, i: m.cloud_downlink(c, name, i),
                                  cloud, jnp.asarray(ids))
            costs["cloud_flops"] += cd.matmul
            costs["cloud_flops_all"] += cd.total
        ukey = jax.random.fold_in(rkey, 10_000)
        cu = self.meter.count("cloud_update", m.cloud_update, cloud, uplinks, weights, idmap, ukey)
        costs["cloud_flops"] += cu.matmul
        costs["cloud_flops_all"] += cu.total
        if "update" not in self._jit:
            self._jit["update"] = jax.jit(m.cloud_update)
        cloud = self._jit["update"](cloud, uplinks, weights, idmap, ukey)
        ok_all = ok_all and bool(_finite(cloud))
        new_costs = {k: state["costs"][k] + np.int64(costs[k]) for k in COST_KEYS}
        row = {"train_loss": float(np.concatenate(losses).mean())}
        return {"cloud": cloud, "edge": edge, "costs": new_costs}, row, ok_all

    def _edge_flops(self, t, cloud, edge_tier, ids):
        m, name = self.m, self.inst.tiers[t]
        key = ("edge_abs", t)
        if key not in self._jit:
            es = _row_abs(edge_tier)
            down = jax.eval_shape(lambda c, i: m.cloud_downlink(c, name, i), cloud, jnp.asarray(ids))
            if m.per_client_downlink:
                down = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), down)
            k = _sds(self.root)
            cs = jax.eval_shape(m.client_init, es, down, k)
            xs = self.inst.train_x.shape[2:]
            batch = {"x": jax.ShapeDtypeStruct((self.B,) + xs, self.x.dtype),
                     "y": jax.ShapeDtypeStruct((self.B,), self.y.dtype),
                     "mask": jax.ShapeDtypeStruct((self.B,), jnp.bool_)}
            self._jit[key] = {
                "init": self.meter.count(f"client_init/{name}", m.client_init, es, down, k),
                "step": self.meter.count(f"client_step/{name}", m.client_step, cs, batch, k),
                "final": self.meter.count(f"client_final/{name}", m.client_final, cs, es, k)}
        return self._jit[key]

    # ---- validation and summary ----------------------------------------------
    def preflight(self):
        from lsbench.harness.preflight import same_structure
        m, name = self.m, self.m.manifest.name
        state = jax.eval_shape(self.init_state)
        for t in self.tiers:
            ids = self.members[t][: self.k[t]]
            es = _row_abs(state["edge"][t])
            tier = self.inst.tiers[t]
            down = jax.eval_shape(lambda c, i: m.cloud_downlink(c, tier, i), state["cloud"], jnp.asarray(ids))
            if m.per_client_downlink:
                lead = {a.shape[:1] for a in jax.tree_util.tree_leaves(down)}
                if lead and lead != {(len(ids),)}:
                    from lsbench.registry import PluginError
                    raise PluginError(f"method {name}: per-client cloud_downlink leaves must lead with "
                                      f"{len(ids)} clients, got {sorted(lead)}")
                down = _row_abs(down)
            k = _sds(self.root)
            cs = jax.eval_shape(m.client_init, es, down, k)
            batch = {"x": jax.ShapeDtypeStruct((self.B,) + self.inst.train_x.shape[2:], self.x.dtype),
                     "y": jax.ShapeDtypeStruct((self.B,), self.y.dtype),
                     "mask": jax.ShapeDtypeStruct((self.B,), jnp.bool_)}
            cs2, loss = jax.eval_shape(m.client_step, cs, batch, k)
            same_structure(name, "client_step", cs2, cs)
            _scalar(loss, "client_step", name)
            es2, _ = jax.eval_shape(m.client_final, cs, es, k)
            same_structure(name, "client_final", es2, es)
        jax.eval_shape(lambda s: self.run_unit_abstract(s), state)

    def run_unit_abstract(self, state):
        """cloud_update on abstract uplinks, to check it traces and keeps its structure."""
        from lsbench.harness.preflight import same_structure
        m = self.m
        ups, ws, ids = {}, {}, {}
        for t in self.tiers:
            tier, k = self.inst.tiers[t], self.k[t]
            es = jax.tree_util.tree_map(lambda a: a[:k], state["edge"][t])
            i = jnp.asarray(self.members[t][:k])
            down = m.cloud_downlink(state["cloud"], tier, i)
            cs = jax.vmap(m.client_init, in_axes=(0, 0 if m.per_client_downlink else None, None))(
                es, down, self.root)
            _, up = jax.vmap(m.client_final, in_axes=(0, 0, None))(cs, es, self.root)
            ups[tier], ws[tier], ids[tier] = up, jnp.ones((k,), jnp.float32), i
        new = m.cloud_update(state["cloud"], ups, ws, ids, self.root)
        same_structure(m.manifest.name, "cloud_update", new, state["cloud"])
        return new

    def finish(self, state, rows):
        from lsbench.metering import profiles
        last = next((r for r in reversed(rows) if "edge_accuracy" in r), {})
        keys = ("edge_accuracy", "edge_personal_accuracy", "cloud_accuracy")
        metrics = {k: last[k] for k in keys if k in last}
        for k in keys:
            vals = [r[k] for r in rows if r.get(k) is not None]
            if vals:
                metrics["best_" + k] = max(vals)
        if rows:
            metrics["train_loss"] = rows[-1].get("train_loss")
        costs = {k: int(v) for k, v in state["costs"].items()}
        costs.update(self.setup_costs())
        units = len(rows)
        derived = profiles.train_derived(costs, units, sum(self.k.values()))
        return {"metrics": metrics, "costs": costs, "derived": derived, "unit": "round", "units": units}

    # ---- evaluation -----------------------------------------------------------
    def evaluate(self, state):
        m, inst = self.m, self.inst
        gx, gy = jnp.asarray(inst.global_test_x), jnp.asarray(inst.global_test_y)
        out = {}
        if "eval" not in self._jit:
            def acc(logits, y, mask=None):
                hit = (jnp.argmax(logits, -1) == y).astype(jnp.float32)
                return hit.mean() if mask is None else (hit * mask).sum()

            def personal(edge_tier, tx, ty, tn):
                def one(es, x, y, n):
                    return acc(m.predict_edge(es, x), y, jnp.arange(x.shape[0]) < n)
                return jax.vmap(one)(edge_tier, tx, ty, tn)

            def on_global(edge_tier):
                return jax.vmap(lambda es: acc(m.predict_edge(es, gx), gy))(edge_tier)

            ge = jax.eval_shape(m.predict_global_edge, state["cloud"], gx)
            gc = jax.eval_shape(m.predict_cloud, state["cloud"], gx)
            self._jit["eval"] = (
                jax.jit(personal), jax.jit(on_global),
                jax.jit(lambda c: acc(m.predict_global_edge(c, gx), gy)) if ge is not None else None,
                jax.jit(lambda c: acc(m.predict_cloud(c, gx), gy)) if gc is not None else None)
        personal, on_global, g_edge, g_cloud = self._jit["eval"]
        hits, total, client_acc = 0.0, 0, []
        for t in self.tiers:
            ids = self.members[t]
            tn = np.asarray(inst.test_n)[ids]
            hits += float(np.asarray(personal(state["edge"][t], jnp.asarray(inst.test_x[ids]),
                                              jnp.asarray(inst.test_y[ids]), jnp.asarray(tn))).sum())
            total += int(tn.sum())
            if g_edge is None:
                client_acc.append(np.asarray(on_global(state["edge"][t])))
        out["edge_personal_accuracy"] = hits / max(total, 1)
        out["edge_accuracy"] = (float(g_edge(state["cloud"])) if g_edge is not None
                                else float(np.concatenate(client_acc).mean()))
        if g_cloud is not None:
            out["cloud_accuracy"] = float(g_cloud(state["cloud"]))
        return out

    def is_eval_unit(self, r):
        return (r + 1) % self.inst.eval_every == 0 or r + 1 == self.num_units


def _scalar(x, what, name):
    from lsbench.registry import PluginError
    if x.shape != () or not jnp.issubdtype(x.dtype, jnp.floating):
        raise PluginError(f"method {name}: {what} must return a float scalar loss, got {x.dtype}{list(x.shape)}")


def _shard_clients(x):
    """Puts the client axis on a 1-D device mesh when it divides evenly."""
    devs = jax.devices()
    if len(devs) < 2 or x.shape[0] % len(devs):
        return x
    mesh = jax.sharding.Mesh(np.array(devs), ("clients",))
    spec = jax.sharding.PartitionSpec("clients")
    return jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(mesh, spec))


