"""plan/fogmaze: a small edge agent walks a braided maze it sees through a
window; the cloud (an exact BFS solver over the full map) can tell it the way.

Fixed test mazes come from ``test_seed``; the edge policy (BC + DAgger from
the BFS expert, K ensemble members) trains on mazes from ``train_seed`` and is
cached under data_dir. Messages: up = the agent's position (2 uint8); down = k
actions, 2 bits each. Budget per episode: 2 x optimal length + 10 steps.

``assemble`` is shared with plan/slidingtile: it trains/loads the policies,
measures edge-only and cloud-only success on the test set (for
``gap_recovered``), builds the calibration split and the TaskContext.
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


def _batched(fn, keys, chunk=512):
    f = jax.jit(jax.vmap(fn))
    parts = [jax.device_get(f(keys[i:i + chunk])) for i in range(0, len(keys), chunk)]
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a), *parts)


def assemble(spec, data_dir, env, test, train, calib, label, cloud_plan, cloud_cost, learned=None,
             log=print):
    """The PlanInstance of a planning task, given its env and instance sets.

    ``label(inst, env_state) -> expert action``; ``cloud_plan(world, up, k)``
    is the exact solver's answer; ``cloud_cost(world, up)`` its expanded nodes.
    ``learned`` (optional) replaces the solver by a learned cloud planner:
    ``{"model": ModelDef, "params", "plan": fn(params, world, up, k), "act":
    fn(params, obs) -> action}``; it is billed in FLOPs, not nodes."""
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

    recipe = {"task": spec.name, "version": spec.version, "config": {k: v for k, v in c.items()},
              "model": "mlp", "hidden": hidden, "test": _hash(test), "calib": _hash(calib)}
    if learned is not None:
        recipe["cloud"] = learned["hash"]
    got, model_hash = cache.cached_params(data_dir, spec.name.replace("/", "-") + "-edge", recipe,
                                          train_fn, log=log)
    ens, cal = got["edge"], got["calib"]
    ref_edge, ref_cloud = (float(v) for v in got["ref_success"])
    member0 = jax.tree_util.tree_map(lambda a: a[0], ens)

    max_opt = int(np.max(test["opt"]))
    models, params = {"edge": edge}, {"edge": member0, "edge_ensemble": ens}
    kind, plan_fn = "solver", (lambda cs, world, up, k: cloud_plan(world, up, k))
    if learned is not None:
        kind, plan_fn, cloud_cost = "learned", learned["plan"], None
        models["cloud"], params["cloud"] = learned["model"], learned["params"]
    ctx = api.TaskContext(
        task=spec.name, version=spec.version, track="plan", num_classes=4,
        input_shape=(env.num_features,), models=models, params=params,
        budgets={"max_steps": T(test), "edge_param_cap": c["edge_param_cap"]},
        extras={"cloud": kind, "plan": plan_fn,
                "encode_up": env.encode_up, "featurize": env.featurize, "valid": env.valid,
                "state_key": env.state_key, "progress": env.progress, "calib": cal,
                "ref_success": {"edge-only": ref_edge, "cloud-only": ref_cloud},
                "plan_len": 4 * -(-max_opt // 4), "ensemble": K, "num_actions": 4})

    def metrics_fn(traj, inst):
        m = episode_metrics(traj, inst.instances["opt"], (ref_edge, ref_cloud))
        m["opt_len"] = float(np.mean(inst.instances["opt"]))
        return m

    log(f"{spec.name}: edge {edge.info['params']} params x{K}; reference success "
        f"edge-only {ref_edge:.3f}, cloud-only ({kind}) {ref_cloud:.3f}")
    return PlanInstance(ctx=ctx, instances=test, num_episodes=len(test["opt"]), max_steps=T(test),
                        reset=env.reset, step=env.step, metrics_fn=metrics_fn, cloud_kind=kind,
                        cloud_cost=cloud_cost,
                        hashes={"data": _hash(test), "train_data": _hash(train), "edge_model": model_hash})


def build(spec, data_dir, seed):
    c = spec.config
    n = c["n"]
    if n < 3 or n > 20:
        raise TaskError(f"{spec.name}: maze size n={n} out of range; use 3 <= n <= 20")
    env = FogMaze(n, c["view_radius"], c["clip"])
    mk = lambda k: make_instance(k, n, c["braid"], c["min_dist"])
    sets = {}
    for name, s, m in (("test", c["test_seed"], c["episodes"]), ("train", c["train_seed"], c["train_mazes"]),
                       ("calib", c["train_seed"] + 1, c["calib_mazes"])):
        sets[name] = _batched(mk, jax.random.split(jax.random.PRNGKey(s), m))
    label = lambda inst, s: expert_action(inst["dist"], s["pos"])
    return assemble(spec, data_dir, env, sets["test"], sets["train"], sets["calib"], label,
                    cloud_plan=lambda world, up, k: plan(world["dist"], up["pos"].astype(jnp.int32), k),
                    cloud_cost=lambda world, up: nodes_expanded(world["dist"], up["pos"].astype(jnp.int32)))


_BASE = {"family": "plan", "env": "fogmaze", "view_radius": 2, "clip": 3, "braid": 0.15,
         "edge_hidden": [64, 64], "edge_param_cap": 50_000, "ensemble": 3, "dagger_rounds": 3,
         "test_seed": 1_000, "train_seed": 2_000}

TASK = TaskSpec(
    name="plan/fogmaze", version="1", track="plan", tier="default", primary_metric="success",
    description="Braided 8x8 maze (17x17 grid); the edge sees a 5x5 window and a clipped goal vector, "
                "the cloud (exact BFS solver) the map. 1000 fixed test mazes.",
    config={**_BASE, "n": 8, "min_dist": 16, "episodes": 1000, "train_mazes": 2048, "calib_mazes": 256,
            "dagger_episodes": 512, "train_steps": 3000},
    builder=build)

SMALL = TaskSpec(
    name="plan/fogmaze-small", version="1", track="plan", tier="small", primary_metric="success",
    description="CI tier of plan/fogmaze: braided 6x6 maze (13x13 grid), 256 test mazes.",
    config={**_BASE, "n": 6, "min_dist": 12, "episodes": 256, "train_mazes": 768, "calib_mazes": 128,
            "dagger_episodes": 256, "train_steps": 1500},
    builder=build)
