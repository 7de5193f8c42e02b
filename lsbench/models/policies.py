"""Planning policies: Flax MLPs on an environment's binary features, trained by
behaviour cloning from an exact expert plus DAgger rounds.

The edge policy (<= ~50K parameters, the task publishes its cap) and the
learned cloud planner (several times larger) share this code. Training is
deterministic from one key; K ensemble members train at once under vmap
(different inits and minibatch orders), so one compile serves them all.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsbench import api


class MLP(nn.Module):
    hidden: Sequence[int]
    out: int = 4

    @nn.compact
    def __call__(self, x):
        for h in self.hidden:
            x = nn.relu(nn.Dense(h)(x))
        return nn.Dense(self.out)(x)


def n_params(params) -> int:
    return int(sum(math.prod(np.shape(a)) for a in jax.tree_util.tree_leaves(params)))


def mlp_params(n_in: int, hidden: Sequence[int], out: int = 4) -> int:
    dims = [n_in, *hidden, out]
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def policy_def(name: str, featurize: Callable, n_in: int, hidden: Sequence[int],
               out: int = 4) -> api.ModelDef:
    """``apply(params, obs) -> logits`` over one observation (vmap for batches)."""
    net = MLP(tuple(hidden), out)
    return api.ModelDef(
        name=name, init=lambda rng: net.init(rng, jnp.zeros((n_in,), jnp.float32)),
        apply=lambda p, obs: net.apply(p, featurize(obs)),
        info={"hidden": list(hidden), "inputs": n_in, "out": out, "params": mlp_params(n_in, hidden, out)})


def features_apply(hidden: Sequence[int], out: int = 4) -> Callable:
    """``f(params, features) -> logits`` of the same network as :func:`policy_def`."""
    return MLP(tuple(hidden), out).apply


def _fit(apply_f, params, X, y, w, n, key, steps: int, batch: int, lr: float):
    """Adam on weighted cross-entropy over minibatches drawn from the first n rows."""
    opt = optax.adam(lr)

    def loss_fn(p, xb, yb, wb):
        logits = jax.vmap(apply_f, (None, 0))(p, xb.astype(jnp.float32))
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
        return jnp.sum(ce * wb) / jnp.maximum(jnp.sum(wb), 1.0)

    def step(c, k):
        p, s = c
        idx = jax.random.randint(k, (batch,), 0, n)
        g = jax.grad(loss_fn)(p, X[idx], y[idx], w[idx])
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, steps))
    return params


def bc_dagger(key, model: api.ModelDef, X0, y0, collect: Callable | None = None, *,
              members: int = 1, rounds: int = 0, steps: int = 2000, batch: int = 256,
              lr: float = 3e-3, log=None):
    """Trains ``members`` policies (stacked params, leading axis K).

    ``X0`` uint8/float[N0, D] features and ``y0`` int[N0] expert actions seed
    the data. Each DAgger round, ``collect(params, key) -> (X[M, D], y[M],
    w[M])`` rolls out one member and labels the states it visited with the
    expert (w = 0 for padding); the rows are added to that member's data and
    training continues (``steps`` per round)."""
    apply_f = features_apply(model.info["hidden"], model.info.get("out", 4))
    N0, D = X0.shape
    keys = jax.random.split(key, members + 1)
    params = jax.vmap(model.init)(keys[:members])
    M = 0
    if collect is not None and rounds:
        M = jax.eval_shape(collect, jax.tree_util.tree_map(lambda a: a[0], params), keys[0])[0].shape[0]
    cap = N0 + rounds * M
    X = np.zeros((members, cap, D), np.uint8)
    y = np.zeros((members, cap), np.int32)
    w = np.zeros((members, cap), np.float32)
    X[:, :N0], y[:, :N0], w[:, :N0] = np.asarray(X0, np.uint8), np.asarray(y0), 1.0
    fit = jax.jit(jax.vmap(lambda p, X, y, w, n, k: _fit(apply_f, p, X, y, w, n, k, steps, batch, lr),
                           (0, 0, 0, 0, None, 0)))
    coll = jax.jit(jax.vmap(collect)) if collect is not None and rounds else None
    n, rk = N0, keys[-1]
    for r in range(rounds + 1):
        rk, kf, kc = jax.random.split(rk, 3)
        params = fit(params, X, y, w, n, jax.random.split(kf, members))
        if r == rounds:
            break
        Xc, yc, wc = jax.device_get(coll(params, jax.random.split(kc, members)))
        X[:, n:n + M], y[:, n:n + M], w[:, n:n + M] = Xc, yc, wc
        if log:
            log(f"dagger round {r + 1}: +{int(wc.sum() / members)} states per member")
        n += M
    return jax.tree_util.tree_map(np.asarray, params)
