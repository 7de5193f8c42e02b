"""Ask the cloud planner when the edge policy is unsure (planning track, API v2).

The edge runs its own small policy on what it observes. When the policy's top
action has probability below ``tau`` it sends its state up (the task's fixed
uplink) and the cloud answers with its planner's next ``k`` actions, packed 2
bits each; the edge executes them, then returns to its policy.

The harness builds this class twice, once per side, from that side's view:
the edge's holds its policy (``view.params["edge"]``), the cloud's holds the
planner (``view.planner``). Each function below runs on one side only.

    lsbench check --method=examples/plan_ask_when_unsure.py
    lsbench run --task=plan/fogmaze-small --method=examples/plan_ask_when_unsure.py
"""
import jax
import jax.numpy as jnp

from lsbench import api
from lsbench.envs import pack_actions, unpack_actions
from lsbench.models import policies


class AskWhenUnsure(api.PlanMethod):
    manifest = api.Manifest(name="ask-when-unsure", tracks=("plan",),
                            description="ask the cloud planner for k actions when the edge policy's "
                                        "top probability is below tau")
    default_hparams = {"tau": 0.9, "k": 4}
    sweep = ({"tau": 0.7}, {"tau": 0.9}, {"tau": 0.97})

    # ---- setup (metered; the defaults would hold all of a side's params) --------
    def edge_setup(self, rng):
        # (edge) Keep only the policy we use; send nothing up.
        return {"policy": self.view.params["edge"]}, {}

    def cloud_setup(self, uplink, rng):
        # (cloud) A solver has no params; a learned planner's are in view.planner.params.
        p = self.view.planner.params
        return {"planner": {} if p is None else p}, {}

    # ---- per episode, on the edge ------------------------------------------------
    def edge_start(self, es, obs):
        # The carry: the policy's memory (a GRU's state; empty for an MLP), actions
        # received from the cloud and how many are left.
        k = self.hp["k"]
        return {"mem": policies.init_memory(self.view.models["edge"]),
                "buf": jnp.zeros((k,), jnp.int32), "left": jnp.int32(0), "mine": jnp.int32(0)}

    def edge_query(self, es, carry, obs, rng):
        # One step of the edge policy (it advances its memory).
        logits, mem = policies.policy_step(self.view.models["edge"], es["policy"], carry["mem"], obs)
        probs = jax.nn.softmax(logits)
        carry = dict(carry, mem=mem, mine=jnp.argmax(probs).astype(jnp.int32))
        unsure = probs.max() < self.hp["tau"]
        send = unsure & (carry["left"] == 0)          # a bool scalar: this episode asks now
        return api.Query(carry, self.view.env.encode_up(obs), send)

    # ---- on the cloud --------------------------------------------------------------
    def cloud_reply(self, cs, world, uplink, rng):
        # Only called for real when the edge sent (else world and uplink are zeros).
        plan = self.view.planner.plan(cs["planner"], world, uplink, self.hp["k"])
        return {"actions": pack_actions(plan)}        # k actions, 2 bits each

    # ---- back on the edge ----------------------------------------------------------
    def edge_act(self, es, carry, obs, inbox, rng):
        k = self.hp["k"]
        buf = jnp.where(inbox.got, unpack_actions(inbox.msg["actions"], k), carry["buf"])
        left = jnp.where(inbox.got, k, carry["left"])
        use = left > 0
        action = jnp.where(use, buf[k - jnp.maximum(left, 1)], carry["mine"])
        return dict(carry, buf=buf, left=left - use.astype(jnp.int32)), action
