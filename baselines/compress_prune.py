"""Pruning the cloud model: unstructured (``prune-magnitude``) and by channels
(``prune-structured``: the kept channels form a narrower dense CNN of the same
family, ``vision.cloud_cnn(widths * keep, hidden * keep)``, shipped in fp32).

Unstructured magnitude pruning (``prune-magnitude``).

Per layer, the round((1 - sparsity) n) largest-magnitude kernel weights are
kept (biases never pruned); then ``finetune_epochs`` of masked fine-tuning on
the training split (the mask is re-applied after every step). The kept
weights ship in an explicit sparse encoding (``lsbench.models.sparse``):
float32 values plus a bitmask or uint16 positions, whichever is smaller, so
the billed bytes are min(n / 8, 2k) + 4k per layer.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

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


class PruneStructured(Shipped):
    manifest = api.Manifest(
        name="prune-structured", tracks=("infer",), applies_to=("compress",),
        description="channel pruning: keep the largest-norm fraction of each layer's channels "
                    "(a narrower dense CNN ships in fp32), then fine-tune",
        paper="Li et al., Pruning Filters for Efficient ConvNets, ICLR 2017")
    default_hparams = {"keep": 0.5, "finetune_epochs": 2, "ft_lr": 1e-3, "batch": 64}
    sweep = tuple({"keep": k} for k in (0.25, 0.5, 0.75))

    @property
    def model(self):
        """The narrower architecture both sides build from ``keep`` (architectures are public)."""
        from lsbench.models import vision
        info = self.view.models["cloud"].info
        k = float(self.hp["keep"])
        widths = tuple(max(1, round(k * w)) for w in info["widths"])
        return vision.cloud_cnn(self.view.num_classes, widths, max(1, round(k * info["hidden"])))

    def derive(self, rng):
        md, params = self.teacher()
        target = self.shapes()
        out, prev = {}, None
        for name in [("out" if s == "logits" else s) for s in md.stages[1:]]:
            if name not in params:
                continue
            w, b = jnp.asarray(params[name]["kernel"]), jnp.asarray(params[name]["bias"])
            if prev is not None:  # drop the inputs the previous layer no longer produces
                if w.ndim == 4:
                    w = w[:, :, prev, :]
                else:  # dense after a flatten: rows are (position, channel) pairs
                    c_in = prev_channels
                    w = w.reshape(-1, c_in, w.shape[-1])[:, prev, :].reshape(-1, w.shape[-1]) \
                        if w.shape[0] != c_in else w[prev, :]
            k = target[name]["kernel"].shape[-1]
            if k < w.shape[-1]:
                norms = jnp.sqrt(jnp.sum(w.reshape(-1, w.shape[-1]) ** 2, 0))
                idx = jnp.sort(jax.lax.top_k(norms, k)[1])
                w, b = w[..., idx], b[idx]
            else:
                idx = jnp.arange(w.shape[-1])
            prev, prev_channels = idx, params[name]["kernel"].shape[-1]
            out[name] = {"kernel": w, "bias": b}
        return self.finetune(out, lambda p: p, rng, self.hp.get("finetune_epochs", 0))
