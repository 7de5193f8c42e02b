"""Unstructured magnitude pruning of the cloud model (``prune-magnitude``).

Per layer, the round((1 - sparsity) n) largest-magnitude kernel weights are
kept (biases never pruned); then ``finetune_epochs`` of masked fine-tuning on
the training split (the mask is re-applied after every step). The kept
weights ship in an explicit sparse encoding (``lsbench.models.sparse``):
float32 values plus a bitmask or uint16 positions, whichever is smaller, so
the billed bytes are min(n / 8, 2k) + 4k per layer.
"""
from __future__ import annotations

import jax

from lsbench import api
from lsbench.models import sparse
from baselines.compress_common import Shipped


class PruneMagnitude(Shipped):
    manifest = api.Manifest(
        name="prune-magnitude", tracks=("infer",), applies_to=("compress",),
        description="unstructured per-layer magnitude pruning, masked fine-tuning, sparse encoding",
        paper="Han et al., Learning both Weights and Connections for Efficient Neural Networks, "
              "NeurIPS 2015")
    default_hparams = {"sparsity": 0.8, "finetune_epochs": 2, "ft_lr": 1e-3, "batch": 64}
    sweep = tuple({"sparsity": s} for s in (0.5, 0.7, 0.8, 0.9, 0.95))

    def derive(self, rng):
        _, params = self.teacher()
        s = float(self.hp["sparsity"])
        params = jax.tree_util.tree_map(jax.numpy.asarray, dict(params))
        masks = sparse.magnitude_masks(params, s)
        params = sparse.apply_masks(params, masks)
        params = self.finetune(params, lambda p: p, rng, self.hp.get("finetune_epochs", 0),
                               project=lambda p: sparse.apply_masks(p, masks))
        return sparse.encode(params, masks, s)

    def unpack(self, state):
        return sparse.decode(state, self.shapes())
