"""Early exit with a cloud fallback (BranchyNet, Teerapittayanon et al. ICPR 2016;
DDNN, ICDCS 2017) on ``infer/shapes-exit``.

The edge runs the multi-exit network to its early exit. A row exits there if
the normalised entropy of the exit's softmax, H(p) / log C in [0, 1], is at
most ``threshold``; otherwise the edge sends the exit's feature map (8x8x16,
through the ``int8`` codec by default) and the cloud runs the rest of the
network to the final exit. ``threshold < 0`` never exits (offload rate 1);
``threshold >= 1`` always exits (offload rate 0). The sweep traces the
accuracy-vs-offload curve between those two ends.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lsbench import api
from lsbench.task import TaskError
from baselines.shapes_reference import Offload


def normalized_entropy(logits):
    p = jax.nn.softmax(logits, -1)
    h = -jnp.sum(p * jax.nn.log_softmax(logits, -1), -1)
    return jnp.clip(h / jnp.log(logits.shape[-1]), 0.0, 1.0)


class EarlyExit(Offload):
    families = ("infer/shapes-exit*",)  # the suite's grid: which tasks this method applies to
    manifest = api.Manifest(name="early-exit", tracks=("infer",),
                            paper="Teerapittayanon et al., BranchyNet (ICPR 2016), DDNN (ICDCS 2017)",
                            description="exit on the device when the exit's normalised entropy is low; "
                                        "else send exit features to the cloud's final exit")
    default_hparams = {"threshold": 0.5}
    sweep = tuple({"threshold": t} for t in (-1.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 2.0))
    codec_up = "int8"

    def __init__(self, ctx, hp):
        super().__init__(ctx, hp)
        info = ctx.models["cloud"].info
        if ctx.extras.get("mode") != "exit" or "exit" not in info:
            raise TaskError(f"method {self.manifest.name} needs a multi-exit shapes task "
                             "(infer/shapes-exit)")
        self.at, self.run, self.exit = info["exit_at"], info["run"], info["exit"]

    def prepare(self, calib, rng):
        return self.ctx.params["cloud"], self.ctx.params["cloud"]

    def edge_part(self, es, x):
        h = self.run(es, x, "input", self.at)
        return {"h": h}, self.exit(es, h)

    def send_rows(self, local_logits, batch_size):
        return normalized_entropy(local_logits) > self.hp["threshold"]

    def cloud_part(self, cs, payload):
        return self.run(cs, payload["h"], self.at, "logits")
