"""plan/fogmaze: a small edge agent walks a braided maze it sees through a
window; the cloud knows the published map and can tell it the way.

v3: the maze changes under the plan. Actions slip (p = ``slip``) and ``doors``
passages shut on hidden schedules (``lsbench.envs.fogmaze``); the cloud's
``world`` is the published map and the goal (not the start, not the doors), so
the edge must send its state: up = its position (2 uint8) and its window as
bits (4 bytes for 5x5). The cloud's planner is a metered wavefront (``sweeps``
3x3 convolutions over the published map with the reported window overlaid,
``2 sweeps (3G - 2)^2`` matmul FLOPs per answer); down = k actions, 2 bits
each. Budget per episode: ``budget`` = (a, b): floor(a x optimal length) + b
steps. Fixed test mazes come from ``test_seed``, validation mazes from
``val_seed`` (disjoint); the edge policy (BC + DAgger from the published map's
BFS expert, K ensemble members) trains on mazes from ``train_seed`` (episodes
of 2 x opt + 10 steps, whatever the task's budget) and is cached under data_dir.

Variants (same mazes; not registered, run as ``tasks.plan_fogmaze:NAME``):
``GRU`` / ``GRU_SMALL``, an edge policy with memory (``edge_model="gru"``:
Dense -> GRU -> head, ``lsbench.models.policies.recurrent_def``) trained by BC
+ DAgger on whole episodes (backpropagation through time), its state in the
method's episode carry and its FLOPs metered per step; ``LEARNED`` /
``LEARNED_SMALL``, a second cloud: a learned planner (a value iteration
network) instead of the wavefront solver.

``assemble`` is shared with plan/slidingtile: it trains/loads the policies,
measures edge-only and cloud-only success on the test set (for the task's
``gap_recovered`` metric; methods never see them), builds the calibration
split and the two views: the edge's (its policies) and the cloud's (the
planner and the calibration split).

Edge budgets (``config["edge_budgets"]``, v2): ``param_bytes`` = K policies at
the published parameter cap in float32 (4 x K x cap), ``flops_per_example`` =
one forward pass of each of K cap-sized policies per step (2 x K x cap matmul
FLOPs); every baseline, the K-member ensemble included, fits.
"""
from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsbench import api
from lsbench.envs import DIRS, episode_metrics, flat_rows, rollout
from lsbench.envs.fogmaze import (FogMaze, expert_action, known_map, make_instance, nodes_expanded, vin_init,
                                  vin_logits, vin_plan, vin_q)
from lsbench.models import cache, policies
from lsbench.task import PlanInstance, TaskError, TaskSpec


def _hash(tree) -> str:
    h = hashlib.sha256()
    for a in jax.tree_util.tree_leaves(tree):
        h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    return h.hexdigest()[:16]


def _batched(f, keys, *args, chunk=512):
    """``f(keys[i:i + chunk], *args)`` over all keys, in chunks of one fixed size (the
    last padded and cut), so a jitted, vmapped ``f`` compiles once for every set."""
    n = len(keys)
    pad = -n % chunk
    if pad:
        keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], pad, 0)])
    parts = [jax.device_get(f(keys[i:i + chunk], *args)) for i in range(0, len(keys), chunk)]
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a)[:n], *parts)


