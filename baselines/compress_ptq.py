"""Post-training quantisation of the cloud model (``ptq``), and quantisation-
aware fine-tuning (``qat``: ``finetune_epochs`` on the training split with
straight-through fake-quantised weights, then the same per-channel encoding).

Weights only, symmetric, per output channel, ``bits`` = 8 or 4 (4-bit values
packed two per byte); activations stay float32 on the edge. With
``calibrate`` (default), each channel's clipping ratio minimises the error
weighted by the layer's input energy on ``calib_n`` training images, and
biases are corrected for the mean output shift (``lsbench.models.quant``).
Wire bytes: 1 (int8) or 1/2 (int4) per weight, plus a float32 scale and bias
per output channel.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lsbench import api
from lsbench.models import quant
from baselines.compress_common import Shipped


class PTQ(Shipped):
    manifest = api.Manifest(
        name="ptq", tracks=("infer",), applies_to=("compress",),
        description="post-training per-channel weight quantisation (int8 / packed int4) "
                    "with calibrated clipping and bias correction",
        paper="Nagel et al., Data-Free Quantization Through Weight Equalization and Bias "
              "Correction, ICCV 2019; Krishnamoorthi, Quantizing deep convolutional networks "
              "for efficient inference, 2018")
    default_hparams = {"bits": 8, "calibrate": True, "calib_n": 512}
    sweep = ({"bits": 8}, {"bits": 4}, {"bits": 4, "calibrate": False}, {"bits": 8, "calibrate": False})

    def derive(self, rng):
        md, params = self.teacher()
        bits = int(self.hp["bits"])
        inputs = None
        if self.hp.get("calibrate", True):
            x = jnp.asarray(self.view.calib["x"])
            pick = jax.random.choice(rng, x.shape[0], (min(int(self.hp["calib_n"]), x.shape[0]),),
                                     replace=False)
            inputs = quant.layer_inputs(md, params, x[pick])
        return quant.encode(params, bits, inputs)

    def unpack(self, state):
        return quant.decode(state, self.shapes(), int(self.hp["bits"]))


def fake_quant(params, bits: int):
    """Weights rounded to the per-channel grid in the forward pass, identity in the
    backward pass (straight-through estimator)."""
    import jax
    out = {}
    for name, layer in params.items():
        w = layer["kernel"]
        q, s = quant.quantize(w, bits)
        wq = quant.dequantize(q.reshape(-1, w.shape[-1]), s).reshape(w.shape)
        out[name] = dict(layer, kernel=w + jax.lax.stop_gradient(wq - w))
    return out


class QAT(PTQ):
    manifest = api.Manifest(
        name="qat", tracks=("infer",), applies_to=("compress",),
        description="quantisation-aware fine-tuning (straight-through fake quantisation of the "
                    "weights) on the training split, then per-channel int8 / packed int4",
        paper="Jacob et al., Quantization and Training of Neural Networks for Efficient "
              "Integer-Arithmetic-Only Inference, CVPR 2018")
    default_hparams = {"bits": 4, "calibrate": False, "calib_n": 512, "finetune_epochs": 2,
                       "ft_lr": 1e-3, "batch": 64}
    sweep = ({"bits": 4}, {"bits": 8})

    def derive(self, rng):
        _, params = self.teacher()
        bits = int(self.hp["bits"])
        params = jax.tree_util.tree_map(jnp.asarray, dict(params))
        params = self.finetune(params, lambda p: fake_quant(p, bits), rng,
                               self.hp.get("finetune_epochs", 0))
        return quant.encode(params, bits)
