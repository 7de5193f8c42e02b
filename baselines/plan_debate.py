"""debate and self-consistency: K edge agents deliberate over R message rounds,
or one agent draws K (R + 1) samples; either team asks the cloud when it disagrees.

**One sample** is one forward pass of an agent's policy (``view.models['edge']``,
stepped through its memory when it has one) with its own weight noise: every
output unit of every layer is scaled by 1 + ``noise`` x N(0, 1) (rank-1
multiplicative noise, one draw per unit, so each sample is a different network
and needs its own pass; 0: none), and a vote is drawn from the logits at
temperature ``temp`` (Gumbel-max; 0: argmax). Both methods pay the same per sample.

**debate** (``agents`` = K, ``rounds`` = R) is a team (``api.PlanMethod.team``): K
agents, each its own device and sealed program holding one member (agent i runs
ensemble member ``i mod M`` of ``view.params['edge_ensemble']``, given to its
``agent_setup`` by the harness). Round 0: each agent samples; its belief is its
logits. Rounds 1..R: each agent has broadcast its belief as a distribution quantized
to uint8 per action (A bytes, heard by its K - 1 peers through the harness's peer
channel), samples again and updates

    b_i <- log_softmax(fresh_i) + trust * mean_{j != i} log(m_j / 255 + 1e-3)

(one [K] x [K, A] product per agent: counted by the FLOP meter), where m_j is
exactly the message the channel delivered. Then every agent votes (temperature
``temp``) and reports its vote (1 uint8) to the acting agent (agent 0), which takes
the majority (ties: its own vote) and asks the cloud for ``k`` actions when the top
action holds fewer than ``agree`` x K votes. Peer bytes per active step, metered by
the harness: ``R * K * A + (K - 1)``.

**ensemble** is debate with R = 0, no noise, temperature 0 and K = M (the task's
members): K argmax votes, K - 1 peer bytes per step (its behaviour before
debate existed, and its name and sweep).

**self-consistency** (``agents`` = K, ``rounds`` = R): N = K (R + 1) samples of
ONE agent (member 0), no messages (peer bytes 0), majority vote, the cloud
when fewer than ``agree`` x N agree. Equal-compute rule: N forward passes per
step = debate's K (R + 1); the edge FLOPs differ only by debate's mixing
products (R x 2 K^2 A per step; ``tests/test_debate.py`` asserts the gap).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from baselines.plan_reference import Buffered
from lsbench import api
from lsbench.models import policies

QUANT = 255.0  # a belief travels as uint8 per action
# vote temperature at agree = 1 (ask unless unanimous): the same grid for both methods. A lower
# agree level asks less; where measured (slidingtile-small, K = 3, R = 0) both levels stayed
# within 30% of cloud-only's calls and agree = 1 had the higher validation success, which is
# what pick_on_validation selects; lsbench run --hparams sets any other level.
SWEEP = tuple({"agree": 1.0, "temp": t} for t in (0.0, 1.0))


def vote_logits(votes, p):
    """Majority vote as logits: log(count + 1e-3 p); ties broken by mean probability ``p``."""
    counts = jnp.zeros(p.shape[0]).at[votes].add(1.0)
    return jnp.log(counts + 1e-3 * p)


class Team(Buffered):
    """Shared by debate and self-consistency: samples, votes, the disagreement trigger."""
    default_hparams = {"k": 4, "agree": 1.0, "agents": 3, "rounds": 0, "trust": 1.0, "temp": 0.0,
                       "noise": 0.1, "flush": True}

    @property
    def K(self) -> int:
        return int(self.hp["agents"]) or int(self.view.ensemble)

    @property
    def R(self) -> int:
        return int(self.hp["rounds"])

    def voters(self) -> int:
        return self.K

    def sample(self, p, m, obs, key):
        """One forward pass of policy ``p`` (memory ``m``) with its own weight noise: (logits [A], memory)."""
        model, noise = self.view.models["edge"], float(self.hp["noise"])
        if noise > 0:
            leaves, tdef = jax.tree_util.tree_flatten(p)
            ks = jax.random.split(key, len(leaves))
            p = jax.tree_util.tree_unflatten(tdef, [
                w * (1.0 + noise * jax.random.normal(kk, w.shape[-1:], w.dtype)) for w, kk in zip(leaves, ks)])
        return policies.policy_step(model, p, m, obs)

    def samples(self, params, mems, obs, rng):
        """One sample per row of the stacked ``params`` (own memory): (logits [n, A], memories [n, ...])."""
        if float(self.hp["noise"]) <= 0:  # no noise: no keys either
            return jax.vmap(lambda p, m: self.sample(p, m, obs, None))(params, mems)
        n = jax.tree_util.tree_leaves(params)[0].shape[0]
        return jax.vmap(lambda p, m, k: self.sample(p, m, obs, k))(params, mems, jax.random.split(rng, n))

    def vote(self, logits, rng):
        """A vote: argmax at temperature 0, else a Gumbel-max sample at ``temp``."""
        temp = float(self.hp["temp"])
        if temp <= 0:
            return jnp.argmax(logits, -1)
        return jnp.argmax(logits / temp + jax.random.gumbel(rng, logits.shape), -1)

    def trigger(self, es, carry, obs, logits, rng):
        return jnp.exp(logits).max() < float(self.hp["agree"]) * self.voters() - 1e-3


class Debate(Team):
    manifest = api.Manifest(name="debate", tracks=("plan",), version="2",
                            description="K edge agents (ensemble members, one device and sealed program each) "
                                        "exchange quantized beliefs over R rounds through the metered peer "
                                        "channel, then vote; disagreement asks the cloud for k actions")
    default_hparams = {**Team.default_hparams, "rounds": 1}
    sweep = SWEEP

    def team(self):
        return self.K, self.R

    # ---- the acting agent (agent 0's device): the vote and the cloud ---------------
    def edge_setup(self, rng):
        """(edge) The acting agent's policy runs as agent 0: its edge program holds nothing."""
        return {}, {}

    def edge_query(self, es, carry, obs, rng, team=None):
        """The majority of the K reported votes (ties: agent 0's own), or the cloud."""
        votes = team.msg["vote"].astype(jnp.int32)
        own = jax.nn.one_hot(votes[0], self.view.env.num_actions)
        return self.query_from(es, carry, obs, rng, vote_logits(votes, own))

    # ---- one agent ------------------------------------------------------------------
    def agent_start(self, ast, obs):
        """``mem``: the policy memory at the step's start; ``next``: after round 0's pass."""
        m = policies.init_memory(self.view.models["edge"])
        return {"mem": m, "next": m, "belief": jnp.zeros((self.view.env.num_actions,), jnp.float32)}

    def agent_round(self, ast, ac, obs, inbox, rng, r=0):
        kn, kv = jax.random.split(rng)
        fresh, mem = self.sample(ast["policy"], ac["mem"], obs, kn)
        if r == 0:
            belief, nxt = fresh, mem
        else:  # what the peers sent is what they are heard as
            heard = jnp.log(inbox.msg["belief"].astype(jnp.float32) / QUANT + 1e-3)      # [K, A]
            w = inbox.got.astype(jnp.float32) * (float(self.hp["trust"]) / max(self.K - 1, 1))
            belief, nxt = jax.nn.log_softmax(jax.nn.log_softmax(fresh) + w @ heard), ac["next"]
        ac = dict(ac, belief=belief, next=nxt)
        if r < self.team()[1]:
            return ac, {"belief": jnp.round(jax.nn.softmax(belief) * QUANT).astype(jnp.uint8)}
        return dict(ac, mem=nxt), {"vote": self.vote(belief, kv).astype(jnp.uint8)}


