"""Early exit with a cloud fallback (BranchyNet, Teerapittayanon et al. ICPR 2016;
DDNN, ICDCS 2017) on ``infer/shapes-exit``.

The edge runs the multi-exit network to its early exit. A row exits there if
the normalised entropy of the exit's softmax, H(p) / log C in [0, 1], is at
most ``threshold``; otherwise the edge sends the exit's feature map (8x8x16,
through the ``int8`` codec by default) and the cloud runs the rest of the
network to the final exit. ``threshold < 0`` never exits (offload rate 1);
``threshold >= 1`` always exits (offload rate 0). The sweep traces the
accuracy-vs-offload curve between those two ends.

The multi-exit network is the cloud's: ``cloud_setup`` ships its edge part
(the stages up to the exit and the exit head) down as the setup package
(billed ``setup_bytes_down``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lsbench import api
from lsbench.task import TaskError
from baselines.shapes_reference import Offload, exit_package


def normalized_entropy(logits):
    p = jax.nn.softmax(logits, -1)
    h = -jnp.sum(p * jax.nn.log_softmax(logits, -1), -1)
    return jnp.clip(h / jnp.log(logits.shape[-1]), 0.0, 1.0)


class EarlyExit(Offload):
    manifest = api.Manifest(name="early-exit", tracks=("infer",), applies_to=("infer/shapes-exit*",),
                            paper="Teerapittayanon et al., BranchyNet (ICPR 2016), DDNN (ICDCS 2017)",
                            description="exit on the device when the exit's normalised entropy is low; "
                                        "else send exit features to the cloud's final exit")
    default_hparams = {"threshold": 0.5}
    sweep = tuple({"threshold": t} for t in (-1.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 2.0))
    codec_up = "int8"

    def __init__(self, view, hp):
        super().__init__(view, hp)
        info = view.models["cloud"].info
        if view.mode != "exit" or "exit_at" not in info:
            raise TaskError(f"method {self.manifest.name} needs a multi-exit shapes task "
                            "(infer/shapes-exit)")
        self.at = info["exit_at"]

    def cloud_setup(self, uplink, rng):
        cs = dict(self.view.params)
        return cs, {"exit": exit_package(self.view, cs["cloud"])}

    def edge_install(self, es, package, rng):
        return {**es, **package}

    def edge_part(self, es, x):
        m = self.view.models["edge"]
        h = m.run(es["exit"], x, "input", self.at)
        return {"h": h}, m.run(es["exit"], h, self.at, "logits")

    def send_rows(self, local_logits, batch_size):
        return normalized_entropy(local_logits) > self.hp["threshold"]

    def cloud_part(self, cs, payload):
        return self.view.models["cloud"].run(cs["cloud"], payload["h"], self.at, "logits")
