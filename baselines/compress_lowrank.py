"""Low-rank factorisation of the cloud model's dense layers (``lowrank``).

Each dense kernel W [K, N] ships as its best rank-r factors A [K, r], B [r, N]
(truncated SVD; only where that saves bytes); convolutions ship as they are.
Optional ``finetune_epochs`` train the factors (and the rest) on the training
split before shipping.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lsbench import api
from lsbench.models import lowrank
from baselines.compress_common import Shipped


class LowRank(Shipped):
    manifest = api.Manifest(
        name="lowrank", tracks=("infer",), applies_to=("compress",),
        description="truncated-SVD factors of the dense layers, optional fine-tuning",
        paper="Denton et al., Exploiting Linear Structure Within Convolutional Networks for "
              "Efficient Evaluation, NeurIPS 2014")
    default_hparams = {"rank": 16, "finetune_epochs": 0, "ft_lr": 1e-3, "batch": 64}
    sweep = tuple({"rank": r} for r in (4, 8, 16, 32))

    def derive(self, rng):
        _, params = self.teacher()
        enc = lowrank.encode(jax.tree_util.tree_map(jnp.asarray, dict(params)), int(self.hp["rank"]))
        return self.finetune(enc, lowrank.decode, rng, self.hp.get("finetune_epochs", 0))

    def unpack(self, state):
        return lowrank.decode(state)