class Ensemble(Debate):
    manifest = api.Manifest(name="ensemble", tracks=("plan",),
                            description="K edge agents vote (peer votes metered edge<->edge); "
                                        "disagreement asks the cloud for k actions (debate with R = 0)")
    default_hparams = {**Team.default_hparams, "agents": 0, "rounds": 0, "noise": 0.0}
    # with K = 3: agree <= 2/3 asks only when all three differ; agree = 1 when any differs
    sweep = ({"agree": 0.6}, {"agree": 1.0})


class SelfConsistency(Team):
    manifest = api.Manifest(name="self-consistency", tracks=("plan",),
                            description="K (R + 1) temperature samples of one edge agent, no messages, "
                                        "majority vote; disagreement asks the cloud (debate's compute)")
    default_hparams = {**Team.default_hparams, "temp": 1.0}
    sweep = SWEEP

    def voters(self) -> int:
        return self.K * (self.R + 1)

    def edge_setup(self, rng):
        """(edge) Holds one agent: member 0 (``view.params['edge']``), stacked as a team of one."""
        return {"policy": jax.tree_util.tree_map(lambda a: a[None], self.view.params["edge"])}, {}

    def edge_start(self, es, obs):
        """Buffered's carry; ``mem`` holds the agent's policy memory (stacked: one row)."""
        c = super().edge_start(es, obs)
        return dict(c, mem=c["mem"][None])

    def edge_query(self, es, carry, obs, rng):
        N = self.voters()
        k1, k2 = jax.random.split(rng)
        params = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (N,) + a.shape[1:]), es["policy"])
        mems = jnp.broadcast_to(carry["mem"], (N,) + carry["mem"].shape[1:])
        logits, mem = self.samples(params, mems, obs, k1)
        votes = self.vote(logits, k2)
        p = jax.nn.softmax(logits).mean(0)
        return self.query_from(es, dict(carry, mem=mem[:1]), obs, rng, vote_logits(votes, p))
