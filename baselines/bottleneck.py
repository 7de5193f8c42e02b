"""A learned bottleneck at the split (BottleFit, Matsubara et al. 2022; the
"supervised compression" of the SC2 benchmark) on ``infer/shapes-split``.

At split point ``split`` of the frozen cloud CNN, the edge applies a 1x1 conv
encoder to ``channels`` channels; the code travels through the channel's
``int8`` codec (per-example affine: uint8 codes + fp32 scale + zero-point);
the cloud applies a 1x1 conv decoder (ReLU) back to the original channels and
finishes the cloud model. ``cloud_setup`` initialises encoder and decoder by
PCA of the split activations and fine-tunes them by distillation from the
cloud model's logits on the cloud's calibration images (``steps`` Adam steps,
straight-through fake quantisation at ``bits``): its FLOPs are the method's
setup cost on the cloud, and the package it ships down (the cloud model's
stages up to the split and the encoder) its setup bytes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lsbench import api
from lsbench.models import vision
from lsbench.task import TaskError
from baselines.shapes_reference import Offload
from baselines.split import fake_quant


def _conv1x1(p, h):
    return jnp.einsum("...c,cd->...d", h, p["w"]) + p["b"]


def _ste_quant(z, bits):
    return z + jax.lax.stop_gradient(fake_quant(z, bits) - z)


class Bottleneck(Offload):
    manifest = api.Manifest(name="bottleneck", tracks=("infer",), applies_to=("infer/shapes-split*",),
                            paper="Matsubara et al., BottleFit, 2022",
                            description="1x1 channel bottleneck at the split, distilled from the cloud "
                                        "model in cloud_setup and shipped down, int8 on the wire")
    default_hparams = {"split": "pool3", "channels": 8, "bits": 8, "steps": 400, "batch": 64, "lr": 1e-3,
                       "temperature": 2.0}
    sweep = (tuple({"channels": c} for c in (2, 4, 8, 16))
             + tuple({"split": "pool2", "channels": c} for c in (2, 4, 8)))
    codec_up = "int8"

    def __init__(self, view, hp):
        super().__init__(view, hp)
        info = view.models["cloud"].info
        if view.mode != "split":
            raise TaskError(f"method {self.manifest.name} needs a split-mode shapes task (infer/shapes-split)")
        if self.hp["split"] not in info["split_points"][1:]:
            raise TaskError(f"bottleneck split must be one of {', '.join(info['split_points'][1:])}")
        if self.hp["bits"] not in (8, 4):
            raise TaskError(f"bottleneck bits must be 8 or 4, not {self.hp['bits']!r}")
        self.codec_up = self.hp["codec_up"] = f"int{self.hp['bits']}"  # the wire format is part of bits
        self.run, self.split = view.models["cloud"].run, self.hp["split"]

    def edge_setup(self, rng):
        return {}, {}  # the edge's own CNN is not used

    def cloud_setup(self, uplink, rng):
        cloud = self.view.params["cloud"]
        x = jnp.asarray(self.view.calib["x"])
        c = self.hp["channels"]
        # PCA initialisation: the top-c principal channel directions of the
        # activations at the split (encoder) and their transpose (decoder).
        h = self.run(cloud, x, "input", self.split)
        h = h.reshape(-1, h.shape[-1])
        mu = h.mean(0)
        _, vecs = jnp.linalg.eigh((h - mu).T @ (h - mu) / h.shape[0])
        v = vecs[:, ::-1][:, :c]
        bn = {"enc": {"w": v, "b": -mu @ v}, "dec": {"w": v.T, "b": mu}}
        tx = optax.adam(self.hp["lr"])
        T = self.hp["temperature"]

        def loss(bn, xb):
            h = self.run(cloud, xb, "input", self.split)
            teacher = jax.nn.log_softmax(self.run(cloud, h, self.split, "logits") / T)
            z = _ste_quant(_conv1x1(bn["enc"], h), self.hp["bits"])
            student = self.run(cloud, jax.nn.relu(_conv1x1(bn["dec"], z)), self.split, "logits")
            return -jnp.mean(jnp.sum(jnp.exp(teacher) * jax.nn.log_softmax(student / T), -1))

        def step(carry, key):
            bn, opt = carry
            idx = jax.random.randint(key, (self.hp["batch"],), 0, x.shape[0])
            g = jax.grad(loss)(bn, x[idx])
            upd, opt = tx.update(g, opt, bn)
            return (optax.apply_updates(bn, upd), opt), None
        (bn, _), _ = jax.lax.scan(step, (bn, tx.init(bn)), jax.random.split(rng, self.hp["steps"]))
        prefix = vision.stage_params(self.view.models["cloud"], cloud, self.split)
        return {"cloud": cloud, "dec": bn["dec"]}, {"prefix": prefix, "enc": bn["enc"]}

    def edge_install(self, es, package, rng):
        return {**es, **package}

    def edge_part(self, es, x):
        return {"z": _conv1x1(es["enc"], self.run(es["prefix"], x, "input", self.split))}, None

    def cloud_part(self, cs, payload):
        h = jax.nn.relu(_conv1x1(cs["dec"], payload["z"]))
        return self.run(cs["cloud"], h, self.split, "logits")
