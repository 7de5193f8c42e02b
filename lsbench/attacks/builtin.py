"""The built-in attacks (entry points in ``lsbench.attacks``). See ``lsbench.attacks``
for the contract: ``uplink(u, mal, ref, key)`` on float32[K, D] rows (``u - ref``
is a client's update), ``poison(x, y, rng, num_classes)`` on one client's data."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from lsbench.attacks import Attack


def _stats(u, ref, rows):
    """Coordinate-wise mean and std of the updates ``u - ref`` over the rows where
    ``rows`` (bool[K]) is set."""
    d = u - ref
    w = rows.astype(jnp.float32)[:, None]
    n = jnp.maximum(w.sum(), 1.0)
    mu = (d * w).sum(0) / n
    var = (jnp.square(d - mu) * w).sum(0) / n
    return mu, jnp.sqrt(var)


class SignFlip(Attack):
    """Sign flipping: a malicious client sends its update reversed and scaled,
    ``ref - scale * (u - ref)``.
    Paper: Li, Xu, Chen, Giannakis, Ling, "RSA: Byzantine-Robust Stochastic Aggregation
    Methods for Distributed Learning from Heterogeneous Datasets", AAAI 2019."""
    name = "signflip"
    paper = "Li et al., RSA: Byzantine-Robust Stochastic Aggregation Methods ..., AAAI 2019"
    default_hparams = {"scale": 4.0}

    def uplink(self, u, mal, ref, key):
        return ref - float(self.hp["scale"]) * (u - ref)


class GaussianNoise(Attack):
    """Gaussian noise: a malicious client replaces its update by N(0, sigma^2) noise.
    Paper: Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with Adversaries:
    Byzantine Tolerant Gradient Descent" (Krum), NeurIPS 2017 (Gaussian Byzantine workers)."""
    name = "noise"
    paper = "Blanchard et al., Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent, NeurIPS 2017"
    default_hparams = {"sigma": 1.0}

    def uplink(self, u, mal, ref, key):
        return ref + float(self.hp["sigma"]) * jax.random.normal(key, u.shape, jnp.float32)


class LabelFlip(Attack):
    """Label flipping (data poisoning): every label l of a malicious client becomes L - 1 - l.
    Paper: Fang, Cao, Jia, Gong, "Local Model Poisoning Attacks to Byzantine-Robust
    Federated Learning", USENIX Security 2020 (label flipping attack)."""
    name = "labelflip"
    paper = "Fang et al., Local Model Poisoning Attacks to Byzantine-Robust Federated Learning, USENIX Security 2020"

    def poison(self, x, y, rng, num_classes):
        return x, (num_classes - 1 - y).astype(y.dtype)


class ALIE(Attack):
    """A Little Is Enough: malicious clients all send ``mean - z * std`` of the updates,
    coordinate-wise, with z the largest shift the majority still hides:
    s = floor(K/2 + 1) - m, z = Phi^-1((K - s) / K) (K sampled, m malicious).
    The statistics come from the malicious clients' own honest updates, or from
    every sampled client's (``omniscient``: the ``-omni`` tasks).
    Paper: Baruch, Baruch, Goldberg, "A Little Is Enough: Circumventing Defenses For
    Distributed Learning", NeurIPS 2019."""
    name = "alie"
    paper = "Baruch et al., A Little Is Enough: Circumventing Defenses For Distributed Learning, NeurIPS 2019"
    default_hparams = {"z": None, "omniscient": False}

    def uplink(self, u, mal, ref, key):
        K = u.shape[0]
        rows = jnp.ones_like(mal) if self.omniscient else mal
        mu, sd = _stats(u, ref, rows)
        if self.hp["z"] is None:
            m = mal.sum()
            s = jnp.floor(K / 2 + 1) - m
            z = jnp.maximum(norm.ppf(jnp.clip((K - s) / K, 0.5, 0.999)), 0.0)
        else:
            z = float(self.hp["z"])
        return jnp.broadcast_to(ref + mu - z * sd, u.shape)


class IPM(Attack):
    """Inner-product manipulation: malicious clients send ``-epsilon`` times the mean
    update, so the aggregate's inner product with the true gradient turns negative.
    Mean of the malicious clients' own honest updates, or of every sampled client's
    (``omniscient``: the ``-omni`` tasks).
    Paper: Xie, Koyejo, Gupta, "Fall of Empires: Breaking Byzantine-tolerant SGD by Inner
    Product Manipulation", UAI 2019 (PMLR 115, 2020)."""
    name = "ipm"
    paper = "Xie et al., Fall of Empires: Breaking Byzantine-tolerant SGD by Inner Product Manipulation, UAI 2019"
    default_hparams = {"epsilon": 0.5, "omniscient": False}

    def uplink(self, u, mal, ref, key):
        rows = jnp.ones_like(mal) if self.omniscient else mal
        mu, _ = _stats(u, ref, rows)
        return jnp.broadcast_to(ref - float(self.hp["epsilon"]) * mu, u.shape)


class Backdoor(Attack):
    """Backdoor: a malicious client stamps a trigger (alternating +value/-value on the
    last ``size`` input features: the end of the series, the last pixels of an image)
    on a ``fraction`` of its examples and labels them ``target``; ``boost`` > 1 also
    scales its update (model replacement). The loop reports ``attack_asr_*``.
    Paper: Bagdasaryan, Veit, Hua, Estrin, Shmatikov, "How To Backdoor Federated
    Learning", AISTATS 2020 (trigger: Gu et al., BadNets, 2017)."""
    name = "backdoor"
    paper = "Bagdasaryan et al., How To Backdoor Federated Learning, AISTATS 2020"
    default_hparams = {"target": 0, "fraction": 0.5, "size": 6, "value": 3.0, "boost": 1.0}

    @property
    def target(self):
        return int(self.hp["target"])

    @property
    def attacks_uplink(self):
        return float(self.hp["boost"]) != 1.0

    def _pattern(self, d):
        k = min(int(self.hp["size"]), d)
        return k, float(self.hp["value"]) * np.where(np.arange(k) % 2 == 0, 1.0, -1.0)

    def trigger(self, x):
        shape = x.shape
        flat = x.reshape(shape[0], -1)
        k, pat = self._pattern(flat.shape[1])
        if isinstance(flat, np.ndarray):
            flat = flat.copy()
            flat[:, -k:] = pat.astype(flat.dtype)
        else:
            flat = flat.at[:, -k:].set(jnp.asarray(pat, flat.dtype))
        return flat.reshape(shape)

    def poison(self, x, y, rng, num_classes):
        n = len(y)
        pick = rng.random(n) < float(self.hp["fraction"])
        x, y = x.copy(), y.copy()
        if pick.any():
            x[pick] = self.trigger(x[pick])
            y[pick] = self.target
        return x, y

    def uplink(self, u, mal, ref, key):
        return ref + float(self.hp["boost"]) * (u - ref)
