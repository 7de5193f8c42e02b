"""Distillation into the student architecture, and the two references of the
``compress/*`` tasks.

- ``kd``: Hinton et al. (2015). The cloud trains ``models['edge']`` on its
  training split with alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha)
  * cross-entropy (Adam, cosine decay; ``epochs``, ``lr``, ``batch``), the
  teacher being the cloud model, and ships the fp32 student. On images with
  ``augment`` views the teacher labels every step's views in the same program
  (function matching, Beyer et al. 2022); ``KD.PATIENT`` is the long recipe.
- ``compress.scratch`` (reference): the same student and recipe, alpha = 0.
- ``compress.cloud-model`` (reference): the fp32 cloud model itself shipped
  whole; over the edge budget: plotted, never ranked.
"""
from __future__ import annotations

import jax

from lsbench import api
from lsbench.models import distill
from baselines.compress_common import Shipped


class KD(Shipped):
    manifest = api.Manifest(
        name="kd", tracks=("infer",), applies_to=("compress", "compress-lm"),
        description="Hinton distillation of the cloud model into the student architecture",
        paper="Hinton et al., Distilling the Knowledge in a Neural Network, 2015")
    role = "edge"
    # The defaults (T 2, alpha 0.5, 10 epochs) are also compress/arith's. On images the
    # teacher labels each step's views in the program (function matching, Beyer et al. 2022).
    # PATIENT: the long image recipe; its views (flip+shift), T and alpha were chosen on
    # validation (compress/shapes-small v3, seed 0, 60 epochs: flip+shift T1/a1 0.788, flip
    # T1/a1 0.768, flip+shift+mixup T1/a1 0.756, flip T2/a0.5 0.760; scratch 0.780 with flip
    # or flip+shift), its 90 epochs are scratch's best schedule on validation (30/60/90:
    # 0.714/0.780/0.792 flip, 0.702/0.780/0.808 flip+shift).
    PATIENT = {"T": 1.0, "alpha": 1.0, "epochs": 90, "augment": "flip+shift"}
    default_hparams = {"T": 2.0, "alpha": 0.5, "epochs": 10, "lr": 3e-3, "batch": 64, "augment": "flip"}
    sweep = (PATIENT, {"T": 1.0, "alpha": 1.0}, {"T": 4.0, "alpha": 0.9},
             {"T": 2.0, "alpha": 0.5, "augment": "none"}, {**PATIENT, "augment": "flip+shift+mixup"})

    def derive(self, rng):
        k_init, k_train = jax.random.split(rng)
        return self.distill(self.model.init(k_init), k_train)

    def distill(self, params, key):
        """(cloud) ``epochs`` of Hinton distillation of the student from ``params``.
        With image views (hp ``augment``) the teacher labels each step's views in the
        same program (function matching); without, its outputs on the split once."""
        hp = self.hp
        T, alpha = float(hp["T"]), float(hp["alpha"])
        md, aug = self.model, self.views()
        if aug is None:
            data = self.data(with_teacher=alpha > 0)

            def loss(p, b):
                return distill.kd_loss(md.apply(p, b["x"]), b.get("t"), b["y"], T, alpha)
        else:
            tm, tp = self.teacher()
            data = self.data()

            def loss(p, b):
                t = jax.lax.stop_gradient(tm.apply(tp, b["x"])) if alpha > 0 else None
                return distill.kd_loss(md.apply(p, b["x"]), t, b["y"], T, alpha, b.get("y2"), b.get("lam"))
        return distill.train(loss, params, data, key, epochs=int(hp["epochs"]),
                             batch=int(hp["batch"]), lr=float(hp["lr"]), augment=aug)


class Scratch(KD):
    manifest = api.Manifest(
        name="scratch", tracks=("infer",), applies_to=("compress", "compress-lm"), reference="edge-only",
        description="the student architecture trained on the same data without a teacher "
                    "(kd's recipe with alpha = 0)")
    default_hparams = dict(KD.default_hparams, alpha=0.0)
    sweep = ({"epochs": 90, "augment": "flip+shift"},)  # kd's PATIENT schedule and views


class CloudModel(Shipped):
    manifest = api.Manifest(
        name="cloud-model", tracks=("infer",), applies_to=("compress", "compress-lm"), reference="cloud-only",
        description="the fp32 cloud model shipped whole (over the edge budget: plotted, not ranked)")

    def derive(self, rng):
        return self.view.params["cloud"]
