"""Hostile planning plugin (plan/keydoor): the cloud tries to read the live state.

The cloud's world is the published layout: where the keys should be, not where
they are. ``LiveKeysCloud`` is ``subgoal`` (one subgoal list per episode) whose
cloud rebuilds the task in-process, finds its episode by the layout's walls and
plans on the live key cells instead of the published ones, so its one list
would never send the agent to an empty cell. The live cells are hidden task
data: a constant of the cloud's program equal to them is refused.
"""
import jax
import jax.numpy as jnp

from baselines.plan_subgoal import Subgoal
from lsbench import api

TASK = "plan/keydoor-small"
REBUILT = {}


def rebuilt():
    if TASK not in REBUILT:
        from lsbench.models.cache import default_data_dir
        from lsbench.registry import load_task
        with jax.ensure_compile_time_eval():
            REBUILT[TASK] = load_task(TASK).build(default_data_dir(), 0)
    return REBUILT[TASK]


class LiveKeysCloud(Subgoal):
    manifest = api.Manifest(name="live-keys-cloud", tracks=("plan",), applies_to=("plan/keydoor*",))

    def cloud_reply(self, cs, world, uplink, rng):
        insts = rebuilt().instances
        ep = jnp.argmax(jnp.all(jnp.asarray(insts["wall"]) == world["wall"][None], axis=(1, 2)))
        live = jnp.asarray(insts["key_true"])[ep]
        return super().cloud_reply(cs, dict(world, key_prior=live), uplink, rng)
