"""Shared knowledge-distillation helpers for the large-small training methods.

Pure, jittable functions over plain parameter pytrees (built on
``baselines._train_common``):

``model_for``        the ModelDef of a tier (``edge/<tier>``, else ``edge``)
``need_public``      a one-line TaskError unless the view has a public split (cloud side)
``public_x``         the view's public split as float32 (a constant of the view's own data)
``public_window``    the public rows used in round r (a rolling window, no RNG)
``probs_xent``       masked cross-entropy to teacher *probabilities*
``era``              DS-FL's entropy-reduction aggregation (sharpened average)
``fit``              ``steps`` optimizer steps on random minibatches of rows (lax.scan)
``predict_rows``     a model's logits on many rows, in fixed-size chunks (lax.map)
``cap_n_pub``        a method's hyper-parameters with ``n_pub`` capped to the task's public split
``PublicExchange``   the round pipeline of FedMD, DS-FL and BiKD (soft labels on public rows)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from baselines._train_common import make_optimizer, opt_step, tier_model, weighted_average, xent
from lsbench import api
from lsbench.task import TaskError


def model_for(view, tier=None):
    """The edge ModelDef of ``tier`` (default: the view's tier): ``view.models['edge/<tier>']``,
    else ``'edge'``."""
    return tier_model(view, tier)


def need_public(view, method: str):
    """Raises a one-line TaskError when the task has no public split. Checked on the
    cloud side (an edge view holds the split only when the harness hands it over)."""
    if view.side == "cloud" and (view.public is None or len(view.public) == 0):
        raise TaskError(f"method {method} needs the task's public unlabelled split (view.public) but task "
                        f"{view.task} has none; pick a task with a public split, e.g. train/mnist1d")


def public_x(view, method: str = "method"):
    """The view's public split as float32 (read at trace time: a constant equal to the
    view's own array, which sealing allows)."""
    if view.public is None:
        raise TaskError(f"method {method}: the {view.side} view has no public split; "
                        "set edge_uses_public = True to have it on the edge")
    return jnp.asarray(np.asarray(view.public, np.float32))


def cap_n_pub(hp: dict, spec) -> dict:
    """``hp`` with ``n_pub`` capped to the rows of ``spec``'s public split: the
    hyper-parameters a run on that task actually uses (the suite runs sweep points
    that cap to the same values once). Unknown datasets are left as they are."""
    cfg = getattr(spec, "config", None) or {}
    if "n_pub" not in hp or "dataset" not in cfg:
        return hp
    from lsbench.data.catalog import public_rows
    rows = public_rows(cfg["dataset"], **dict(cfg.get("data", {})))
    return dict(hp, n_pub=min(int(hp["n_pub"]), rows)) if rows else hp


def public_window(r, n_pub: int, n_total: int):
    """int32[n_pub] indices of the public rows used in round ``r`` (wraps around)."""
    return (jnp.asarray(r, jnp.int32) * n_pub + jnp.arange(n_pub, dtype=jnp.int32)) % n_total


def probs_xent(logits, probs, mask=None, T: float = 1.0):
    """Cross-entropy of ``softmax(logits / T)`` to given target probabilities, times T^2."""
    lq = jax.nn.log_softmax(logits.astype(jnp.float32) / T)
    ce = -jnp.sum(probs.astype(jnp.float32) * lq, -1) * (T * T)
    if mask is None:
        return ce.mean()
    m = mask.astype(jnp.float32)
    return jnp.sum(ce * m) / jnp.maximum(m.sum(), 1.0)


def era(mean_probs, T: float):
    """Entropy-reduction averaging (Itahara et al.): softmax(mean_probs / T), T < 1 sharpens."""
    return jax.nn.softmax(mean_probs.astype(jnp.float32) / T, axis=-1)


def fit(tx, params, loss_fn, n_rows, steps: int, batch: int, key, row_weight=None):
    """``steps`` optimizer steps of ``loss_fn(params, idx, mask)`` on random minibatches.

    ``idx`` are int32[batch] row indices drawn uniformly from ``[0, n_rows)`` (or
    in proportion to ``row_weight``, e.g. a validity mask); ``mask`` is the
    batch's bool[batch] validity. A traced ``n_rows`` is fine. Returns params.
    """
    if steps <= 0:
        return params
    opt_state = tx.init(params)

    def body(carry, k):
        p, s = carry
        if row_weight is None:
            idx = jax.random.randint(k, (batch,), 0, jnp.maximum(n_rows, 1))
            mask = jnp.broadcast_to(jnp.asarray(n_rows) > 0, (batch,))
        else:
            w = row_weight.astype(jnp.float32)
            logits = jnp.where(w > 0, jnp.log(jnp.maximum(w, 1e-30)), -jnp.inf)
            logits = jnp.where(jnp.any(w > 0), logits, 0.0)
            idx = jax.random.categorical(k, logits, shape=(batch,))
            mask = w[idx] > 0
        p, s, loss = opt_step(tx, p, s, (idx, mask), lambda q, b: loss_fn(q, *b))
        return (p, s), loss

    (params, _), _ = jax.lax.scan(body, (params, opt_state), jax.random.split(key, steps))
    return params


def predict_rows(apply, params, x, chunk: int = 512):
    """``apply(params, x)`` over many rows in fixed chunks (bounded memory); logits[n, C]."""
    n = x.shape[0]
    if n <= chunk:
        return apply(params, x)
    pad = (-n) % chunk
    xp = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x
    out = jax.lax.map(lambda xb: apply(params, xb), xp.reshape((-1, chunk) + x.shape[1:]))
    return out.reshape((-1,) + out.shape[2:])[:n]


# ---- the public-set exchange pipeline shared by FedMD, DS-FL and BiKD -------------


class PublicExchange(api.TrainMethod):
    """Edges keep their own (possibly heterogeneous) models and never send weights.

    Round r (the cloud's counter ``r``; window W_r = ``public_window(r, n_pub)``):
    downlink = ``{"r": int32, "target": f32[n_pub, C]}`` (the knowledge for
    W_{r-1}; empty in round 0); ``client_init`` digests it on W_{r-1}
    (``digest_steps`` minibatches); ``client_step`` trains on private data;
    ``client_final`` runs the edge model on W_r and uploads ``payload(logits)``;
    ``cloud_update`` turns the uploads into the next ``target`` (subclasses).
    All public-set forward passes run in client functions, so they are edge FLOPs.
    The edges hold the public split (``edge_uses_public``: billed once per client
    as setup bytes down). Each edge object's model is its tier's (``view.tier``).
    """
    per_client_downlink = False
    edge_uses_public = True
    common_hparams = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "n_pub": 500, "digest_steps": 20,
                      "digest_batch": 64, "digest_lr": 0.05, "digest_optimizer": "sgd"}

    def __init__(self, view, hp):
        super().__init__(view, hp)
        need_public(view, self.manifest.name)
        self.tx = make_optimizer(self.hp)
        self.tx_digest = make_optimizer({"lr": self.hp["digest_lr"], "momentum": self.hp["momentum"],
                                         "optimizer": self.hp["digest_optimizer"]})

    @classmethod
    def effective_hparams(cls, hp, spec):
        return cap_n_pub(hp, spec)

    @property
    def xpub(self):
        return public_x(self.view, self.manifest.name)

    @property
    def n_pub(self):
        return int(min(self.hp["n_pub"], len(self.view.public)))

    # --- hooks ---
    def edge_model(self):
        return model_for(self.view)

    def payload(self, logits, hist):
        """What an edge uploads, from its public logits and the label counts of
        its local steps this round (default: the logits only)."""
        return logits

    def digest_loss(self, logits, target):
        raise NotImplementedError

    def cloud_init_extra(self, rng):
        return {}

    def cloud_target(self, cloud, rnd: api.Round, rng):
        """(new target f32[n_pub, C], new extra cloud state) from the round's uploads
        (``rnd.messages``: the payloads of all clients, stacked)."""
        raise NotImplementedError

    # --- the pipeline ---
    # cloud
    def cloud_setup(self, rng):
        C = self.view.num_classes
        return {"r": jnp.int32(0), "target": jnp.zeros((self.n_pub, C), jnp.float32),
                "extra": self.cloud_init_extra(rng)}

    # edge
    def edge_setup(self, rng):
        return self.edge_model().init(rng)

    # cloud
    def cloud_downlink(self, cloud, tier, ids):
        return {"r": cloud["r"], "target": cloud["target"]}

    # edge
    def client_init(self, params, down, rng):
        apply = self.edge_model().apply
        xpub = self.xpub
        r = down["r"]
        xw = xpub[public_window(r - 1, self.n_pub, xpub.shape[0])]
        on = (r > 0).astype(jnp.float32)

        def loss(p, idx, mask):
            return on * self.digest_loss(apply(p, xw[idx]), down["target"][idx])

        p = fit(self.tx_digest, params, loss, self.n_pub, int(self.hp["digest_steps"]),
                int(self.hp["digest_batch"]), rng)
        return {"p": p, "o": self.tx.init(p), "r": r, "hist": jnp.zeros((self.view.num_classes,), jnp.float32)}

    def client_step(self, cs, batch, rng):
        apply = self.edge_model().apply
        p, o, loss = opt_step(self.tx, cs["p"], cs["o"], batch,
                              lambda q, b: xent(apply(q, b["x"]), b["y"], b["mask"]))
        hist = cs["hist"] + jnp.sum(jax.nn.one_hot(batch["y"], self.view.num_classes) * batch["mask"][:, None], 0)
        return {"p": p, "o": o, "r": cs["r"], "hist": hist}, loss

    def client_final(self, cs, params, rng):
        apply = self.edge_model().apply
        xpub = self.xpub
        xw = xpub[public_window(cs["r"], self.n_pub, xpub.shape[0])]
        return cs["p"], self.payload(predict_rows(apply, cs["p"], xw), cs["hist"])

    # cloud
    def cloud_update(self, cloud, rnd: api.Round, rng):
        target, extra = self.cloud_target(cloud, rnd, rng)
        return {"r": cloud["r"] + 1, "target": target, "extra": extra}

    def cloud_window(self, cloud):
        """The public rows of this round's window (cloud side)."""
        xpub = self.xpub
        return xpub[public_window(cloud["r"], self.n_pub, xpub.shape[0])]

    def mean_payload(self, rnd: api.Round):
        """The example-weighted mean of the round's payloads."""
        return weighted_average(rnd.messages, rnd.examples)

    # evaluation
    def predict_edge(self, params, x):
        return self.edge_model().apply(params, x)
