"""Harness-side attacks: the malicious clients of a training task (#18).

The attacker belongs to the **task**, not to the method. A task variant
(``tasks/train_byz.py``, e.g. ``train/mnist1d-byz-signflip-f20``) draws a fixed
fraction f of its clients as malicious from the root seed, and the harness
(``lsbench.attacks.hook.Byzantine`` on ``TrainInstance.attack``) makes them
misbehave. No view holds who they are; the method sees only what arrives
through the channel.

An attack is a class (:class:`Attack`) found like a method or a task: an entry
point in the ``lsbench.attacks`` group (``signflip``), ``pkg.mod:Class`` or
``path/to/file.py:Class``. It may do either or both of:

- ``poison(x, y, rng, num_classes) -> (x, y)`` (data poisoning): rewrites one
  malicious client's training examples when the task is built (NumPy);
- ``uplink(u, mal, ref, key) -> u`` (update attack): each round, a pure,
  jittable function of the sampled clients' delivered uplinks ``u`` (float32
  [K, D]: each client's floating leaves, flattened), ``mal`` (bool[K]: which
  are malicious), ``ref`` (float32[K, D]: the round's delivered downlink where
  its structure matches the uplink, so ``u - ref`` is a client's update; zeros
  otherwise) and a key. Only the rows where ``mal`` is set are used; honest
  rows of ``u`` are zeros unless the attack is ``omniscient`` (then only in
  the tasks whose name says ``-omni``). What a malicious client sends goes
  through the uplink codec and is billed like any other uplink.

``trigger(x)`` / ``target`` (a backdoor) make the loop report
``attack_asr_*``: the share of triggered test inputs (true label != target)
classified as ``target``.
"""
from __future__ import annotations

import importlib.metadata as md
import inspect
from typing import Any, Mapping

import numpy as np

from lsbench.errors import PluginError

ATTACK_GROUP = "lsbench.attacks"


class Attack:
    """Base class of attacks. ``name``; ``paper`` (the reference); ``default_hparams``
    (overridden by keyword arguments). An attack that can read honest clients' uplinks
    lists ``omniscient`` (default False) among them; the ``-omni`` tasks set it."""
    name: str = ""
    paper: str = ""
    default_hparams: Mapping[str, Any] = {}

    def __init__(self, **hp):
        bad = sorted(set(hp) - set(self.default_hparams))
        if bad:
            raise PluginError(f"attack {self.name}: unknown hyper-parameter(s) {', '.join(bad)}; "
                              f"use {', '.join(sorted(self.default_hparams)) or 'none'}")
        self.hp = {**self.default_hparams, **hp}

    # data poisoning (task build, NumPy): one malicious client's real examples
    def poison(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, num_classes: int):
        return x, y

    # update attack (each round, jittable)
    def uplink(self, u, mal, ref, key):
        return u

    # backdoor: triggered inputs and the label they should get (None: no backdoor)
    target: Any = None

    def trigger(self, x):
        return x

    @property
    def omniscient(self) -> bool:
        return bool(self.hp.get("omniscient", False))

    @property
    def poisons_data(self) -> bool:
        return type(self).poison is not Attack.poison

    @property
    def attacks_uplink(self) -> bool:
        return type(self).uplink is not Attack.uplink


def load_attack(ref, **hp) -> Attack:
    """An attack instance from an entry-point name, ``pkg.mod:Class``, ``file.py:Class``
    or a class; ``hp`` overrides its ``default_hparams``."""
    from lsbench import registry
    obj = ref
    if isinstance(ref, str):
        if registry._is_ref(ref):
            obj = registry._load_ref(ref, "attack")
            if inspect.ismodule(obj):
                found = [v for v in vars(obj).values() if inspect.isclass(v) and issubclass(v, Attack)
                         and v is not Attack and v.__module__ == obj.__name__]
                if len(found) != 1:
                    raise PluginError(f"attack file '{ref}' defines {len(found)} Attack classes; "
                                      "name one as file.py:ClassName")
                obj = found[0]
        else:
            eps = {ep.name: ep for ep in md.entry_points(group=ATTACK_GROUP)}
            if ref not in eps:
                raise PluginError(f"unknown attack '{ref}'; use one of {', '.join(sorted(eps))}, "
                                  "pkg.mod:Class or path/to/file.py:Class")
            obj = eps[ref].load()
    if not (inspect.isclass(obj) and issubclass(obj, Attack)):
        raise PluginError(f"attack '{ref}' is not a subclass of lsbench.attacks.Attack")
    if not obj.name:
        raise PluginError(f"attack '{ref}' has no name; set `name = \"...\"` on the class")
    return obj(**hp)


def list_attacks() -> dict:
    return {ep.name: ep.value for ep in sorted(md.entry_points(group=ATTACK_GROUP), key=lambda e: e.name)}


__all__ = ["ATTACK_GROUP", "Attack", "load_attack", "list_attacks"]
