"""FitNets-style feature distillation (``feature-kd``) into the student.

Romero et al. (2015), two stages, both on the cloud in ``cloud_setup``:
1. hints: for ``hint_epochs`` the student's layers up to its *guided* stage
   (``guided``, default ``pool2``: 8x8x16) and a learned regressor (a 1x1
   convolution to the teacher's channels) are trained to match the teacher's
   *hint* stage (``hint``, default ``pool2``: 8x8x32) in mean squared error;
   the teacher's features are computed per step, inside the metered program,
   so their FLOPs are billed to the cloud's setup;
2. the whole student is then distilled from the cloud model's logits as in
   ``kd`` (T, alpha, ``epochs``).
The regressor stays on the cloud; the fp32 student ships as in ``kd``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lsbench import api
from lsbench.errors import PluginError
from lsbench.models import distill
from baselines.compress_kd import KD


class FeatureKD(KD):
    manifest = api.Manifest(
        name="feature-kd", tracks=("infer",), applies_to=("compress",),
        description="FitNets hints: a student stage regresses a teacher stage through a learned "
                    "1x1 regressor, then Hinton distillation",
        paper="Romero et al., FitNets: Hints for Thin Deep Nets, ICLR 2015")
    default_hparams = dict(KD.default_hparams, hint_epochs=3, hint="pool2", guided="pool2")
    sweep = ({"hint_epochs": 3}, {"hint_epochs": 1}, {"hint": "pool1", "guided": "pool1"})

    def stage_shape(self, role, stage):
        md = self.view.models[role]
        if stage not in md.stages:
            raise PluginError(f"feature-kd: {role} model has no stage '{stage}' (stages: "
                              f"{', '.join(md.stages[1:])}); set hint/guided to one of them")
        x = jax.ShapeDtypeStruct((1,) + tuple(self.view.input_shape), jnp.uint8)
        return jax.eval_shape(lambda p, h: md.run(p, h, "input", stage), self.shapes(role), x).shape[1:]

    def derive(self, rng):
        hp = self.hp
        k_init, k_reg, k_hint, k_train = jax.random.split(rng, 4)
        (tm, tp), md = self.teacher(), self.model
        g, h = hp["guided"], hp["hint"]
        gs, hs = self.stage_shape("edge", g), self.stage_shape("cloud", h)
        if gs[:-1] != hs[:-1]:
            raise PluginError(f"feature-kd: student stage {g} {tuple(gs)} and teacher stage {h} "
                              f"{tuple(hs)} differ in spatial size; pick stages of equal resolution")
        reg = {"kernel": jax.random.normal(k_reg, (gs[-1], hs[-1])) / jnp.sqrt(gs[-1]),
               "bias": jnp.zeros((hs[-1],))}

        def hint_loss(q, b):
            s = md.run(q["student"], b["x"], "input", g)
            t = jax.lax.stop_gradient(tm.run(tp, b["x"], "input", h))
            return jnp.mean((s @ q["reg"]["kernel"] + q["reg"]["bias"] - t) ** 2)

        q = distill.train(hint_loss, {"student": md.init(k_init), "reg": reg}, self.data(), k_hint,
                          epochs=int(hp["hint_epochs"]), batch=int(hp["batch"]), lr=float(hp["lr"]),
                          augment=self.views())
        return self.distill(q["student"], k_train)
