"""Byzantine-robust aggregation (#18): FedAvg's clients and wire, with the cloud's
average replaced by a robust rule over the clients' updates ``uplink - global``.

Each defence subclasses :class:`baselines.fedavg.FedAvg` and only changes
``cloud_update`` (and the cloud state: ``{'w': global weights, 'v': the last
aggregate update}``; only the downlink ``w`` goes on the wire). Their cloud
FLOPs are metered by the harness like any cloud work. ``byz_frac`` is the
fraction of malicious clients the rule assumes (trimmed mean, Krum).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from lsbench import api
from baselines._train_common import concat_tiers, make_optimizer, opt_step, per_tier, supervised_loss
from baselines.fedavg import FedAvg

BYZ_TASKS = ("train/mnist1d*", "train/digits*", "*@*")


def _weighted_mean(d, w):
    w = jnp.asarray(w, jnp.float32)
    return jnp.tensordot(w / jnp.maximum(w.sum(), 1e-12), d, 1)


class _Robust(FedAvg):
    """FedAvg with ``aggregate(d float32[K, D], w float32[K], v float32[D], rng) -> float32[D]``."""
    default_hparams = {**FedAvg.default_hparams, "byz_frac": 0.2}

    def _n_byz(self, K):
        return min(int(float(self.hp["byz_frac"]) * K), (K - 1) // 2)

    # cloud
    def cloud_setup(self, rng):
        w = self.model.init(rng)
        return {"w": w, "v": jnp.zeros_like(ravel_pytree(w)[0])}

    def cloud_downlink(self, cloud, tier, ids):
        return cloud["w"]

    def cloud_update(self, cloud, rnd: api.Round, rng):
        msgs, w = rnd.messages, rnd.examples
        if per_tier(rnd, self.view.tiers):
            msgs, _ = concat_tiers({t: msgs[t] for t in self.view.tiers if t in msgs})
        flat, unravel = ravel_pytree(cloud["w"])
        d = jax.vmap(lambda m: ravel_pytree(m)[0])(msgs).astype(jnp.float32) - flat
        upd = self.aggregate(d, w, cloud["v"], rng, cloud)
        return {"w": unravel(flat + upd), "v": upd}

    def aggregate(self, d, w, v, rng, cloud):
        raise NotImplementedError

    # evaluation
    def predict_global_edge(self, cloud, x):
        return self.model.apply(cloud["w"], x)


class Median(_Robust):
    manifest = api.Manifest(
        name="median", tracks=("train",), applies_to=BYZ_TASKS,
        description="FedAvg with the coordinate-wise median of client updates",
        paper="Yin et al., Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates, ICML 2018")

    def aggregate(self, d, w, v, rng, cloud):
        return jnp.median(d, axis=0)


class TrimmedMean(_Robust):
    manifest = api.Manifest(
        name="trimmed-mean", tracks=("train",), applies_to=BYZ_TASKS,
        description="FedAvg with the coordinate-wise mean after dropping the byz_frac largest and smallest",
        paper="Yin et al., Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates, ICML 2018")

    def aggregate(self, d, w, v, rng, cloud):
        K, b = d.shape[0], self._n_byz(d.shape[0])
        return jnp.sort(d, axis=0)[b:K - b].mean(0)


def krum_scores(d, f):
    """Krum's score per client: the summed squared distances to its K - f - 2 nearest others."""
    K = d.shape[0]
    sq = jnp.sum(d * d, 1)
    dist = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * d @ d.T, 0.0)
    dist = jnp.where(jnp.eye(K, dtype=bool), jnp.inf, dist)
    n = max(K - f - 2, 1)
    return jnp.sort(dist, 1)[:, :n].sum(1)


class Krum(_Robust):
    manifest = api.Manifest(
        name="krum", tracks=("train",), applies_to=BYZ_TASKS,
        description="FedAvg keeping the one update closest to its K-f-2 neighbours (Krum)",
        paper="Blanchard et al., Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent, NeurIPS 2017")

    def aggregate(self, d, w, v, rng, cloud):
        return d[jnp.argmin(krum_scores(d, self._n_byz(d.shape[0])))]


