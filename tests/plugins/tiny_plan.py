"""A tiny planning task for harness tests: a 1-D corridor.

The edge sees its position only; the cloud sees the goal (the world) through
its planner. One cloud answer (the direction, 1 byte) is enough to reach the goal.
"""
import jax
import jax.numpy as jnp
import numpy as np

from lsbench import api
from lsbench.task import PlanInstance, TaskSpec

L = 16


def reset(inst):
    start, goal = inst[0], inst[1]
    env = {"p": start, "g": goal, "t": jnp.int32(0), "budget": jnp.abs(goal - start) * 2 + 4}
    return env, {"p": start}, {"g": goal}


def step(env, action):
    p = jnp.clip(env["p"] + jnp.where(action == 1, 1, -1), 0, L - 1)
    t = env["t"] + 1
    success = p == env["g"]
    done = success | (t >= env["budget"])
    return dict(env, p=p, t=t), {"p": p}, done, {"success": success}


def build(spec, data_dir, seed):
    rng = np.random.default_rng(5)
    n = spec.config["episodes"]
    inst = np.stack([rng.integers(0, L, n), rng.integers(0, L, n)], 1).astype(np.int32)
    inst[inst[:, 0] == inst[:, 1], 1] = (inst[inst[:, 0] == inst[:, 1], 0] + 3) % L

    def metrics_fn(traj, inst):
        succ = traj["info"]["success"].any(1)
        return {"success": float(succ.mean()), "calls_per_episode": float(traj["calls"].mean())}
    env = api.PlanEnv(featurize=lambda obs: jnp.asarray(obs["p"], jnp.float32)[None],
                      valid=lambda obs, a: jnp.array(True), state_key=lambda obs: obs["p"],
                      progress=lambda obs: jnp.int32(0),
                      encode_up=lambda obs: {"p": obs["p"].astype(jnp.uint8)}, num_actions=2)
    planner = api.Planner(plan=lambda params, world, up, k: jnp.full((k,), world["g"] > up["p"], jnp.int32))
    common = dict(task=spec.name, version=spec.version, track="plan", num_classes=2, input_shape=(1,),
                  models={}, env=env, plan_len=1, max_steps=2 * L + 4)
    return PlanInstance(edge_view=api.PlanView(side="edge", **common),
                        cloud_view=api.PlanView(side="cloud", planner=planner, **common),
                        instances=inst, num_episodes=n, max_steps=2 * L + 4, reset=reset,
                        step=step, metrics_fn=metrics_fn, cloud_kind="solver",
                        cloud_cost=lambda world, up: jnp.int32(1), hashes={"data": "corridor-v1"},
                        edge_budgets={"param_bytes": 1024, "flops_per_example": 1024})


TASK = TaskSpec(name="test/tiny-plan", version="1", track="plan", description="1-D corridor",
                primary_metric="success", config={"episodes": 300}, builder=build)


class AskOnce(api.PlanMethod):
    manifest = api.Manifest(name="ask-once", tracks=("plan",))
    default_hparams = {"ask": True}

    def edge_start(self, es, obs):
        return {"dir": jnp.int32(1), "asked": jnp.array(False)}

    def edge_query(self, es, carry, obs, rng):
        send = ~carry["asked"] & self.hp["ask"]
        return api.Query(dict(carry, asked=jnp.array(True)), self.view.env.encode_up(obs), send)

    def cloud_reply(self, cs, world, uplink, rng):
        planner = self.view.planner
        return {"dir": planner.plan(planner.params, world, uplink, 1)[0].astype(jnp.uint8)}

    def edge_act(self, es, carry, obs, inbox, rng):
        d = jnp.where(inbox.got, inbox.msg["dir"].astype(jnp.int32), carry["dir"])
        return dict(carry, dir=d), d


class AskOnceWithSetup(AskOnce):
    """AskOnce plus a setup exchange of known size and FLOPs (for the meter's tests):
    up: float32[8] (32 B); the cloud does one [8] x [8, 16] matmul (256 FLOPs) and sends
    float32[16] down (64 B); the edge installs it with one [16] x [16, 4] matmul (128 FLOPs)."""
    manifest = api.Manifest(name="ask-once-setup", tracks=("plan",))

    def edge_setup(self, rng):
        return {}, {"x": jnp.arange(8, dtype=jnp.float32)}

    def cloud_setup(self, uplink, rng):
        w = jnp.ones((8, 16), jnp.float32)
        return {}, {"v": uplink["x"] @ w}

    def edge_install(self, es, package, rng):
        return {"u": package["v"] @ jnp.ones((16, 4), jnp.float32)}


TASK20 = TaskSpec(name="test/tiny-plan-20", version="1", track="plan", description="1-D corridor, 20 episodes",
                  primary_metric="success", config={"episodes": 20}, builder=build)


class PrintWorld(AskOnce):
    """AskOnce whose cloud prints the world it is given on every step (jax.debug.print
    is allowed): it must see the real world only on the steps the edge sent."""
    manifest = api.Manifest(name="print-world", tracks=("plan",))

    def cloud_reply(self, cs, world, uplink, rng):
        jax.debug.print("world-g {g}", g=world["g"])
        return super().cloud_reply(cs, world, uplink, rng)
