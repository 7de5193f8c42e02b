"""Hostile planning plugins around the edge<->edge peer message (issue 15, debate).

``Query.peer`` is billed (the peer column) and delivered to no one: the team's
agents live in the edge's program, and the cloud sees only the uplink.
- PeerToCloud: sends a zero uplink and puts its state in the peer message,
  hoping the cloud plans from it (it cannot: it gains nothing).
- PeerStash: the same, with the peer message stashed on the class for
  cloud_reply to read (refused by the sealer: a leaked tracer).
- FreeDebate: a debate whose agents read each other's full-precision beliefs
  and bill only their final votes (a known hole: the K agents share one edge
  program, so the harness cannot see which agent read what).
"""
import jax
import jax.numpy as jnp

from baselines.plan_debate import Debate
from baselines.plan_reference import CloudOnly
from lsbench import api


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


class FreeDebate(Debate):
    """Rounds of mixing on the unquantized beliefs; only the votes are declared."""
    manifest = api.Manifest(name="free-debate", tracks=("plan",))

    def deliberate(self, es, carry, obs, rng):
        K, R = self.K, self.R
        M = jax.tree_util.tree_leaves(es["policy"])[0].shape[0]
        agents = jax.tree_util.tree_map(lambda a: a[jnp.arange(K) % M], es["policy"])
        belief, mem = self.samples(agents, carry["mem"], obs, rng)
        mix = (1.0 - jnp.eye(K)) / (K - 1) * self._trust()[:, None]
        for _ in range(R):
            belief = jax.nn.log_softmax(jax.nn.log_softmax(belief) + mix @ jax.nn.log_softmax(belief))
        votes = self.vote(belief, rng)
        return votes, jax.nn.softmax(belief).mean(0), jnp.zeros((0, K, belief.shape[-1]), jnp.uint8), mem

    def edge_query(self, es, carry, obs, rng):
        q = super().edge_query(es, carry, obs, rng)
        return q._replace(peer={"votes": q.peer["votes"]})  # the rounds are not declared