def assemble(spec, data_dir, env, test, train, calib, label, plan_fn, cloud_cost, learned=None,
             val=None, train_env=None, log=print):
    """The PlanInstance of a planning task, given its env and instance sets.

    ``label(inst, env_state) -> expert action`` (the published map's expert: the
    edge policy's teacher); ``plan_fn(params, world, up, k)`` is the cloud
    planner's answer (the cloud view's ``Planner.plan``: any table it uses must be
    in its closure, so the guard knows it as a cloud asset); ``cloud_cost(world,
    up)`` its expanded nodes (a secondary metric). ``learned`` (optional) replaces
    the planner by a learned one: ``{"model": ModelDef, "params", "plan":
    fn(params, world, up, k), "act": fn(params, obs) -> action}``. ``val``: the
    validation instances (disjoint from test; same metrics, ``split="val"``). ``train_env``
    (optional): the env the policies train and the calibration split is drawn in (e.g. a
    longer episode budget than the task's); the task's ``budget`` then stays out of the
    training recipe."""
    c = spec.config
    hidden, K = tuple(c["edge_hidden"]), c["ensemble"]
    gru = c.get("edge_model", "mlp") == "gru"
    edge = (policies.recurrent_def if gru else policies.policy_def)("edge", env.featurize, env.num_features,
                                                                     hidden)
    if edge.info["params"] > c["edge_param_cap"]:
        raise TaskError(f"{spec.name}: edge policy has {edge.info['params']} params, over the "
                        f"published cap {c['edge_param_cap']}; shrink edge_hidden")
    T = lambda insts: int(2 * np.max(insts["opt"]) + 10)
    val = test if val is None else val
    T_run = max(T(test), T(val))

    tenv = env if train_env is None else train_env

    def run_policy(params, insts, T_, keep_obs=False, in_env=env):
        """The edge policy (greedy, its memory carried along) on ``insts``."""
        def act(o, i, s, m):
            logits, m = policies.policy_step(edge, params, m, o)
            return jnp.argmax(logits).astype(jnp.int32), m
        return rollout(in_env, insts, T_, act, label, keep_obs, memory=policies.init_memory(edge))

    def rows(rec):  # a GRU trains on whole episodes, an MLP on rows
        return (rec["x"], rec["y"], rec["active"].astype(jnp.float32)) if gru else flat_rows(rec)

    def collect(params, key):  # one DAgger round: the learner drives, the expert labels
        idx = jax.random.choice(key, len(train["opt"]), (c["dagger_episodes"],), replace=False)
        sub = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[idx], train)
        return rows(run_policy(params, sub, T(train), in_env=tenv))

    def train_fn():
        x, y, w = jax.device_get(rows(rollout(tenv, train, T(train), lambda o, i, s: label(i, s), label)))
        if gru:
            fit = dict(w0=w, batch=c["seq_batch"])
        else:
            keep = w > 0
            x, y, fit = x[keep], y[keep], dict(batch=256)
        ens = policies.bc_dagger(jax.random.PRNGKey(c["train_seed"]), edge, x, y, collect,
                                 members=K, rounds=c["dagger_rounds"], steps=c["train_steps"],
                                 lr=3e-3, log=log, **fit)
        member0 = jax.tree_util.tree_map(lambda a: a[0], ens)
        # Calibration split (for learned routers): states the edge visits on other instances
        # (with its memory there, for a policy that has one).
        cr = jax.device_get(run_policy(member0, calib, T(calib), keep_obs=True, in_env=tenv))
        act = cr["active"].reshape(-1)
        flat = lambda a: a.reshape((-1,) + a.shape[2:])[act]
        cal = {"obs": jax.tree_util.tree_map(flat, cr["obs"]), "expert": cr["y"].reshape(-1)[act]}
        if gru:
            cal["mem"] = flat(cr["mem"])
        return {"edge": ens, "calib": cal}

    # Budgets do not change the policies: they stay out of the training recipe.
    cfg = {k: v for k, v in c.items() if k not in ("edge_budgets", "episodes", "val_episodes", "sweeps")
           and not (k == "budget" and train_env is not None)}
    # ``edge_of``: a variant (another cloud) that shares a tier's edge policy and its cache.
    edge_name, edge_version = c.get("edge_of", spec.name), c.get("edge_version", spec.version)
    if "edge_of" in c:
        cfg = {k: v for k, v in cfg.items()
               if k not in ("edge_of", "edge_version", "cloud") and not k.startswith("cloud_")}
    recipe = {"task": edge_name, "version": edge_version, "config": cfg,
              "model": edge.info["kind"], "hidden": hidden, "calib": _hash(calib)}
    if learned is not None and "edge_of" not in c:
        recipe["cloud"] = learned["hash"]
    got, model_hash = cache.cached_params(data_dir, edge_name.replace("/", "-") + "-edge", recipe,
                                          train_fn, log=log)
    ens, cal = got["edge"], got["calib"]
    member0 = jax.tree_util.tree_map(lambda a: a[0], ens)
    planner_params = {} if learned is None else learned["params"]

    def refs_fn():
        """References on test and validation: edge-only (greedy member 0) and cloud-only
        (the cloud's planner asked every step, on the world and uplink the loop gives it)."""
        cloud_pol = lambda o, i, s: plan_fn(planner_params, env.reset(i)[2], env.encode_up(o), 1)[0] \
            if learned is None else learned["plan"](planner_params, env.reset(i)[2], env.encode_up(o), 1)[0]
        out = {}
        for name, insts in (("test", test), ("val", val)):
            out[name] = np.array([np.mean(jax.device_get(run_policy(member0, insts, T_run)["success"])),
                                  np.mean(jax.device_get(rollout(env, insts, T_run, cloud_pol, label)["success"]))],
                                 np.float64)
        return out

    refs, _ = cache.cached_params(data_dir, spec.name.replace("/", "-") + "-refs",
                                  {"model": model_hash, "config": dict(c), "test": _hash(test),
                                   "val": _hash(val), "T": T_run, "version": spec.version},
                                  refs_fn, log=log)
    ref = {k: tuple(float(x) for x in v) for k, v in refs.items()}

    max_opt = int(np.max(test["opt"]))
    models = {"edge": edge}
    if learned is None:
        planner = api.Planner(plan=plan_fn, kind="solver")
        cloud_params = {}
    else:
        planner = api.Planner(plan=learned["plan"], kind="learned", params=learned["params"])
        models["cloud"], cloud_params, cloud_cost = learned["model"], {"cloud": learned["params"]}, None
    budgets = dict(c["edge_budgets"])
    plan_env = api.PlanEnv(featurize=env.featurize, valid=env.valid, state_key=env.state_key,
                           progress=env.progress, encode_up=env.encode_up, num_actions=4,
                           expect=env.expect)
    common = dict(task=spec.name, version=spec.version, track="plan", num_classes=4,
                  input_shape=(env.num_features,), models=models,
                  budgets={**budgets, "edge_param_cap": c["edge_param_cap"]}, env=plan_env,
                  plan_len=4 * -(-max_opt // 4), ensemble=K, max_steps=T_run)
    # The edge holds its policies; the planner (and a learned planner's params) and the
    # calibration split are the cloud's. The reference successes stay with the task's metrics.
    edge_view = api.PlanView(side="edge", params={"edge": member0, "edge_ensemble": ens}, **common)
    cloud_view = api.PlanView(side="cloud", params=cloud_params, planner=planner, calib=cal, **common)

    def metrics_fn(traj, inst, split="test"):
        insts = inst.instances if split == "test" else inst.val_instances
        m = episode_metrics(traj, insts["opt"], ref[split])
        m["opt_len"] = float(np.mean(insts["opt"]))
        return m

    log(f"{spec.name}: edge {edge.info['params']} params x{K}; reference success (test) "
        f"edge-only {ref['test'][0]:.3f}, cloud-only ({planner.kind}) {ref['test'][1]:.3f}")
    return PlanInstance(edge_view=edge_view, cloud_view=cloud_view, instances=test,
                        num_episodes=len(test["opt"]), max_steps=T_run, reset=env.reset, step=env.step,
                        metrics_fn=metrics_fn, cloud_kind=planner.kind, cloud_cost=cloud_cost,
                        hashes={"data": _hash(test), "val_data": _hash(val), "train_data": _hash(train),
                                "edge_model": model_hash},
                        edge_budgets=budgets, val_instances=val, num_val=len(val["opt"]))


def disjoint(a, b, key):
    """``b`` without the instances whose ``key`` array equals one of ``a``'s (so validation
    never repeats a test instance)."""
    seen = {np.asarray(x).tobytes() for x in a[key]}
    keep = np.array([np.asarray(x).tobytes() not in seen for x in b[key]])
    return {k: v[keep] for k, v in b.items()}


def learned_cloud(spec, data_dir, env, train, val, log=print):
    """The learned cloud planner: a value iteration network (``lsbench.envs.fogmaze.vin_*``)
    trained on the published maps of the training mazes, with the BFS expert's action as
    the label at every free cell. ``cloud_seeds`` candidates (init and batch seeds) train
    alike; the one whose plans reach the goal most often on the VALIDATION mazes (greedy
    walk from the start on the published map; ties: the lower seed) is the cloud. Its
    answer walks its own greedy actions on the known map (the published map with the
    reported window overlaid); billed in FLOPs (``vin_flops``)."""
    c = spec.config
    ch, sweeps, G = c["cloud_channels"], env.sweeps, env.G
    cells = jnp.asarray(np.indices((G, G)).reshape(2, -1).T, jnp.int32)
    steps = c["cloud_train_steps"]

    def labels(dist, free):
        y = jax.vmap(lambda p: expert_action(dist, p))(cells).reshape(G, G)
        return y, (free & (dist > 0)).astype(jnp.float32)

    def plan_success(p, insts):
        """Share of mazes whose VIN plan, walked from the start on the published map, reaches the goal."""
        f, g, s0 = (jnp.asarray(insts[k]) for k in ("free", "goal", "start"))
        T = int(2 * np.max(insts["opt"]) + 10)
        acts = jax.vmap(lambda f, g, s: vin_plan(p, f, g, s, T, sweeps))(f, g, s0)

        def walk(f, g, s, a):
            def body(pos, x):
                nxt = pos + jnp.asarray(DIRS)[x]
                pos = jnp.where(f[nxt[0], nxt[1]], nxt, pos)
                return pos, jnp.all(pos == g)
            return jax.lax.scan(body, s, a)[1].any()
        return jnp.mean(jax.vmap(walk)(f, g, s0, acts))

    def train_fn(stats):
        y, w = jax.jit(jax.vmap(labels))(jnp.asarray(train["dist"]), jnp.asarray(train["free"]))
        free, goal, n = jnp.asarray(train["free"]), jnp.asarray(train["goal"]), len(train["opt"])
        lr = optax.warmup_cosine_decay_schedule(c["cloud_lr"] / 10, c["cloud_lr"], steps // 10, steps,
                                                c["cloud_lr"] / 20)
        opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))

        def loss_fn(p, idx):
            lg = jax.vmap(lambda f, g: vin_logits(p, vin_q(p, f, g, sweeps)))(free[idx], goal[idx])
            ce = optax.softmax_cross_entropy_with_integer_labels(lg, y[idx])
            return jnp.sum(ce * w[idx]) / jnp.sum(w[idx])

        def step(st, k):
            p, s = st
            g = jax.grad(loss_fn)(p, jax.random.randint(k, (c["cloud_batch"],), 0, n))
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        fit = jax.jit(lambda p, keys: jax.lax.scan(step, (p, opt.init(p)), keys)[0][0])
        score = jax.jit(lambda p: plan_success(p, val))
        best, scores = None, []
        for i in range(c["cloud_seeds"]):
            s = c["train_seed"] + 7 + 100 * i
            p = fit(vin_init(jax.random.PRNGKey(s), ch, c["cloud_tap"]),
                    jax.random.split(jax.random.PRNGKey(s + 1), steps))
            scores.append(float(score(p)))
            log(f"{spec.name}: VIN candidate {i}: validation plan success {scores[-1]:.3f}")
            if best is None or scores[-1] > max(scores[:-1]):
                best = p
        stats.update(steps=steps * c["cloud_seeds"], val_plan_success=scores, picked=int(np.argmax(scores)))
        return {"cloud": jax.tree_util.tree_map(np.asarray, best)}

    recipe = {"task": spec.name, "version": spec.version, "role": "cloud", "model": "vin",
              "config": {k: v for k, v in c.items() if k != "edge_budgets"}}
    got, h = cache.cached_params(data_dir, spec.name.replace("/", "-") + "-cloud", recipe, train_fn, log=log)
    params = got["cloud"]
    r = env.r

    def plan(cs, world, up, k):
        pos = up["pos"].astype(jnp.int32)
        view = jnp.unpackbits(up["view"])[:env.view_size]
        free = known_map(world["free"].astype(bool), pos, view, r)
        return vin_plan(cs, free, world["goal"].astype(jnp.int32), pos, k, sweeps)

    n_par = int(sum(np.size(a) for a in jax.tree_util.tree_leaves(params)))
    model = api.ModelDef(name="cloud", init=lambda rng: vin_init(rng, ch, c["cloud_tap"]),
                         apply=lambda p, w: vin_logits(p, vin_q(p, w["free"], w["goal"], sweeps)),
                         info={"kind": "vin", "channels": ch, "sweeps": sweeps, "params": n_par})
    log(f"{spec.name}: learned cloud (VIN, {ch} channels, {sweeps} sweeps) {n_par} params")
    return {"model": model, "params": params, "plan": plan, "hash": h}


