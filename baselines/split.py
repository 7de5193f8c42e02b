"""Split computing of the task's cloud CNN (``infer/shapes-split``).

The edge runs the cloud model up to a named split point, sends the activation
(through the harness channel's codec), the cloud runs the rest and answers the
class. ``split="input"`` sends the raw uint8 image (= cloud-only).

- ``Split`` (Neurosurgeon, Kang et al. ASPLOS 2017): fp32 activations; with
  ``split="auto"`` it picks the split point that minimises the modelled
  latency under network profile ``profile`` (the task's profiles:
  edge prefix FLOPs / edge rate + RTT + bytes up / uplink + cloud FLOPs /
  cloud rate + 4 B down / downlink). fp32 splits never change accuracy.
- ``SplitQuant`` (JALAD, Auto-Split): per-example affine int8 or int4
  activations (the channel's ``int8`` / ``int4`` codecs: packed codes + fp32
  scale + fp32 zero-point). With ``split="auto"`` it picks the split point
  with the lowest modelled latency at ``bits`` (``auto`` = int8; int4 is a
  sweep point: at early splits it changes predictions).

The split point and the codec are fixed when the method is built (both
sides derive them from public facts: the architecture, the profiles), so the
edge's program is known; the cloud sends the first stages of its model, up to
the split, down in setup (billed ``setup_bytes_down``). The latency model is
the harness's (``lsbench.metering.profiles.example_latency``): one edge call,
one round trip, one cloud call, FLOPs and bytes.
"""
from __future__ import annotations

import math

import jax.numpy as jnp

from lsbench import api
from lsbench.task import TaskError
from lsbench.models import vision
from baselines.shapes_reference import Offload

PROFILES = ("lan", "wifi", "lte", "weak")
BYTES_PER = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0}


def payload_bytes(shape, codec: str) -> int:
    """Bytes per example the channel bills for one activation of ``shape``."""
    n = math.prod(shape)
    if codec == "raw-uint8":
        return n
    if codec == "int8":
        return n + 8
    if codec == "int4":
        return math.ceil(n / 2) + 8
    return int(n * BYTES_PER[codec])


def modelled_latency(view: api.InferView, profile: str, edge_flops: float, cloud_flops: float,
                     up_bytes: float, down_bytes: float = 4) -> float:
    """Seconds per example of one offloading turn under the harness's latency model."""
    from lsbench.metering import profiles
    return profiles.example_latency(view.profiles.network[profile], view.profiles.device,
                                    edge_flops=edge_flops, cloud_flops=cloud_flops,
                                    bytes_up=up_bytes, bytes_down=down_bytes)


def split_options(view: api.InferView, codecs) -> list[dict]:
    """Every (split, codec) with its modelled costs; ``input`` always sends raw uint8."""
    model = view.models["cloud"]
    table = vision.stage_table(model)
    total = sum(t["flops"] for t in table.values())
    out = []
    for s in model.info["split_points"]:
        pre = vision.prefix_flops(model, s)
        for c in (("raw-uint8",) if s == "input" else codecs):
            out.append({"split": s, "codec": c, "edge_flops": pre, "cloud_flops": total - pre,
                        "up_bytes": payload_bytes(table[s]["shape"], c)})
    return out


def fake_quant(h, bits: int):
    """Per-example affine quantisation, as the channel's int8/int4 codecs do it."""
    levels = 2 ** bits - 1
    flat = h.reshape(h.shape[0], -1)
    lo, hi = flat.min(1, keepdims=True), flat.max(1, keepdims=True)
    scale = jnp.where(hi > lo, (hi - lo) / levels, 1.0)
    q = jnp.clip(jnp.round((flat - lo) / scale), 0, levels)
    return (q * scale + lo).reshape(h.shape)


class Split(Offload):
    manifest = api.Manifest(name="split", tracks=("infer",), applies_to=("infer/shapes-split*",),
                            paper="Kang et al., Neurosurgeon, ASPLOS 2017",
                            description="profiled split of the cloud CNN, fp32 activations")
    default_hparams = {"split": "auto", "profile": "lte"}
    sweep = tuple({"profile": p} for p in PROFILES)
    codec_up = "fp32"
    codecs = ("fp32",)

    def __init__(self, view, hp):
        super().__init__(view, hp)
        if view.mode != "split":
            raise TaskError(f"method {self.manifest.name} needs a split-mode shapes task "
                            "(infer/shapes-split); use early-exit on the exit task")
        points = view.models["cloud"].info["split_points"]
        if self.hp["profile"] not in view.profiles.network:
            raise TaskError(f"unknown profile '{self.hp['profile']}'; use one of "
                            f"{', '.join(view.profiles.network)}")
        if self.hp["split"] != "auto" and self.hp["split"] not in points:
            raise TaskError(f"unknown split '{self.hp['split']}'; use auto or one of {', '.join(points)}")
        self.choice = self.choose()
        self.split = self.choice["split"]
        if self.choice["codec"] != "raw-uint8":
            self.codec_up = self.choice["codec"]
        self.hp["codec_up"] = self.codec_up  # the channel's codec is part of the choice

    def choose(self) -> dict:
        opts = split_options(self.view, self.codecs)
        for o in opts:
            o["latency_s"] = modelled_latency(self.view, self.hp["profile"], o["edge_flops"],
                                              o["cloud_flops"], o["up_bytes"])
        if self.hp["split"] != "auto":
            opts = [o for o in opts if o["split"] == self.hp["split"]]
        return min(opts, key=lambda o: (o["latency_s"], o["up_bytes"]))

    # setup: the edge holds no model of its own here; the cloud ships its first stages
    def edge_setup(self, rng):
        return {}, {}

    def cloud_setup(self, uplink, rng):
        cs = dict(self.view.params)
        if self.split == "input":
            return cs, {}
        return cs, {"prefix": vision.stage_params(self.view.models["cloud"], cs["cloud"], self.split)}

    def edge_install(self, es, package, rng):
        return {**es, **package}

    def edge_part(self, es, x):
        if self.split == "input":
            return {"x": x.astype(jnp.uint8)}, None
        return {"h": self.view.models["cloud"].run(es["prefix"], x, "input", self.split)}, None

    def cloud_part(self, cs, payload):
        run = self.view.models["cloud"].run
        if self.split == "input":
            return run(cs["cloud"], payload["x"])
        return run(cs["cloud"], payload["h"], self.split, "logits")


class SplitQuant(Split):
    manifest = api.Manifest(name="split-quant", tracks=("infer",), applies_to=("infer/shapes-split*",),
                            paper="Li et al., JALAD, ICPADS 2018; Banitalebi-Dehkordi et al., Auto-Split, KDD 2021",
                            description="split point chosen for int8 (or int4) activations")
    default_hparams = {"split": "auto", "bits": None, "profile": "lte"}  # bits None: auto (int8)
    hparam_choices = {"bits": (None, "auto", 8, 4)}
    sweep = (tuple({"profile": p} for p in PROFILES)
             + tuple({"split": s, "bits": b} for s in ("pool1", "pool2", "pool3") for b in (8, 4)))
    codecs = ("int8",)

    def __init__(self, view, hp):
        bits = hp.get("bits")
        if bits not in (None, "auto", 8, 4):
            raise TaskError(f"bits must be auto, 8 or 4, not {bits!r}")
        self.codecs = (f"int{8 if bits in (None, 'auto') else bits}",)
        super().__init__(view, hp)
