"""Hostile planning plugins around the edge<->edge peer messages (issue 15, debate).

``Query.peer`` is billed (the peer column) and delivered to no one: the cloud sees
only the uplink.
- PeerToCloud: sends a zero uplink and puts its state in the peer message,
  hoping the cloud plans from it (it cannot: it gains nothing).
- PeerStash: the same, with the peer message stashed on the class for
  cloud_reply to read (refused by the sealer: a leaked tracer).

A team (``api.PlanMethod.team``) runs each agent as its own sealed program holding
one member; what one agent learns of another must pass the metered peer channel.
Each attack below is a team that declares R = 0 rounds (it pays only its K - 1
votes per step) and deliberates anyway, on every member's full-precision beliefs:
- FreeDebate: the acting agent holds every member (rebuilt from the task, out of
  its view) and runs the rounds in its own program (refused: the team guard denies
  the other members to the edge).
- AgentPeeks: every agent holds every member and computes its peers' beliefs
  itself instead of hearing them (refused: agents may hold no member as a constant).
- AgentWhisper: an agent stashes its belief on the class in round r and reads it
  back in round r + 1 instead of its inbox (refused: a leaked tracer).
"""
import jax
import jax.numpy as jnp

from baselines.plan_debate import Debate, vote_logits
from baselines.plan_reference import CloudOnly
from lsbench import api
from lsbench.models import policies


class ZeroUplink(CloudOnly):
    """Asks every step with an all-zero uplink (the control: no state reaches the cloud)."""
    manifest = api.Manifest(name="zero-uplink", tracks=("plan",))

    def edge_query(self, es, carry, obs, rng):
        q = super().edge_query(es, carry, obs, rng)
        return q._replace(uplink=jax.tree_util.tree_map(jnp.zeros_like, q.uplink))


class PeerToCloud(ZeroUplink):
    manifest = api.Manifest(name="peer-to-cloud", tracks=("plan",))

    def edge_query(self, es, carry, obs, rng):
        q = super().edge_query(es, carry, obs, rng)
        return q._replace(peer={"state": self.view.env.encode_up(obs)})


class PeerStash(PeerToCloud):
    manifest = api.Manifest(name="peer-stash", tracks=("plan",))
    peer = None

    def edge_query(self, es, carry, obs, rng):
        q = super().edge_query(es, carry, obs, rng)
        type(self).peer = q.peer["state"]
        return q

    def cloud_reply(self, cs, world, uplink, rng):
        got = type(self).peer
        return super().cloud_reply(cs, world, uplink if got is None else got, rng)


def stolen_members(view):
    """The task's whole ensemble, read from the task rebuilt in-process beforehand (at import
    time, say: ``plan_rebuild.rebuilt``), not from the view."""
    from adv_common import plugin
    return plugin("plan_rebuild").rebuilt(view.task).edge_view.params["edge_ensemble"]


def deliberate(team, members, obs, rng):
    """K agents (member i mod M) with R = hp['rounds'] rounds of mixing on each other's
    unquantized beliefs: (votes [K], mean belief [A])."""
    K, R = team.K, int(team.hp["rounds"])
    M = jax.tree_util.tree_leaves(members)[0].shape[0]
    agents = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[jnp.arange(K) % M], members)
    m = policies.init_memory(team.view.models["edge"])
    belief, _ = team.samples(agents, jnp.broadcast_to(m, (K,) + m.shape), obs, rng)
    mix = (1.0 - jnp.eye(K)) / (K - 1) * float(team.hp["trust"])
    for _ in range(R):
        belief = jax.nn.log_softmax(jax.nn.log_softmax(belief) + mix @ jax.nn.log_softmax(belief))
    return team.vote(belief, rng), jax.nn.softmax(belief).mean(0)


class FreeDebate(Debate):
    """The acting agent deliberates alone over every member; the team declares R = 0."""
    manifest = api.Manifest(name="free-debate", tracks=("plan",))

    def team(self):
        return self.K, 0

    def edge_setup(self, rng):
        return {"members": jax.tree_util.tree_map(jnp.asarray, stolen_members(self.view))}, {}

    def edge_query(self, es, carry, obs, rng, team=None):
        votes, p = deliberate(self, es["members"], obs, rng)
        return self.query_from(es, carry, obs, rng, vote_logits(votes, p))


class AgentPeeks(Debate):
    """Each agent computes every agent's beliefs (and the rounds) itself and reports the
    team's free verdict as its vote; the team declares R = 0."""
    manifest = api.Manifest(name="agent-peeks", tracks=("plan",))

    def team(self):
        return self.K, 0

    def agent_round(self, ast, ac, obs, inbox, rng, r=0):
        votes, p = deliberate(self, stolen_members(self.view), obs, rng)
        top = jnp.argmax(vote_logits(votes, p))  # every agent reports the team's free verdict
        return ac, {"vote": top.astype(jnp.uint8)}


class AgentWhisper(Debate):
    """Round r's full-precision belief, stashed on the class, replaces round r + 1's inbox."""
    manifest = api.Manifest(name="agent-whisper", tracks=("plan",))
    whisper = None

    def agent_round(self, ast, ac, obs, inbox, rng, r=0):
        if r > 0 and type(self).whisper is not None:
            heard = jnp.broadcast_to(jax.nn.softmax(type(self).whisper) * 255.0, inbox.msg["belief"].shape)
            inbox = inbox._replace(msg={"belief": heard})
        ac, msg = super().agent_round(ast, ac, obs, inbox, rng, r)
        type(self).whisper = ac["belief"]
        return ac, msg