def build(spec, data_dir, seed):
    c = spec.config
    n = c["n"]
    if n < 3 or n > 20:
        raise TaskError(f"{spec.name}: maze size n={n} out of range; use 3 <= n <= 20")
    if not 0.0 <= c["slip"] < 0.75:
        raise TaskError(f"{spec.name}: slip={c['slip']} out of range; use 0 <= slip < 0.75")
    env = FogMaze(n, c["view_radius"], c["clip"], c["slip"], c["sweeps"], c.get("budget", (2, 10)))
    # A task with its own budget trains in episodes of 2 opt + 10 (the budget stays out of the recipe).
    train_env = FogMaze(n, c["view_radius"], c["clip"], c["slip"], c["sweeps"]) if "budget" in c else None
    mk = jax.jit(jax.vmap(lambda k: make_instance(k, n, c["braid"], c["min_dist"], c["doors"])))
    sets = {}
    for name, s, m in (("test", c["test_seed"], c["episodes"]), ("train", c["train_seed"], c["train_mazes"]),
                       ("calib", c["train_seed"] + 1, c["calib_mazes"]),
                       ("val", c["val_seed"], c["val_episodes"])):
        sets[name] = _batched(mk, jax.random.split(jax.random.PRNGKey(s), m))
    label = lambda inst, s: expert_action(inst["dist"], s["pos"])
    val = disjoint(sets["test"], sets["val"], "free")
    learned = learned_cloud(spec, data_dir, env, sets["train"], val) if c.get("cloud") == "learned" else None
    return assemble(spec, data_dir, env, sets["test"], sets["train"], sets["calib"], label,
                    plan_fn=lambda params, world, up, k: env.plan(world, up, k),
                    cloud_cost=lambda world, up: nodes_expanded(world["free"]), learned=learned,
                    val=val, train_env=train_env)


