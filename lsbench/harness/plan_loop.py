"""The planning-track loop: episodes vmapped, steps scanned, all in one jit.

The method is built once per side (``sealed.Sides``); every call goes through
its side's sealed program. Setup (once per run, metered): ``edge_setup`` ->
channel up -> ``cloud_setup`` -> channel down (the package) -> ``edge_install``;
its FLOPs per side and bytes are the ``setup_*`` costs.

Per episode ``edge_start``; per step: ``edge_query`` -> channel up (if
``send``) -> ``cloud_reply(cloud_state, world, uplink, rng)`` -> channel down
-> ``edge_act`` -> ``env.step``. The cloud sees the episode's ``world`` only on
steps the edge sent (zeros otherwise, like the uplink). Steps after an episode
ends are masked: not billed and state frozen. FLOPs: per active step
``edge_query + edge_act`` (edge), per episode ``edge_start``, per sent step
``cloud_reply`` (cloud), counted on the same sealed programs (one episode's
call); an exact-solver cloud is also billed in expanded nodes by the task's
``cloud_cost``. A ``Query.peer`` message (edge<->edge) is billed in its own
column on every active step. Episodes run in chunks (the checkpoint unit).

Teams (``PlanMethod.team() = (K, R)``, e.g. debate): the edge functions are the
acting agent's (agent 0's device, its view holding member 0 only) and the K
agents run as their own sealed programs (``sealed.team_views``), vmapped over the
agents: ``agent_setup`` (once, with member i mod M), ``agent_start`` (per
episode), then each step rounds r = 0..R of ``agent_round``. A round's messages
pass through the peer channel: rounds < R broadcast (billed once per sender and
delivered to its K - 1 peers), round R's reports go to the acting agent (billed
for agents 1..K-1) and reach ``edge_query`` as its ``team`` inbox. Agent FLOPs
are edge FLOPs (per episode K ``agent_start``; per active step K ``agent_round``
per round), and agent states are part of the edge's footprint.

Validation: a task with ``val_instances`` gets its validation episodes run by
the same programs after the test chunks (their own keys); ``finish`` reports
the task's metrics on them as ``validation`` (the suite selects operating
points there). Costs are the test episodes'.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lsbench import api
from lsbench.errors import PluginError
from lsbench.harness.trees import nbytes as _nbytes, where as _where
from lsbench.metering.channel import Channel
from lsbench.metering.flops import FlopCount
from lsbench.task import PlanInstance

CHUNK = 256
STEP_KEYS = ("bytes_up", "bytes_down", "peer_bytes", "nodes", "sent", "active")
SETUP_KEYS = ("setup_edge_flops", "setup_cloud_flops", "setup_edge_flops_all", "setup_cloud_flops_all",
              "setup_bytes_up", "setup_bytes_down")
COST_KEYS = ("bytes_up", "bytes_down", "messages", "edge_flops", "cloud_flops", "edge_flops_all",
             "cloud_flops_all", "peer_bytes", "cloud_nodes") + SETUP_KEYS


def _sds(tree):
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), tree)






def _has_leaves(tree) -> bool:
    return len(jax.tree_util.tree_leaves(tree)) > 0


class PlanLoop:
    unit = "chunk"

    def __init__(self, inst: PlanInstance, sides, seed: int, scramble: bool = False):
        self.inst, self.sides = inst, sides
        self.edge, self.cloud = sides.edge_of(), sides.cloud
        self.agent, self.team, self.agent_params = sides.agent, sides.team, sides.agent_params
        self.name = self.edge.manifest.name
        self.root = jax.random.PRNGKey(seed)
        self.E = inst.num_episodes
        self.V = inst.num_val if getattr(inst, "val_instances", None) is not None else 0
        self.chunk = min(CHUNK, self.E)
        self.test_units = math.ceil(self.E / self.chunk)
        self.num_units = self.test_units + math.ceil(self.V / self.chunk)
        self.checkpoint_every = 1
        hp = self.edge.hp
        self.up = Channel(hp.get("codec_up", self.edge.codec_up), scramble=scramble)
        self.down = Channel(hp.get("codec_down", self.edge.codec_down), scramble=scramble)
        self.peer = Channel("raw", scramble=scramble)
        self._rollout = jax.jit(jax.vmap(self._episode, in_axes=(None, None, None, 0, 0)))
        self._setup_run = jax.jit(self._setup)
        self._shapes = None   # abstract setup results and step values, from _prepare
        self._flops = None

    # ---- setup ------------------------------------------------------------------
    def _setup_keys(self, root):
        k = jax.random.fold_in(root, 0)
        return jax.random.fold_in(k, 0), jax.random.fold_in(k, 1), jax.random.fold_in(k, 2)

    def _setup(self, root):
        """edge_setup -> channel up -> cloud_setup -> channel down -> edge_install."""
        ke, kc, ki = self._setup_keys(root)
        es, uplink = self.edge("edge_setup", ke)
        up, ub = self.up.transmit(uplink, True)
        cs, package = self.cloud("cloud_setup", up, kc)
        down, db = self.down.transmit(package, True)
        es = self.edge("edge_install", es, down, ki)
        return es, cs, ub, db, self._agent_setup(root)

    # ---- a team's agents ----------------------------------------------------------
    def _agent_setup(self, root):
        """Agent i's state from member i mod M (vmapped over the K agents); () if no team."""
        if not self.team:
            return ()
        k = jax.random.fold_in(jax.random.fold_in(root, 0), 3)
        keys = jax.vmap(lambda i: jax.random.fold_in(k, i))(jnp.arange(self.team[0]))
        return jax.vmap(lambda p, kk: self.agent("agent_setup", p, kk))(self.agent_params, keys)

    def _send(self, msgs, active):
        """Each agent's message through the peer channel: (delivered [K, ...], bytes)."""
        got, b = jax.vmap(lambda m: self.peer.transmit(m, active))(msgs)
        return got, b.sum().astype(jnp.int32)

    def _team_step(self, ast, ac, obs, key, active):
        """Rounds 0..R of the K agents: (agent carries, the acting agent's team inbox, peer bytes)."""
        K, R = self.team
        peers = ~jnp.eye(K, dtype=bool)  # row i: whom agent i hears
        inboxes = api.Inbox((), jnp.zeros((K, K), bool))
        pb = jnp.int32(0)
        for r in range(R + 1):
            keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(key, r), i))(jnp.arange(K))
            ac, msg = jax.vmap(lambda a, c, ib, kk: self.agent("agent_round", a, c, obs, ib, kk, r=r))(
                ast, ac, inboxes, keys)
            if r < R:  # a broadcast: billed once per sender, heard by its K - 1 peers only
                got, b = self._send(msg, active)
                pb = pb + b
                inboxes = api.Inbox(jax.vmap(lambda row: jax.tree_util.tree_map(
                    lambda x: jnp.where(row.reshape((K,) + (1,) * (x.ndim - 1)), x, jnp.zeros_like(x)), got))(peers),
                    peers & active)
            else:  # reports to the acting agent: its own (row 0) is not sent
                got, b = self._send(jax.tree_util.tree_map(lambda x: x[1:], msg), active) if K > 1 else (
                    jax.tree_util.tree_map(lambda x: x[1:], msg), jnp.int32(0))
                pb = pb + b
                team = api.Inbox(jax.tree_util.tree_map(lambda own, g: jnp.concatenate([own[:1], g]), msg, got),
                                 jnp.ones((K,), bool) & active)
        return ac, team, pb

    def _team_shapes(self, obs, k):
        """Seals the agents' programs abstractly: (agent state, carry, team inbox, FLOPs, program args)."""
        K, R = self.team
        name, A = self.name, self.agent
        from lsbench.harness.preflight import same_structure
        one = _sds(jax.tree_util.tree_map(lambda a: a[0], self.agent_params))
        ast = A.shape("agent_setup", one, k)
        ac = A.shape("agent_start", ast, obs)
        inbox = api.Inbox((), jax.ShapeDtypeStruct((K,), jnp.bool_))
        flops = {"setup": K * A.flops("agent_setup", one, k), "start": K * A.flops("agent_start", ast, obs),
                 "step": FlopCount(0, 0)}
        args = {"agent_start": ((ast, obs), {})}
        active = jax.ShapeDtypeStruct((), jnp.bool_)
        for r in range(R + 1):
            ac2, msg = A.shape("agent_round", ast, ac, obs, inbox, k, r=r)
            same_structure(name, f"agent_round[r={r}] (carry)", ac2, ac)
            flops["step"] = flops["step"] + K * A.flops("agent_round", ast, ac, obs, inbox, k, r=r)
            args[f"agent_round[r={r}]"] = ((ast, ac, obs, inbox, k), {"r": r})
            stacked = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct((K,) + tuple(a.shape), a.dtype), msg)
            got = jax.eval_shape(lambda m, a: self._send(m, a)[0], stacked, active)
            inbox = api.Inbox(got, jax.ShapeDtypeStruct((K,), jnp.bool_))
        return ast, ac, inbox, flops, args

    def _prepare(self):
        """Seals every program abstractly (setup first, then the episode's) before
        anything runs, checks the protocol's shapes and counts FLOPs."""
        if self._flops is not None:
            return
        E, C = self.edge, self.cloud
        name, inst = self.name, self.inst
        k = _sds(self.root)
        es0, uplink = E.shape("edge_setup", k)
        up = jax.eval_shape(lambda m: self.up.transmit(m, True)[0], uplink)
        cs, package = C.shape("cloud_setup", up, k)
        down = jax.eval_shape(lambda m: self.down.transmit(m, True)[0], package)
        es = E.shape("edge_install", es0, down, k)
        one = jax.tree_util.tree_map(lambda a: np.asarray(a)[0], inst.instances)
        env, obs, world = jax.eval_shape(inst.reset, one)
        carry = E.shape("edge_start", es, obs)
        team = ()
        if self.team:
            ast, _, team_inbox, tf, self._agent_args = self._team_shapes(obs, k)
            team = (team_inbox,)
        q = E.shape("edge_query", es, carry, obs, k, *team)
        if not isinstance(q, api.Query):
            raise PluginError(f"method {name}: edge_query must return api.Query(carry, uplink, send), "
                              f"got {type(q).__name__}")
        if np.shape(q.send) != () or q.send.dtype != jnp.bool_:
            raise PluginError(f"method {name}: edge_query's send must be a bool scalar per episode, "
                              f"got {q.send.dtype}{list(np.shape(q.send))}")
        from lsbench.harness.preflight import same_structure
        same_structure(name, "edge_query (carry)", q.carry, carry)
        got_up = jax.eval_shape(lambda m: self.up.transmit(m, True)[0], q.uplink)
        reply = C.shape("cloud_reply", cs, world, got_up, k)
        got_down = jax.eval_shape(lambda m: self.down.transmit(m, True)[0], reply)
        inbox = api.Inbox(got_down, jax.ShapeDtypeStruct((), jnp.bool_))
        carry2, action = E.shape("edge_act", es, q.carry, obs, inbox, k)
        same_structure(name, "edge_act (carry)", carry2, carry)
        if np.shape(action) != () or not jnp.issubdtype(action.dtype, jnp.integer):
            raise PluginError(f"method {name}: edge_act must return (carry, action) with an integer "
                              f"scalar action, got {action.dtype}{list(np.shape(action))}")
        self._shapes = {"es": es, "cs": cs, "uplink": uplink, "package": package}
        self._edge_args = {"edge_start": (es, obs), "edge_query": (es, carry, obs, k) + team,
                           "edge_act": (es, q.carry, obs, inbox, k)}
        self._flops = {
            "start": E.flops("edge_start", es, obs),
            "query": E.flops("edge_query", es, carry, obs, k, *team),
            "act": E.flops("edge_act", es, q.carry, obs, inbox, k),
            "reply": C.flops("cloud_reply", cs, world, got_up, k),
            "edge_setup": E.flops("edge_setup", k) + E.flops("edge_install", es0, down, k),
            "cloud_setup": C.flops("cloud_setup", up, k),
        }
        if self.team:  # the agents' FLOPs are the edge's: per episode, per active step, at setup
            self._shapes["agents"] = ast
            self._flops.update(start=self._flops["start"] + tf["start"], query=self._flops["query"] + tf["step"],
                               edge_setup=self._flops["edge_setup"] + tf["setup"])

    # ---- one episode ------------------------------------------------------------
    def _episode(self, es, cs, ast, instance, key):
        E, C, inst = self.edge, self.cloud, self.inst
        env, obs, world = inst.reset(instance)
        carry = E("edge_start", es, obs)
        ac = jax.vmap(lambda a: self.agent("agent_start", a, obs))(ast) if self.team else ()
        zero_world = jax.tree_util.tree_map(jnp.zeros_like, world)

        def body(c, t):
            env, obs, carry, ac, done = c
            k = jax.random.fold_in(key, t)
            active = ~done
            if self.team:
                ac2, team, tb = self._team_step(ast, ac, obs, jax.random.fold_in(k, 3), active)
                q = E("edge_query", es, carry, obs, jax.random.fold_in(k, 0), team)
            else:
                ac2, tb = ac, jnp.int32(0)
                q = E("edge_query", es, carry, obs, jax.random.fold_in(k, 0))
            send = jnp.asarray(q.send, bool) & active
            up, ub = self.up.transmit(q.uplink, send)
            seen = _where(send, world, zero_world)  # the cloud sees the world only when asked
            reply = C("cloud_reply", cs, seen, up, jax.random.fold_in(k, 1))
            down, db = self.down.transmit(reply, send)
            pb = (self.peer.transmit(q.peer, active)[1] if _has_leaves(q.peer) else jnp.int32(0)) + tb
            nodes = inst.cloud_cost(world, up) if inst.cloud_cost is not None else jnp.int32(0)
            carry2, action = E("edge_act", es, q.carry, obs, api.Inbox(down, send),
                               jax.random.fold_in(k, 2))
            env2, obs2, d2, info = inst.step(env, action)
            info = _where(active, info, jax.tree_util.tree_map(jnp.zeros_like, info))  # none after the end
            c2 = (_where(active, env2, env), _where(active, obs2, obs), _where(active, carry2, carry),
                  _where(active, ac2, ac), done | (d2 & active))
            rec = {"bytes_up": ub, "bytes_down": db, "peer_bytes": pb,
                   "nodes": jnp.where(send, jnp.asarray(nodes, jnp.int32), 0), "sent": send,
                   "active": active, "info": info}
            return c2, rec

        _, rec = jax.lax.scan(body, (env, obs, carry, ac, jnp.array(False)), jnp.arange(inst.max_steps))
        return rec

    def _chunk_instances(self, u):
        """Unit u's instances (padded to a chunk), its row range and split."""
        split = "test" if u < self.test_units else "val"
        n, insts = (self.E, self.inst.instances) if split == "test" else (self.V, self.inst.val_instances)
        u = u if split == "test" else u - self.test_units
        lo, hi = u * self.chunk, min((u + 1) * self.chunk, n)
        idx = np.minimum(np.arange(lo, lo + self.chunk), n - 1)
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[idx], insts), lo, hi, split

    # ---- the loop protocol ----------------------------------------------------
    def preflight(self):
        self._prepare()

    def init_state(self):
        self._prepare()
        es, cs, ub, db, ast = jax.device_get(self._setup_run(self.root))
        f = self._flops
        chunk = self._chunk_instances(0)[0]
        rec = jax.eval_shape(self._rollout, es, cs, ast, chunk, jax.random.split(self.root, self.chunk))
        T = self.inst.max_steps
        steps = {k: np.zeros((self.E, T), np.dtype(rec[k].dtype)) for k in STEP_KEYS}
        info = {k: np.zeros((self.E, T), np.dtype(v.dtype)) for k, v in rec["info"].items()}
        val = {"steps": {k: np.zeros((self.V, T), v.dtype) for k, v in steps.items()},
               "info": {k: np.zeros((self.V, T), v.dtype) for k, v in info.items()}}
        costs = {k: np.zeros((), np.int64) for k in COST_KEYS}
        setup = {"setup_edge_flops": f["edge_setup"].matmul, "setup_cloud_flops": f["cloud_setup"].matmul,
                 "setup_edge_flops_all": f["edge_setup"].total,
                 "setup_cloud_flops_all": f["cloud_setup"].total,
                 "setup_bytes_up": int(ub), "setup_bytes_down": int(db),
                 "messages": int(_has_leaves(self._shapes["uplink"])) + int(_has_leaves(self._shapes["package"]))}
        costs.update({k: np.int64(v) for k, v in setup.items()})
        state = {"edge": es, "cloud": cs, "steps": steps, "info": info, "costs": costs,
                 "setup": {k: np.int64(v) for k, v in setup.items()}}
        if self.team:
            state["agents"] = ast
        return {**state, "val": val} if self.V else state  # (a checkpoint holds no empty arrays)

    def _run_chunk(self, state, u):
        es, cs = state["edge"], state["cloud"]
        chunk, lo, hi, split = self._chunk_instances(u)
        root = self.root if split == "test" else jax.random.fold_in(self.root, 1 << 30)
        keys = jax.vmap(lambda i: jax.random.fold_in(root, i + 1))(jnp.arange(lo, lo + self.chunk))
        return jax.device_get(self._rollout(es, cs, state.get("agents", ()), chunk, keys)), lo, hi, split

    def run_unit(self, state, u):
        rec, lo, hi, split = self._run_chunk(state, u)
        n = hi - lo
        if split == "val":
            val = {g: {k: np.array(v) for k, v in state["val"][g].items()} for g in ("steps", "info")}
            for k in STEP_KEYS:
                val["steps"][k][lo:hi] = rec[k][:n]
            for k, v in rec["info"].items():
                val["info"][k][lo:hi] = v[:n]
            return {**state, "val": val}, {"val_episodes_done": hi}, True
        steps = {k: np.array(v) for k, v in state["steps"].items()}
        info = {k: np.array(v) for k, v in state["info"].items()}
        for k in STEP_KEYS:
            steps[k][lo:hi] = rec[k][:n]
        for k, v in rec["info"].items():
            info[k][lo:hi] = v[:n]
        f = self._flops
        act, sent = steps["active"][:hi], steps["sent"][:hi]
        n_act, n_sent = int(act.sum()), int(sent.sum())
        setup = state["setup"]
        costs = {
            "bytes_up": steps["bytes_up"][:hi].sum(), "bytes_down": steps["bytes_down"][:hi].sum(),
            "messages": 2 * n_sent + int(setup["messages"]), "peer_bytes": steps["peer_bytes"][:hi].sum(),
            "cloud_nodes": steps["nodes"][:hi].sum(),
            "edge_flops": hi * f["start"].matmul + n_act * (f["query"].matmul + f["act"].matmul),
            "edge_flops_all": hi * f["start"].total + n_act * (f["query"].total + f["act"].total),
            "cloud_flops": n_sent * f["reply"].matmul, "cloud_flops_all": n_sent * f["reply"].total,
            **{k: setup[k] for k in SETUP_KEYS},
        }
        costs = {k: np.int64(v) for k, v in costs.items()}
        ok = all(np.all(np.isfinite(v)) for v in info.values() if np.issubdtype(v.dtype, np.floating))
        return {**state, "steps": steps, "info": info, "costs": costs}, {"episodes_done": hi}, ok

    def is_eval_unit(self, u):
        return False

    def evaluate(self, state):
        return {}

    def edge_footprint(self, state) -> dict:
        """What one edge holds and computes. ``param_bytes``: its installed state
        plus the array constants of its per-episode programs (a table closed
        over is held too); ``flops_per_example``: matmul FLOPs of its heaviest
        step (the first: edge_start + edge_query + edge_act)."""
        self._prepare()
        es = self._shapes["es"] if state is None else state["edge"]
        consts, seen = 0, set()
        for fname, args in self._edge_args.items():
            for c in self.edge.program(fname, *args).closed.consts:
                if hasattr(c, "dtype") and id(c) not in seen:
                    seen.add(id(c))
                    consts += _nbytes(c)
        if self.team:  # a team's edge: its agents' states, and each agent's programs' constants
            consts += (self.team[0] * _nbytes(self._shapes["agents"]) if state is None  # one agent's
                       else _nbytes(state["agents"]))                                  # stacked
            for fname, (args, static) in self._agent_args.items():
                for c in self.agent.program(fname.split("[")[0], *args, **static).closed.consts:
                    if hasattr(c, "dtype") and id(c) not in seen:
                        seen.add(id(c))
                        consts += self.team[0] * _nbytes(c)
        f = self._flops
        return {"param_bytes": _nbytes(es) + consts,
                "flops_per_example": int(f["start"].matmul + f["query"].matmul + f["act"].matmul)}

    def trajectories(self, state, split: str = "test") -> dict:
        """Per-episode sums (and the per-step info) for the task's metrics_fn."""
        self._prepare()
        s, f = (state["steps"], self._flops) if split == "test" else (state["val"]["steps"], self._flops)
        info = state["info"] if split == "test" else state["val"]["info"]
        act, sent = s["active"], s["sent"]
        traj = {"steps": act.sum(1), "calls": sent.sum(1),
                "bytes_up": s["bytes_up"].sum(1), "bytes_down": s["bytes_down"].sum(1),
                "peer_bytes": s["peer_bytes"].sum(1), "cloud_nodes": s["nodes"].sum(1),
                "edge_flops": f["start"].matmul + act.sum(1) * (f["query"].matmul + f["act"].matmul),
                "cloud_flops": sent.sum(1) * f["reply"].matmul, "info": info,
                "active": act, "sent": sent}
        return traj

    def finish(self, state, rows):
        from lsbench.metering import profiles
        self._prepare()
        traj = self.trajectories(state)
        metrics = dict(self.inst.metrics_fn(traj, self.inst))
        s, f = state["steps"], self._flops
        log = {  # [steps, episodes], as the latency model expects turns x units
            "edge_flops": (s["active"] * (f["query"].matmul + f["act"].matmul)).T,
            "cloud_flops": (s["sent"] * f["reply"].matmul).T,
            "bytes_up": s["bytes_up"].T, "bytes_down": s["bytes_down"].T,
            "sent": s["sent"].T, "active": s["active"].T}
        derived = profiles.derived(log)
        costs = {k: int(v) for k, v in state["costs"].items()}
        out = {"metrics": metrics, "costs": costs, "derived": derived, "unit": "episode",
               "units": self.E, "cloud_kind": self.inst.cloud_kind}
        if self.V:
            out["validation"] = dict(self.inst.metrics_fn(self.trajectories(state, "val"), self.inst,
                                                          split="val"))
        return out
