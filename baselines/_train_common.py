"""Shared supervised-training helpers for training-track baselines.

Pure functions over plain parameter pytrees; the baselines (and the
large-small methods) import these names, so keep them stable:

``xent``            masked mean cross-entropy over a batch
``soft_xent``       masked distillation loss against teacher logits (temperature T)
``supervised_loss`` (apply) -> loss_fn(params, batch) for ``{'x','y','mask'}`` batches
``make_optimizer``  optax transform from hyper-parameters (lr, momentum, weight_decay)
``opt_step``        one optax step of any loss_fn; returns (params, opt_state, loss)
``sgd_step``        ``opt_step`` with the optimizer built from hyper-parameters
``prox_term``       (mu / 2) * ||params - anchor||^2, FedProx's proximal term
``concat_tiers``    stacks per-tier uplinks (same structure) into one client axis
``weighted_average`` example-weighted mean of stacked uplinks over clients
``per_tier``        whether a ``Round``'s messages are a per-tier mapping
``tier_groups``     a ``Round`` split into one group per tier (static slices, or masked weights)
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

tmap = jax.tree_util.tree_map


def xent(logits, y, mask=None):
    """Mean cross-entropy over the rows where ``mask`` is set (all rows if None)."""
    lp = jax.nn.log_softmax(logits.astype(jnp.float32))
    nll = -jnp.take_along_axis(lp, y.astype(jnp.int32)[:, None], -1)[:, 0]
    if mask is None:
        return nll.mean()
    m = mask.astype(jnp.float32)
    return jnp.sum(nll * m) / jnp.maximum(m.sum(), 1.0)


def soft_xent(logits, teacher_logits, mask=None, T: float = 1.0):
    """Cross-entropy to the teacher's softened distribution, times T^2 (Hinton et al.)."""
    p = jax.nn.softmax(teacher_logits.astype(jnp.float32) / T)
    lq = jax.nn.log_softmax(logits.astype(jnp.float32) / T)
    ce = -jnp.sum(p * lq, -1) * (T * T)
    if mask is None:
        return ce.mean()
    m = mask.astype(jnp.float32)
    return jnp.sum(ce * m) / jnp.maximum(m.sum(), 1.0)


def supervised_loss(apply: Callable) -> Callable:
    """loss_fn(params, batch) = masked cross-entropy of ``apply(params, batch['x'])``."""
    def loss_fn(params, batch):
        return xent(apply(params, batch["x"]), batch["y"], batch["mask"])
    return loss_fn


def make_optimizer(hp: Mapping[str, Any]) -> optax.GradientTransformation:
    """SGD with optional momentum and decoupled weight decay, from ``hp``
    (``lr``, ``momentum`` default 0, ``weight_decay`` default 0), or Adam if
    ``hp['optimizer'] == 'adam'``."""
    lr = float(hp["lr"])
    if hp.get("optimizer", "sgd") == "adam":
        tx = optax.adam(lr)
    else:
        mom = float(hp.get("momentum", 0.0))
        tx = optax.sgd(lr, momentum=mom if mom > 0 else None)
    wd = float(hp.get("weight_decay", 0.0))
    return optax.chain(optax.add_decayed_weights(wd), tx) if wd > 0 else tx


def opt_step(tx, params, opt_state, batch, loss_fn):
    """One optimizer step of ``loss_fn(params, batch)``; returns (params, opt_state, loss)."""
    loss, g = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = tx.update(g, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def sgd_step(hp, params, opt_state, batch, loss_fn):
    """``opt_step`` with the optimizer built from ``hp`` (see ``make_optimizer``)."""
    return opt_step(make_optimizer(hp), params, opt_state, batch, loss_fn)


def prox_term(params, anchor, mu):
    """(mu / 2) * ||params - anchor||^2 (FedProx)."""
    sq = sum(jnp.sum(jnp.square(p - a)) for p, a in
             zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(anchor)))
    return 0.5 * mu * sq


def concat_tiers(uplinks: Mapping[str, Any], weights=None):
    """Concatenates per-tier stacked pytrees (identical structure) along the client
    axis; returns (stacked, weights): ``weights`` concatenated too when it is a
    per-tier mapping, passed through otherwise (None when not given)."""
    names = list(uplinks)
    ups = tmap(lambda *a: jnp.concatenate(a), *[uplinks[n] for n in names])
    if isinstance(weights, Mapping):
        weights = jnp.concatenate([jnp.asarray(weights[n], jnp.float32) for n in names])
    return ups, weights


def per_tier(rnd, tiers) -> bool:
    """True when ``rnd.messages`` is the harness's per-tier mapping ``{tier: stacked}``
    (tiers' uplinks differ in shape), False when it is one stack of all clients."""
    m = rnd.messages
    if not isinstance(m, Mapping) or len(m) < 2 or not set(m) <= set(tiers):
        return False
    K = rnd.examples.shape[0]
    leads = [{a.shape[0] for a in jax.tree_util.tree_leaves(v)} for v in m.values()]
    return all(len(s) == 1 for s in leads) and sum(next(iter(s)) for s in leads) == K


def tier_groups(rnd, tiers):
    """The round per tier: ``[(tier, messages, examples)]`` in tier order.

    Per-tier messages are sliced statically (only the tiers that took part);
    stacked messages are shared by every tier of ``tiers``, with ``examples``
    zeroed for the other tiers' clients (``rnd.tier`` indexes ``tiers``).
    Clients are in tier order (``view.tiers``); note that a JAX mapping comes
    back with its keys sorted, so walk ``tiers``, not the mapping."""
    if per_tier(rnd, tiers):
        out, i = [], 0
        for t in tiers:
            if t not in rnd.messages:
                continue
            m = rnd.messages[t]
            k = jax.tree_util.tree_leaves(m)[0].shape[0]
            out.append((t, m, rnd.examples[i:i + k]))
            i += k
        return out
    return [(t, rnd.messages, jnp.where(rnd.tier == j, rnd.examples, 0.0)) for j, t in enumerate(tiers)]


def weighted_average(uplinks, weights):
    """Example-weighted mean over clients. ``uplinks``/``weights`` are either
    stacked arrays (leading client axis) or both per-tier mappings of them."""
    if isinstance(uplinks, Mapping) and isinstance(weights, Mapping):
        uplinks, weights = concat_tiers(uplinks, weights)
    w = jnp.asarray(weights, jnp.float32)
    w = w / jnp.maximum(w.sum(), 1e-12)
    return tmap(lambda u: jnp.tensordot(w, u.astype(jnp.float32), 1).astype(u.dtype), uplinks)


def tier_model(view, tier=None):
    """The edge ModelDef of ``tier`` (default: the view's own tier):
    ``models['edge/<tier>']``, else ``models['edge']``."""
    tier = view.tier if tier is None else tier
    return view.models.get(f"edge/{tier}", view.models["edge"])


class LocalSGDClient:
    """Mixin: the client trains the received params with the task loss and sends them back
    (the personal edge model is the last local one). Needs ``self.tx`` (optax); the
    model is the edge object's tier model (``tier_model(self.view)``)."""

    def client_init(self, edge_state, down, rng):
        return {"p": down, "o": self.tx.init(down)}

    def client_step(self, cs, batch, rng):
        apply = tier_model(self.view).apply
        p, o, loss = opt_step(self.tx, cs["p"], cs["o"], batch,
                              lambda q, b: xent(apply(q, b["x"]), b["y"], b["mask"]))
        return {"p": p, "o": o}, loss

    def client_final(self, cs, edge_state, rng):
        return cs["p"], cs["p"]