# v3: slips and doors on hidden schedules; the cloud knows the published map and the goal,
# and plans by a metered wavefront (``sweeps`` conv sweeps) over it plus the reported window.
_BASE = {"family": "plan", "env": "fogmaze", "view_radius": 2, "clip": 3, "braid": 0.15,
         "edge_hidden": [64, 64], "edge_param_cap": 50_000, "ensemble": 3, "dagger_rounds": 3,
         "test_seed": 1_000, "train_seed": 2_000, "val_seed": 5_000, "slip": 0.1, "doors": 8,
         "edge_budgets": {"param_bytes": 4 * 3 * 50_000, "flops_per_example": 2 * 3 * 50_000}}

TASK = TaskSpec(
    name="plan/fogmaze", version="3", track="plan", tier="default", primary_metric="success",
    description="Braided 8x8 maze (17x17 grid) with slips (p=0.1) and 8 doors on hidden schedules; the "
                "edge sees a 5x5 window and a clipped goal vector, the cloud the published map (metered "
                "wavefront planner). 1000 test mazes, 500 validation mazes.",
    # sweeps: the wavefront's reach; the farthest cell of the 1000 test mazes is 60 steps from its goal
    config={**_BASE, "n": 8, "min_dist": 16, "sweeps": 80, "episodes": 1000, "val_episodes": 500,
            "train_mazes": 2048,
            "calib_mazes": 256, "dagger_episodes": 512, "train_steps": 3000},
    builder=build)

