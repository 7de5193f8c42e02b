"""A tiny planning task for harness tests: a 1-D corridor.

The edge sees its position only; the cloud sees the goal (the world). One
cloud answer (the direction, 1 byte) is enough to reach the goal.
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
    ctx = api.TaskContext(task=spec.name, version=spec.version, track="plan", num_classes=2,
                          input_shape=(1,), models={})
    return PlanInstance(ctx=ctx, instances=inst, num_episodes=n, max_steps=2 * L + 4, reset=reset,
                        step=step, metrics_fn=metrics_fn, cloud_kind="solver",
                        cloud_cost=lambda world, up: jnp.int32(1), hashes={"data": "corridor-v1"})


TASK = TaskSpec(name="test/tiny-plan", version="1", track="plan", description="1-D corridor",
                primary_metric="success", config={"episodes": 300}, builder=build)


class AskOnce(api.PlanMethod):
    manifest = api.Manifest(name="ask-once", tracks=("plan",))
    default_hparams = {"ask": True}

    def init(self, rng):
        return {}, {}

    def edge_start(self, es, obs):
        return {"dir": jnp.int32(1), "asked": jnp.array(False)}

    def edge_query(self, es, mem, obs, rng):
        send = ~mem["asked"] & self.hp["ask"]
        return api.Query(dict(mem, asked=jnp.array(True)), {"p": obs["p"].astype(jnp.uint8)}, send)

    def cloud_plan(self, cs, world, up, rng):
        return {"dir": (world["g"] > up["p"]).astype(jnp.uint8)}

    def edge_act(self, es, mem, obs, inbox, rng):
        d = jnp.where(inbox.got, inbox.msg["dir"].astype(jnp.int32), mem["dir"])
        return dict(mem, dir=d), d
