"""Orbax checkpoints of a run's whole state: both sides' method state, every
client's edge state, the meters and the unit counter. Saves are atomic (Orbax
finalises a step only when it is complete), so a SIGKILL mid-save leaves the
previous step as the latest."""
from __future__ import annotations

import os

import jax
import numpy as np


class Checkpointer:
    def __init__(self, path: str, keep: int = 2):
        import orbax.checkpoint as ocp
        self._ocp = ocp
        self.path = os.path.abspath(path)
        # Synchronous saves: every save is awaited anyway, and a background save thread
        # that a SIGINT interrupts mid-save could keep the process from exiting.
        self.mngr = ocp.CheckpointManager(
            self.path, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                            enable_async_checkpointing=False))

    def latest(self):
        return self.mngr.latest_step()

    def save(self, step: int, state) -> None:
        from lsbench.harness import interrupt
        state = jax.tree_util.tree_map(np.asarray, state)
        with interrupt.critical():  # a SIGINT waits for the save to finish
            self.mngr.save(step, args=self._ocp.args.StandardSave(state))
            self.mngr.wait_until_finished()

    def restore(self, template):
        step = self.mngr.latest_step()
        abstract = jax.tree_util.tree_map(np.asarray, template)
        state = self.mngr.restore(step, args=self._ocp.args.StandardRestore(abstract))
        return step, state

    def close(self):
        self.mngr.close()
