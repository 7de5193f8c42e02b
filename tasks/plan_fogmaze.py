"""plan/fogmaze: a small edge agent walks a braided maze it sees through a
window; the cloud (an exact BFS solver over the full map) can tell it the way.

Fixed test mazes come from ``test_seed``; the edge policy (BC + DAgger from
the BFS expert, K ensemble members) trains on mazes from ``train_seed`` and is
cached under data_dir. Messages: up = the agent's position (2 uint8); down = k
actions, 2 bits each. Budget per episode: 2 x optimal length + 10 steps.

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

from lsbench import api
from lsbench.envs import episode_metrics, flat_rows, rollout
from lsbench.envs.fogmaze import FogMaze, expert_action, make_instance, nodes_expanded, plan
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
             log=print):
    """The PlanInstance of a planning task, given its env and instance sets.

    ``label(inst, env_state) -> expert action``; ``plan_fn(params, world, up, k)``
    is the exact solver's answer (the cloud view's ``Planner.plan``: any table it
    uses must be in its closure, so the guard knows it as a cloud asset);
    ``cloud_cost(world, up)`` its expanded nodes. ``learned`` (optional) replaces
    the solver by a learned cloud planner: ``{"model": ModelDef, "params", "plan":
    fn(params, world, up, k), "act": fn(params, obs) -> action}``; it is billed in
    FLOPs, not nodes."""
    c = spec.config
    hidden, K = tuple(c["edge_hidden"]), c["ensemble"]
    edge = policies.policy_def("edge", env.featurize, env.num_features, hidden)
    if edge.info["params"] > c["edge_param_cap"]:
        raise TaskError(f"{spec.name}: edge policy has {edge.info['params']} params, over the "
                        f"published cap {c['edge_param_cap']}; shrink edge_hidden")
    T = lambda insts: int(2 * np.max(insts["opt"]) + 10)
    apply = edge.apply

    def expert_rows():
        rec = rollout(env, train, T(train), lambda o, i, s: label(i, s), label)
        return jax.device_get(flat_rows(rec))

    def collect(params, key):  # one DAgger round: the learner drives, the expert labels
        idx = jax.random.choice(key, len(train["opt"]), (c["dagger_episodes"],), replace=False)
        sub = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[idx], train)
        act = lambda o, i, s: jnp.argmax(apply(params, o)).astype(jnp.int32)
        return flat_rows(rollout(env, sub, T(train), act, label))

    def train_fn():
        x, y, w = expert_rows()
        keep = w > 0
        ens = policies.bc_dagger(jax.random.PRNGKey(c["train_seed"]), edge, x[keep], y[keep], collect,
                                 members=K, rounds=c["dagger_rounds"], steps=c["train_steps"],
                                 batch=256, lr=3e-3, log=log)
        member0 = jax.tree_util.tree_map(lambda a: a[0], ens)
        # References on the test set: edge-only (greedy member 0) and the exact solver.
        greedy = lambda o, i, s: jnp.argmax(apply(member0, o)).astype(jnp.int32)
        cloud_pol = (lambda o, i, s: label(i, s)) if learned is None else \
            (lambda o, i, s: learned["act"](learned["params"], o))
        ref = [np.mean(jax.device_get(rollout(env, test, T(test), pol, label)["success"]))
               for pol in (greedy, cloud_pol)]
        # Calibration split (for learned routers): states the edge visits on other instances.
        cr = jax.device_get(rollout(env, calib, T(calib), greedy, label, keep_obs=True))
        act = cr["active"].reshape(-1)
        cal = {"obs": jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:])[act], cr["obs"]),
               "expert": cr["y"].reshape(-1)[act]}
        return {"edge": ens, "ref_success": np.array(ref, np.float64), "calib": cal}

    # Budgets do not change the policies: they stay out of the training recipe.
    recipe = {"task": spec.name, "version": spec.version,
              "config": {k: v for k, v in c.items() if k != "edge_budgets"},
              "model": "mlp", "hidden": hidden, "test": _hash(test), "calib": _hash(calib)}
    if learned is not None:
        recipe["cloud"] = learned["hash"]
    got, model_hash = cache.cached_params(data_dir, spec.name.replace("/", "-") + "-edge", recipe,
                                          train_fn, log=log)
    ens, cal = got["edge"], got["calib"]
    ref_edge, ref_cloud = (float(v) for v in got["ref_success"])
    member0 = jax.tree_util.tree_map(lambda a: a[0], ens)

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
                           progress=env.progress, encode_up=env.encode_up, num_actions=4)
    common = dict(task=spec.name, version=spec.version, track="plan", num_classes=4,
                  input_shape=(env.num_features,), models=models,
                  budgets={**budgets, "edge_param_cap": c["edge_param_cap"]}, env=plan_env,
                  plan_len=4 * -(-max_opt // 4), ensemble=K, max_steps=T(test))
    # The edge holds its policies; the planner (and a learned planner's params) and the
    # calibration split are the cloud's. The reference successes stay with the task's metrics.
    edge_view = api.PlanView(side="edge", params={"edge": member0, "edge_ensemble": ens}, **common)
    cloud_view = api.PlanView(side="cloud", params=cloud_params, planner=planner, calib=cal, **common)

    def metrics_fn(traj, inst):
        m = episode_metrics(traj, inst.instances["opt"], (ref_edge, ref_cloud))
        m["opt_len"] = float(np.mean(inst.instances["opt"]))
        return m

    log(f"{spec.name}: edge {edge.info['params']} params x{K}; reference success "
        f"edge-only {ref_edge:.3f}, cloud-only ({planner.kind}) {ref_cloud:.3f}")
    return PlanInstance(edge_view=edge_view, cloud_view=cloud_view, instances=test,
                        num_episodes=len(test["opt"]), max_steps=T(test), reset=env.reset, step=env.step,
                        metrics_fn=metrics_fn, cloud_kind=planner.kind, cloud_cost=cloud_cost,
                        hashes={"data": _hash(test), "train_data": _hash(train), "edge_model": model_hash},
                        edge_budgets=budgets)


def build(spec, data_dir, seed):
    c = spec.config
    n = c["n"]
    if n < 3 or n > 20:
        raise TaskError(f"{spec.name}: maze size n={n} out of range; use 3 <= n <= 20")
    env = FogMaze(n, c["view_radius"], c["clip"])
    mk = jax.jit(jax.vmap(lambda k: make_instance(k, n, c["braid"], c["min_dist"])))
    sets = {}
    for name, s, m in (("test", c["test_seed"], c["episodes"]), ("train", c["train_seed"], c["train_mazes"]),
                       ("calib", c["train_seed"] + 1, c["calib_mazes"])):
        sets[name] = _batched(mk, jax.random.split(jax.random.PRNGKey(s), m))
    label = lambda inst, s: expert_action(inst["dist"], s["pos"])
    return assemble(spec, data_dir, env, sets["test"], sets["train"], sets["calib"], label,
                    plan_fn=lambda params, world, up, k: plan(world["dist"], up["pos"].astype(jnp.int32), k),
                    cloud_cost=lambda world, up: nodes_expanded(world["dist"], up["pos"].astype(jnp.int32)))


_BASE = {"family": "plan", "env": "fogmaze", "view_radius": 2, "clip": 3, "braid": 0.15,
         "edge_hidden": [64, 64], "edge_param_cap": 50_000, "ensemble": 3, "dagger_rounds": 3,
         "test_seed": 1_000, "train_seed": 2_000,
         "edge_budgets": {"param_bytes": 4 * 3 * 50_000, "flops_per_example": 2 * 3 * 50_000}}

TASK = TaskSpec(
    name="plan/fogmaze", version="2", track="plan", tier="default", primary_metric="success",
    description="Braided 8x8 maze (17x17 grid); the edge sees a 5x5 window and a clipped goal vector, "
                "the cloud (exact BFS solver) the map. 1000 fixed test mazes.",
    config={**_BASE, "n": 8, "min_dist": 16, "episodes": 1000, "train_mazes": 2048, "calib_mazes": 256,
            "dagger_episodes": 512, "train_steps": 3000},
    builder=build)

SMALL = TaskSpec(
    name="plan/fogmaze-small", version="2", track="plan", tier="small", primary_metric="success",
    description="CI tier of plan/fogmaze: braided 6x6 maze (13x13 grid), 256 test mazes.",
    config={**_BASE, "n": 6, "min_dist": 12, "episodes": 256, "train_mazes": 768, "calib_mazes": 128,
            "dagger_episodes": 256, "train_steps": 1500},
    builder=build)