SMALL = TaskSpec(
    name="plan/fogmaze-small", version="3", track="plan", tier="small", primary_metric="success",
    description="CI tier of plan/fogmaze: braided 6x6 maze (13x13 grid), 6 doors, 256 test and 128 "
                "validation mazes.",
    config={**_BASE, "n": 6, "min_dist": 12, "doors": 6, "sweeps": 60, "episodes": 256, "val_episodes": 128,
            "train_mazes": 768, "calib_mazes": 128, "dagger_episodes": 256, "train_steps": 1500},
    builder=build)

# The same mazes with an edge policy that has memory (a GRU 16: Dense 16 -> GRU 16 -> head, 2,308
# params; BC + one DAgger round on whole episodes). It alone solves about half the default tier's
# mazes (edge-only 0.510 on test at 2 opt + 10; on validation no episode budget on the grid
# a in {1.25..2}, b in {0..12} gets edge-only <= 40% with cloud-only >= 95% (README)), so it does
# not replace the calibrated tiers' MLP edge. Not registered as entry points: run them as
# --task=tasks.plan_fogmaze:GRU (or :GRU_SMALL).
_GRU = {"edge_model": "gru", "edge_hidden": [16, 16], "seq_batch": 32, "budget": [2, 10], "dagger_rounds": 1}
GRU = TaskSpec(
    name="plan/fogmaze-gru", version="1", track="plan", tier="default", primary_metric="success",
    description="plan/fogmaze with a GRU edge policy (memory; 2,308 params x 3 members).",
    config={**TASK.config, **_GRU, "train_steps": 1500}, builder=build)

