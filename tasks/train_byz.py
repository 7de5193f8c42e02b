"""Byzantine variants of the training tasks (#18): ``train/<base>-byz-<attack>-f<pct>``.

The base task (``train/mnist1d`` or ``train/digits``) is built as usual, then a
fraction f of its clients (drawn from the root seed; see
``lsbench.attacks.hook``) become malicious: data attacks poison their training
examples at build time, update attacks replace their uplinks each round. The
attacker belongs to the task; no view says who it is. ``-omni`` tasks let the
attack read every sampled client's uplink (ALIE, IPM); the others see only the
malicious clients' own.

The cloud view also holds ``calib``: a clean labelled root set of ``root_n``
(100) examples drawn (by the root seed) from the base task's public split, for
defences that anchor trust on the cloud (FLTrust). Edges never get it. Base
tasks without a labelled public split get no root set (``root_n`` 0).

Metrics: the base task's (``edge_accuracy`` = clean test accuracy of the global
edge model), plus ``attack_asr_edge`` / ``attack_asr_cloud`` for the backdoor.
The accuracy drop vs f = 0 is ``metrics.edge_accuracy`` of the same method and
seed on ``train/<base>-byz-f0`` (the same task, nobody malicious: bit for bit the
base task's run for methods that ignore ``calib``) minus this task's; the
benchmark (``benchmarks/bench_byzantine.py``) reports it.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from lsbench.task import TaskError, TaskSpec

# (name suffix, attack entry point, attack hyper-parameters)
ATTACKS = (("signflip", "signflip", {}), ("noise", "noise", {}), ("labelflip", "labelflip", {}),
           ("alie", "alie", {}), ("alie-omni", "alie", {"omniscient": True}),
           ("ipm", "ipm", {}), ("ipm-omni", "ipm", {"omniscient": True}),
           ("backdoor", "backdoor", {}))
ROOT_N = 100
VERSION = 1  # a variant's version is "<base version>.<VERSION>": bump on changes here
LABELLED_PUBLIC = ("mnist1d", "digits")  # datasets whose public split has labels (the root set)


def _public_labelled(base_cfg, data_dir):
    """(x, y) of the base dataset's public split, labels included."""
    from lsbench.data import tfds_util
    name = base_cfg["dataset"]
    if name == "digits":
        from lsbench.data.digits import LsbenchDigits
        b = tfds_util.prepare(LsbenchDigits, data_dir)
    elif name == "mnist1d":
        from lsbench.data.mnist1d_data import Mnist1d
        b = tfds_util.prepare(Mnist1d, data_dir, config=dict(base_cfg.get("data", {})).get("size", "default"))
    else:
        raise TaskError(f"Byzantine tasks need a labelled public split; dataset '{name}' has none "
                        "(use mnist1d or digits)")
    s = tfds_util.load_splits(b, ("public",))["public"]
    return np.asarray(s["x"]), np.asarray(s["y"], np.int32)


def build(spec, data_dir, seed, base: TaskSpec):
    from lsbench.attacks import load_attack
    from lsbench.attacks.hook import SALT, with_attack
    cfg = spec.config
    inst = base.build(data_dir, seed)
    attack = load_attack(cfg["attack"], **dict(cfg.get("attack_hp", {})))
    k = inst.cloud_view.num_classes
    inst = with_attack(inst, attack, float(cfg["frac"]), seed, k)
    calib = None
    if int(cfg["root_n"]):
        px, py = _public_labelled(base.config, data_dir)
        pick = np.sort(np.random.default_rng([seed, SALT, 1]).choice(len(py), int(cfg["root_n"]), replace=False))
        calib = {"x": px[pick], "y": py[pick]}
    name = dict(task=spec.name, version=spec.version)
    edge = {t: dataclasses.replace(v, **name) for t, v in inst.edge_views.items()}
    cloud = dataclasses.replace(inst.cloud_view, calib=calib, **name)
    hashes = dict(inst.hashes, base=f"{base.name}@{base.version}")
    return dataclasses.replace(inst, edge_views=edge, cloud_view=cloud, hashes=hashes)


def variant(base: TaskSpec, attack: str, frac: float, attack_hp=None, name: str = "",
            suffix: str = "") -> TaskSpec:
    """The Byzantine variant of ``base``: ``attack`` (an attack name or reference)
    on ``round(frac * C)`` clients."""
    pct = int(round(100 * float(frac)))
    name = name or f"{base.name}-byz-{suffix or attack}-f{pct}"
    omni = " (omniscient)" if dict(attack_hp or {}).get("omniscient") else ""
    desc = (f"{base.name} with {pct}% malicious clients: {attack}{omni}" if pct else
            f"{base.name} with nobody malicious (the f = 0 reference of its -byz-* tasks)")
    return dataclasses.replace(
        base, name=name, version=f"{base.version}.{VERSION}", builder=functools.partial(build, base=base),
        target=None, description=desc,
        config={"base": base.name, "attack": attack, "attack_hp": dict(attack_hp or {}),
                "frac": float(frac), "root_n": ROOT_N if base.config.get("dataset") in LABELLED_PUBLIC else 0})


def from_ref(name: str) -> TaskSpec:
    """``TASK@ATTACK`` (the CLI's ``--attack``): TASK's attack replaced by ATTACK (an
    entry point, ``pkg.mod:Class`` or ``file.py:Class``), with TASK's fraction of
    malicious clients (0.2 when TASK is a clean task)."""
    from lsbench import registry
    from lsbench.attacks import load_attack
    task, _, ref = name.partition("@")
    spec = registry.load_task(task)
    load_attack(ref)  # a bad reference fails here, with one line
    frac = 0.2
    if isinstance(spec.builder, functools.partial) and spec.builder.func is build:
        frac, spec = spec.config["frac"], registry.load_task(spec.config["base"])
    return variant(spec, ref, frac, name=name)


def _variants(base: TaskSpec) -> dict:
    out = {s: variant(base, a, 0.2, hp, suffix=s) for s, a, hp in ATTACKS}
    out["f0"] = variant(base, "signflip", 0.0, name=f"{base.name}-byz-f0")
    return out


def _bases():
    from tasks import train_digits, train_mnist1d
    return train_mnist1d.TASK, train_digits.TASK


_MNIST1D, _DIGITS = (_variants(b) for b in _bases())
# entry points: tasks.train_byz:MNIST1D_SIGNFLIP etc.
globals().update({f"{p}_{k.replace('-', '_').upper()}": v
                  for p, d in (("MNIST1D", _MNIST1D), ("DIGITS", _DIGITS)) for k, v in d.items()})
