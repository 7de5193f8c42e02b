"""Baselines of the ``adapt/*`` tasks: full and parameter-efficient fine-tuning
of the pretrained backbone (``view.pretrained``), federated or local.

One class, ``Adapt``, parameterised by the delta kind (``lsbench.models.lora``)
and whether it communicates:
- ``fedavg-full``: full fine-tuning, the whole model down and up each round,
  example-weighted averaging (FedAvg on the pretrained start);
- ``local-full``: full fine-tuning, no communication;
- ``fedlora``: LoRA rank r (``rank``; ``where`` = all dense layers or the
  hidden ones; ``bias``: the layers' bias deltas too) on the frozen backbone;
  only A, B (and the bias deltas) go down and up and are averaged (as in
  FedIT, Zhang et al. 2024); Adam, as usual for LoRA;
- ``local-lora``: the same adapters, no communication;
- ``fedadapter``: bottleneck adapters (``bottleneck`` units) after each hidden
  layer, averaged;
- ``fedprompt``: a learned input prompt plus per-layer pre-activation shifts,
  averaged.
Each client keeps its last locally trained delta as its personal model
(``edge_personal_accuracy``); the cloud's average is the global model. Edge
FLOPs include the frozen backbone's forward and backward passes (the meter
counts the whole ``client_step``).
"""
from __future__ import annotations

from lsbench import api
from lsbench.models import lora
from baselines._train_common import make_optimizer, opt_step, weighted_average, xent


class Adapt(api.TrainMethod):
    """Not registered itself (no manifest)."""
    kind = "full"
    federated = True
    default_hparams = {"lr": 0.05, "momentum": 0.9}

    def _kw(self):
        hp = self.hp
        return {"rank": int(hp.get("rank", 4)), "where": hp.get("where", "all"),
                "bottleneck": int(hp.get("bottleneck", 8)), "bias": bool(hp.get("bias", True))}

    def _apply(self, delta, x):
        return lora.apply(self.view.pretrained, delta, x, self.kind, float(self.hp.get("lora_alpha", 8.0)))

    def _init(self, rng):
        import jax
        # A fixed key: every client and the cloud start from the same delta.
        return lora.init(self.kind, self.view.pretrained, jax.random.PRNGKey(0), **self._kw())

    # cloud
    def cloud_setup(self, rng):
        return self._init(rng)

    def cloud_downlink(self, cloud, tier, ids):
        return cloud if self.federated else {}

    def cloud_update(self, cloud, rnd: api.Round, rng):
        return weighted_average(rnd.messages, rnd.examples) if self.federated else cloud

    def predict_global_edge(self, cloud, x):
        return self._apply(cloud, x) if self.federated else None

    # edge
    def edge_setup(self, rng):
        return self._init(rng)

    def client_init(self, es, down, rng):
        start = down if self.federated else es
        return {"delta": start, "opt": make_optimizer(self.hp).init(start)}

    def client_step(self, cs, batch, rng):
        def loss(d, b):
            return xent(self._apply(d, b["x"]), b["y"], b["mask"])
        delta, opt, l = opt_step(make_optimizer(self.hp), cs["delta"], cs["opt"], batch, loss)
        return {"delta": delta, "opt": opt}, l

    def client_final(self, cs, es, rng):
        return cs["delta"], (cs["delta"] if self.federated else {})

    def predict_edge(self, es, x):
        return self._apply(es, x)


def _manifest(name, desc, paper="", reference=None):
    return api.Manifest(name=name, tracks=("train",), applies_to=("adapt",), description=desc,
                        paper=paper, reference=reference)


class FedAvgFull(Adapt):
    manifest = _manifest("fedavg-full", "FedAvg fine-tuning of the whole pretrained model",
                         "McMahan et al., AISTATS 2017")
    sweep = ({"lr": 0.02}, {"lr": 0.05}, {"lr": 0.1})


class LocalFull(Adapt):
    manifest = _manifest("local-full", "each client fine-tunes the whole model alone",
                         reference="local")
    federated = False
    sweep = ({"lr": 0.02}, {"lr": 0.05}, {"lr": 0.1})


class FedLoRA(Adapt):
    manifest = _manifest("fedlora", "LoRA adapters on the frozen backbone; only adapters travel",
                         "Hu et al., LoRA, ICLR 2022; Zhang et al., Towards Building the "
                         "Federated GPT: Federated Instruction Tuning (FedIT), ICASSP 2024")
    kind = "lora"
    default_hparams = {"optimizer": "adam", "lr": 3e-3, "rank": 4, "where": "all", "lora_alpha": 8.0,
                       "bias": True}
    sweep = ({"rank": 1}, {"rank": 2}, {"rank": 4}, {"rank": 8}, {"rank": 16})


class LocalLoRA(FedLoRA):
    manifest = _manifest("local-lora", "LoRA adapters trained per client; no communication",
                         reference="local")
    federated = False
    sweep = ({"rank": 4},)


class FedAdapter(Adapt):
    manifest = _manifest("fedadapter", "bottleneck adapters after each hidden layer, averaged",
                         "Houlsby et al., Parameter-Efficient Transfer Learning for NLP, ICML 2019; "
                         "Cai et al., FedAdapter, MobiCom 2023")
    kind = "adapter"
    default_hparams = {"optimizer": "adam", "lr": 3e-3, "bottleneck": 8}
    sweep = ({"bottleneck": 2}, {"bottleneck": 8}, {"bottleneck": 32})


class FedPrompt(Adapt):
    manifest = _manifest("fedprompt", "a learned input prompt and per-layer shifts, averaged",
                         "Bahng et al., Exploring Visual Prompts for Adapting Large-Scale Models, "
                         "2022; Guo et al., PromptFL, IEEE TMC 2023")
    kind = "prompt"
    default_hparams = {"optimizer": "adam", "lr": 1e-2}
    sweep = ({"lr": 3e-3}, {"lr": 1e-2}, {"lr": 3e-2})