GRU_SMALL = TaskSpec(
    name="plan/fogmaze-gru-small", version="1", track="plan", tier="small", primary_metric="success",
    description="plan/fogmaze-small with a GRU edge policy (memory).",
    config={**SMALL.config, **_GRU, "train_steps": 800}, builder=build)

# The same mazes with a learned cloud planner (a value iteration network, BC on the BFS expert's
# actions at every cell; billed in FLOPs) instead of the wavefront solver; the edge is the tier's
# (shared cache: ``edge_of`` names the tier, ``edge_version`` its version). Not registered as entry
# points: run them as --task=tasks.plan_fogmaze:LEARNED (or :LEARNED_SMALL). Results carry
# cloud_kind="learned"; never rank them against the solver cloud.
# v4 (recipe "vin2"): V taps start sharper (softmax logit 8, was 4), a warmup-cosine learning rate,
# more steps, and ``cloud_seeds`` candidates picked on the validation mazes (v3's single seed
# solved 0.203 of fogmaze-small asked every step).
_VIN = {"cloud": "learned", "cloud_recipe": "vin2", "cloud_channels": 8, "cloud_batch": 16, "cloud_lr": 1e-2,
        "cloud_tap": 8.0, "cloud_seeds": 2}
LEARNED = TaskSpec(
    name="plan/fogmaze-learned", version="4", track="plan", tier="default", primary_metric="success",
    description="plan/fogmaze with a learned cloud planner (value iteration network, 8 channels, 80 sweeps).",
    config={**TASK.config, **_VIN, "edge_of": "plan/fogmaze", "edge_version": TASK.version,
            "cloud_train_steps": 2000, "cloud_batch": 8},
    builder=build)

LEARNED_SMALL = TaskSpec(
    name="plan/fogmaze-learned-small", version="4", track="plan", tier="small", primary_metric="success",
    description="plan/fogmaze-small with the learned (VIN) cloud planner.",
    config={**SMALL.config, **_VIN, "edge_of": "plan/fogmaze-small", "edge_version": SMALL.version,
            "cloud_train_steps": 2000},
    builder=build)
