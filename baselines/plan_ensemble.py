"""ensemble: K small edge agents vote on each action (multi-agent ensemble /
debate pattern). The K-1 peers send their votes (1 uint8 each) to the acting
agent, metered as edge<->edge bytes; disagreement (the top action holds fewer
than ``agree`` of the votes) triggers a cloud call for k actions."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from baselines.plan_reference import Buffered
from lsbench import api


class Ensemble(Buffered):
    manifest = api.Manifest(name="ensemble", tracks=("plan",),
                            description="K edge agents vote (peer votes metered edge<->edge); "
                                        "disagreement asks the cloud for k actions")
    default_hparams = {"k": 4, "agree": 1.0}
    # with K = 3: agree <= 2/3 asks only when all three differ; agree = 1 when any differs
    sweep = ({"agree": 0.6}, {"agree": 1.0})

    def edge_setup(self, rng):
        """(edge) Holds the K members (``view.params['edge_ensemble']``: all the edge's)."""
        return {"policy": self.view.params["edge_ensemble"]}, {}

    def _votes(self, es, obs):
        logits = jax.vmap(self.view.models["edge"].apply, (0, None))(es["policy"], obs)
        return jnp.argmax(logits, -1), jax.nn.softmax(logits).mean(0)

    @staticmethod
    def _vote_logits(votes, p):
        counts = jnp.zeros(p.shape[0]).at[votes].add(1.0)
        return jnp.log(counts + 1e-3 * p)  # majority vote, ties broken by mean probability

    def logits(self, es, obs):
        return self._vote_logits(*self._votes(es, obs))

    def trigger(self, es, carry, obs, logits, rng):
        K = jax.tree_util.tree_leaves(es["policy"])[0].shape[0]
        return jnp.exp(logits).max() < self.hp["agree"] * K - 1e-3

    def edge_query(self, es, carry, obs, rng):
        votes, p = self._votes(es, obs)
        q = self.query_from(es, carry, obs, rng, self._vote_logits(votes, p))
        return q._replace(peer={"votes": votes[1:].astype(jnp.uint8)})
