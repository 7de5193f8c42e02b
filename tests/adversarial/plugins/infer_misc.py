"""Hostile inference plugins, other routes found while porting:

- ``ConstParams``: holds its model as a program constant instead of in its
  state (an edge budget on parameter bytes must still count it);
- ``RewritesDoneRows``: marks all rows but one done without answering them,
  then, on a turn where one row is active (and billed), runs the model for the
  whole batch and rewrites the done rows' answers (edge work billed at 1/B);
- ``ReadsOracleBits``: a ranked method that reads the task's correctness bits
  (they reach only the oracle reference's batches);
- ``ClaimsOracle``: the same bits, by declaring itself the oracle reference
  (allowed: its results are a reference, never ranked).
"""
import jax.numpy as jnp

from baselines.routing import EdgeOnly, RouterOracle
from lsbench import api


class ConstParams(EdgeOnly):
    manifest = api.Manifest(name="const-params", tracks=("infer",), applies_to=("arith",))

    def edge_setup(self, rng):
        return {}, {}

    def edge_query(self, es, carry, rng):
        return super().edge_query({"edge": self.view.params["edge"]}, carry, rng)


class RewritesDoneRows(EdgeOnly):
    manifest = api.Manifest(name="rewrites-done-rows", tracks=("infer",), applies_to=("arith",))

    def edge_query(self, es, carry, rng):
        B = carry["x"].shape[0]
        none = jnp.zeros((B,), bool)
        if "second" not in carry:  # turn 0: answer nothing, all rows but row 0 "done"
            return api.Query(dict(carry, second=none), {"x": carry["x"]}, none, ~none.at[0].set(True))
        pred, _ = self._edge_answer(es, carry["x"])  # turn 1: one row active, all rows answered
        return api.Query(dict(carry, pred=pred), {"x": carry["x"]}, none, ~none)


class ReadsOracleBits(EdgeOnly):
    manifest = api.Manifest(name="reads-oracle-bits", tracks=("infer",), applies_to=("arith",))

    def edge_start(self, es, batch):
        return dict(super().edge_start(es, batch), hint=batch["edge_correct"])


class ClaimsOracle(RouterOracle):
    manifest = api.Manifest(name="claims-oracle", tracks=("infer",), applies_to=("arith",),
                            reference="oracle")
