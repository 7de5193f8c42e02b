"""``compress/arith`` baselines (language side of the compression track). The
shapes track's ``kd``, ``compress.scratch`` and ``compress.cloud-model`` run
here unchanged (a model's ``apply`` gives answer logits); these add:

- ``kd-reverse``: distillation with reverse KL, KL(student_T || teacher_T)
  (mode seeking, MiniLLM-style; Gu et al. 2024) + (1 - alpha) cross-entropy.
  Token-level, at the teacher-forced answer position, computed exactly over
  the student's distribution (10 answer tokens: no sampling, no
  sequence-level policy gradient).
- ``ptq`` (LM): per-channel int8 / packed int4 weights of every Dense layer,
  optionally calibrated (energy-weighted clipping, bias correction).
- ``llm-int8``: LLM.int8-style weight-only int8 (Dettmers et al. 2022): per
  layer, the kernel rows of the ``outliers`` input features with the largest
  calibration magnitude go as float16 with their indices, the rest int8 per
  output channel (``compress_lm_codec``). Billed at the packed size.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lsbench import api
from lsbench.models import distill
from baselines import compress_lm_codec as codec
from baselines.compress_common import Shipped
from baselines.compress_kd import KD


class ReverseKD(KD):
    manifest = api.Manifest(
        name="kd-reverse", tracks=("infer",), applies_to=("compress-lm",),
        description="distillation into the student with token-level reverse KL (student || teacher) "
                    "at the answer position, plus (1 - alpha) cross-entropy",
        paper="Gu et al., MiniLLM: Knowledge Distillation of Large Language Models, ICLR 2024")
    sweep = ({"T": 1.0, "alpha": 0.5}, {"T": 1.0, "alpha": 0.9}, {"T": 2.0, "alpha": 0.5},
             {"T": 2.0, "alpha": 0.9}, {"T": 4.0, "alpha": 0.9})

    def derive(self, rng):
        hp = self.hp
        T, alpha = float(hp["T"]), float(hp["alpha"])
        k_init, k_train = jax.random.split(rng)
        md = self.model
        data = self.data(with_teacher=True)

        def loss(p, b):
            s = md.apply(p, b["x"])
            return alpha * T * T * distill.reverse_kl(s, b["t"], T) + (1 - alpha) * distill.xent(s, b["y"])
        return distill.train(loss, md.init(k_init), data, k_train, epochs=int(hp["epochs"]),
                             batch=int(hp["batch"]), lr=float(hp["lr"]))


class LMPTQ(Shipped):
    manifest = api.Manifest(
        name="ptq", tracks=("infer",), applies_to=("compress-lm",),
        description="post-training per-channel weight quantisation of every Dense layer "
                    "(int8 / packed int4), calibrated clipping and bias correction",
        paper="Nagel et al., Data-Free Quantization Through Weight Equalization and Bias "
              "Correction, ICCV 2019")
    default_hparams = {"bits": 8, "calibrate": True, "calib_n": 512}
    sweep = ({"bits": 8}, {"bits": 4}, {"bits": 4, "calibrate": False}, {"bits": 8, "calibrate": False})
    outliers = 0

    def k(self) -> int:
        return int(self.hp.get("outliers", self.outliers))

    def calib_inputs(self, rng):
        """(cloud) Every Dense layer's inputs on ``calib_n`` training queries."""
        md, params = self.teacher()
        x = jnp.asarray(self.view.calib["x"])
        pick = jax.random.choice(rng, x.shape[0], (min(int(self.hp["calib_n"]), x.shape[0]),),
                                 replace=False)
        return codec.dense_inputs(lambda xb: md.apply(params, xb), x[pick])

    def derive(self, rng):
        _, params = self.teacher()
        cal = bool(self.hp.get("calibrate", False))
        inputs = self.calib_inputs(rng) if cal or self.k() else None
        return codec.encode(params, int(self.hp["bits"]), self.k(), inputs, calibrate=cal)

    def unpack(self, state):
        return codec.decode(state, self.shapes(), int(self.hp["bits"]), self.k())


class LLMInt8(LMPTQ):
    manifest = api.Manifest(
        name="llm-int8", tracks=("infer",), applies_to=("compress-lm",),
        description="weight-only int8 with outlier features: per layer the kernel rows of the "
                    "k largest-magnitude input features in float16 (+ indices), the rest int8",
        paper="Dettmers et al., LLM.int8(): 8-bit Matrix Multiplication for Transformers at "
              "Scale, NeurIPS 2022")
    default_hparams = {"bits": 8, "outliers": 4, "calibrate": False, "calib_n": 512}
    sweep = ({"outliers": 1}, {"outliers": 2}, {"outliers": 8}, {"outliers": 16},
             {"bits": 4, "outliers": 4}, {"bits": 4, "outliers": 16})
