"""The protocol every ``compress/*`` method shares: derive on the cloud, ship
once, answer on the edge alone.

``Shipped``: ``cloud_setup`` calls ``derive(rng)`` (cloud side: it may read the
cloud model ``view.params['cloud']`` and the training data ``view.calib``) and
sends what it returns as the setup package (billed at its exact bytes);
``edge_install`` keeps the package as the edge's whole state (its bytes are
the edge's parameter bytes); per batch, ``edge_query`` rebuilds float
parameters with ``unpack(state)`` (edge side) and runs ``models[role]`` on the
images. Nothing is sent per image, so the cloud is never asked.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lsbench import api
from lsbench.errors import PluginError
from lsbench.models import distill


class Shipped(api.InferMethod):
    """Not registered itself (no manifest)."""
    role = "cloud"  # the architecture the edge runs: "cloud" or "edge" (the student)

    # --- what subclasses supply ------------------------------------------
    def derive(self, rng):
        """(cloud) The package: the edge model in its wire form."""
        raise NotImplementedError

    def unpack(self, state):
        """(edge) Float parameters of ``models[role]`` from the installed package."""
        return state

    # --- helpers ------------------------------------------------------------
    @property
    def model(self):
        return self.view.models[self.role]

    def shapes(self, role=None):
        """The parameter shapes of an architecture (abstract: no array work)."""
        md = self.view.models[role] if role else self.model
        return jax.eval_shape(md.init, jax.ShapeDtypeStruct((2,), jnp.uint32))

    def teacher(self):
        return self.view.models["cloud"], self.view.params["cloud"]

    def views(self):
        """(cloud) The per-step augmentation named by hp ``augment``: ``none`` or
        views joined by ``+`` (``flip``, ``shift``, ``mixup``; ``distill.views``, with
        hp ``pad`` and ``mix_a``); None for non-image inputs or ``none``."""
        kinds = [k for k in str(self.hp.get("augment", "none")).split("+") if k and k != "none"]
        bad = sorted(set(kinds) - set(distill.VIEWS))
        if bad:
            raise PluginError(f"{self.manifest.name}: unknown augment view(s) {', '.join(bad)}; "
                              f"use 'none' or any of {', '.join(distill.VIEWS)} joined by '+'")
        if len(self.view.input_shape) != 3:
            return None
        return distill.views(kinds, int(self.hp.get("pad", 4)), float(self.hp.get("mix_a", 1.0)))

    def data(self, with_teacher=False):
        """(cloud) The training split; with the teacher's outputs on it under ``t``."""
        x, y = jnp.asarray(self.view.calib["x"]), jnp.asarray(self.view.calib["y"])
        out = {"x": x, "y": y}
        if with_teacher:
            md, p = self.teacher()
            out["t"] = distill.batched(lambda xb: md.apply(p, xb), x)
        return out

    def finetune(self, params, decode, rng, epochs, project=None):
        """(cloud) Cross-entropy fine-tuning of the wire-form ``params`` through
        ``decode`` (so pruned or factored weights keep their form)."""
        if not epochs:
            return params
        md = self.model

        def loss(p, b):
            return distill.xent(md.apply(decode(p), b["x"]), b["y"])
        return distill.train(loss, params, self.data(), rng, epochs=int(epochs),
                             batch=int(self.hp.get("batch", 64)), lr=float(self.hp.get("ft_lr", 1e-3)),
                             project=project)

    # --- the protocol ---------------------------------------------------------
    def edge_setup(self, rng):
        return {}, {}

    def cloud_setup(self, uplink, rng):
        return {}, self.derive(rng)

    def edge_install(self, es, package, rng):
        return package

    def edge_start(self, es, batch):
        return {"x": batch["x"]}

    def edge_query(self, es, carry, rng):
        x = carry["x"]
        b = x.shape[0]
        pred = jnp.argmax(self.model.apply(self.unpack(es), x), -1).astype(jnp.int32)
        return api.Query({"pred": pred}, {}, jnp.zeros((b,), bool), jnp.ones((b,), bool))

    def cloud_reply(self, cs, cc, up, rng):
        return cc, {}

    def edge_receive(self, es, carry, inbox, rng):
        return carry

    def finalize(self, es, carry):
        return {"pred": carry["pred"]}