class MultiKrum(_Robust):
    manifest = api.Manifest(
        name="multi-krum", tracks=("train",), applies_to=BYZ_TASKS,
        description="FedAvg over the K-f updates with the best Krum scores (example-weighted)",
        paper="Blanchard et al., Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent, NeurIPS 2017")

    def aggregate(self, d, w, v, rng, cloud):
        K = d.shape[0]
        f = self._n_byz(K)
        keep = jnp.argsort(krum_scores(d, f))[:K - f]
        sel = jnp.zeros((K,), jnp.float32).at[keep].set(1.0)
        return _weighted_mean(d, w * sel)


def _clip(d, tau):
    n = jnp.linalg.norm(d, axis=-1, keepdims=True)
    return d * jnp.minimum(1.0, tau / jnp.maximum(n, 1e-12))


class NormClip(_Robust):
    manifest = api.Manifest(
        name="norm-clip", tracks=("train",), applies_to=BYZ_TASKS,
        description="FedAvg of updates clipped to norm tau (default: the round's median norm)",
        paper="Sun et al., Can You Really Backdoor Federated Learning?, arXiv:1911.07963, 2019")
    default_hparams = {**_Robust.default_hparams, "tau": None}

    def aggregate(self, d, w, v, rng, cloud):
        tau = self.hp["tau"]
        tau = jnp.median(jnp.linalg.norm(d, axis=1)) if tau is None else float(tau)
        return _weighted_mean(_clip(d, tau), w)


class CenteredClip(_Robust):
    manifest = api.Manifest(
        name="centered-clip", tracks=("train",), applies_to=BYZ_TASKS,
        description="centered clipping around the last aggregate: v += mean(clip(d_i - v, tau)), iters times",
        paper="Karimireddy, He, Jaggi, Learning from History for Byzantine Robust Optimization, ICML 2021")
    default_hparams = {**_Robust.default_hparams, "tau": None, "iters": 3}

    def aggregate(self, d, w, v, rng, cloud):
        for _ in range(int(self.hp["iters"])):
            tau = self.hp["tau"]
            tau = jnp.median(jnp.linalg.norm(d - v, axis=1)) if tau is None else float(tau)
            v = v + _clip(d - v, tau).mean(0)
        return v


class FLTrust(_Robust):
    """The cloud trains the global model on the task's clean root set (``view.calib``,
    drawn from the public split) for as many steps as a client's budget, and weighs
    each client update by ReLU(cosine) with its own, rescaled to its own norm."""
    manifest = api.Manifest(
        name="fltrust", tracks=("train",), applies_to=("train/*-byz-*", "*@*"),
        description="cloud-anchored trust: client updates weighted by ReLU(cos) with the cloud's root-set update",
        paper="Cao et al., FLTrust: Byzantine-robust Federated Learning via Trust Bootstrapping, NDSS 2021")

    def __init__(self, view, hp):
        super().__init__(view, hp)
        if view.side == "cloud" and view.calib is None:
            raise api.TaskError(f"fltrust needs a clean root set (view.calib); task {view.task} has none: "
                                "run it on a train/*-byz-* task")

    def _root_update(self, w, rng):
        x, y = jnp.asarray(self.view.calib["x"]), jnp.asarray(self.view.calib["y"])
        v = self.view
        B = min(int(v.batch_size), int(y.shape[0]))
        steps = max(1, min(int(v.max_local_steps), math.ceil(float(v.local_epochs) * int(y.shape[0]) / B)))
        tx, loss = make_optimizer(self.hp), supervised_loss(self.model.apply)

        def body(c, k):
            p, o = c
            idx = jax.random.choice(k, y.shape[0], (B,), replace=False)
            p, o, _ = opt_step(tx, p, o, {"x": x[idx], "y": y[idx], "mask": jnp.ones((B,), bool)}, loss)
            return (p, o), None
        (p, _), _ = jax.lax.scan(body, (w, tx.init(w)), jax.random.split(rng, steps))
        return ravel_pytree(p)[0] - ravel_pytree(w)[0]

    def aggregate(self, d, w, v, rng, cloud):
        g0 = self._root_update(cloud["w"], rng)
        n0 = jnp.linalg.norm(g0)
        nd = jnp.maximum(jnp.linalg.norm(d, axis=1), 1e-12)
        ts = jax.nn.relu(d @ g0 / (nd * jnp.maximum(n0, 1e-12)))
        return jnp.tensordot(ts / jnp.maximum(ts.sum(), 1e-12), d * (n0 / nd)[:, None], 1)
