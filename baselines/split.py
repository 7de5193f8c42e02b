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
  scale + fp32 zero-point). With ``split="auto"`` the split point and the
  bit-width are chosen together: the lowest modelled latency among the
  (split, bits) whose predictions agree with the fp32 cloud model on at least
  ``min_agreement`` of the task's unlabelled calibration images (checked once,
  at construction, on ``agree_n`` of them).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

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


def modelled_latency(ctx: api.TaskContext, profile: str, edge_flops: float, cloud_flops: float,
                     up_bytes: float, down_bytes: float = 4) -> float:
    """Seconds per example under the task's network/device profiles (one round trip)."""
    net = ctx.extras["profiles"]["network"][profile]
    dev = ctx.extras["profiles"]["device"]
    return (edge_flops / dev["edge"]["flops_per_s"] + net["rtt_s"] + up_bytes * 8 / net["up_bps"]
            + cloud_flops / dev["cloud"]["flops_per_s"] + down_bytes * 8 / net["down_bps"])


def split_options(ctx: api.TaskContext, codecs) -> list[dict]:
    """Every (split, codec) with its modelled costs; ``input`` always sends raw uint8."""
    model = ctx.models["cloud"]
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
    families = ("infer/shapes-split*",)  # the suite's grid: which tasks this method applies to
    manifest = api.Manifest(name="split", tracks=("infer",), paper="Kang et al., Neurosurgeon, ASPLOS 2017",
                            description="profiled split of the cloud CNN, fp32 activations")
    default_hparams = {"split": "auto", "profile": "lte"}
    sweep = tuple({"profile": p} for p in PROFILES)
    codec_up = "fp32"
    codecs = ("fp32",)

    def __init__(self, ctx, hp):
        super().__init__(ctx, hp)
        if ctx.extras.get("mode") != "split":
            raise TaskError(f"method {self.manifest.name} needs a split-mode shapes task "
                             "(infer/shapes-split); use early-exit on the exit task")
        points = ctx.models["cloud"].info["split_points"]
        if self.hp["profile"] not in ctx.extras["profiles"]["network"]:
            raise TaskError(f"unknown profile '{self.hp['profile']}'; use one of "
                             f"{', '.join(ctx.extras['profiles']['network'])}")
        if self.hp["split"] != "auto" and self.hp["split"] not in points:
            raise TaskError(f"unknown split '{self.hp['split']}'; use auto or one of {', '.join(points)}")
        self.choice = self.choose()
        self.split = self.choice["split"]
        if self.choice["codec"] != "raw-uint8":
            self.codec_up = self.choice["codec"]

    def feasible(self, options):
        return options

    def choose(self) -> dict:
        opts = split_options(self.ctx, self.codecs)
        for o in opts:
            o["latency_s"] = modelled_latency(self.ctx, self.hp["profile"], o["edge_flops"],
                                              o["cloud_flops"], o["up_bytes"])
        if self.hp["split"] != "auto":
            opts = [o for o in opts if o["split"] == self.hp["split"]]
        if self.hp["split"] == "auto" or self.hp.get("bits", "auto") == "auto":
            opts = self.feasible(opts) or opts
        return min(opts, key=lambda o: (o["latency_s"], o["up_bytes"]))

    def prepare(self, calib, rng):
        # the edge holds the cloud model's prefix weights (we keep the whole pytree)
        return self.ctx.params["cloud"], self.ctx.params["cloud"]

    def edge_part(self, es, x):
        if self.split == "input":
            return {"x": x.astype(jnp.uint8)}, None
        return {"h": self.ctx.models["cloud"].info["run"](es, x, "input", self.split)}, None

    def cloud_part(self, cs, payload):
        run = self.ctx.models["cloud"].info["run"]
        if self.split == "input":
            return run(cs, payload["x"])
        return run(cs, payload["h"], self.split, "logits")


class SplitQuant(Split):
    manifest = api.Manifest(name="split-quant", tracks=("infer",),
                            paper="Li et al., JALAD, ICPADS 2018; Banitalebi-Dehkordi et al., Auto-Split, KDD 2021",
                            description="split point and int8/int4 activations chosen together")
    default_hparams = {"split": "auto", "bits": "auto", "profile": "lte", "min_agreement": 0.99,
                       "agree_n": 256}
    sweep = (tuple({"profile": p} for p in PROFILES)
             + tuple({"split": s, "bits": b} for s in ("pool1", "pool2", "pool3") for b in (8, 4)))
    codecs = ("int8", "int4")

    def __init__(self, ctx, hp):
        bits = hp.get("bits", "auto")
        if bits not in ("auto", 8, 4):
            raise TaskError(f"bits must be auto, 8 or 4, not {bits!r}")
        if bits != "auto":
            self.codecs = (f"int{bits}",)
        super().__init__(ctx, hp)

    def feasible(self, options):
        """Keeps the options whose predictions agree with the fp32 model often enough."""
        if self.ctx.public is None or self.hp["min_agreement"] <= 0:
            return options
        x = jnp.asarray(np.asarray(self.ctx.public)[: self.hp["agree_n"]])
        p, run = self.ctx.params["cloud"], self.ctx.models["cloud"].info["run"]
        ref = jnp.argmax(run(p, x), -1)
        keep = []
        for o in options:
            if o["codec"] == "raw-uint8":
                keep.append(o)
                continue
            h = fake_quant(run(p, x, "input", o["split"]), int(o["codec"][3:]))
            o["agreement"] = float((jnp.argmax(run(p, h, o["split"], "logits"), -1) == ref).mean())
            if o["agreement"] >= self.hp["min_agreement"]:
                keep.append(o)
        return keep
