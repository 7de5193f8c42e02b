"""Planning policies: Flax MLPs and GRUs on an environment's binary features,
trained by behaviour cloning from an exact expert plus DAgger rounds.

The edge policy (<= ~50K parameters, the task publishes its cap) and the
learned cloud planner (several times larger) share this code. Training is
deterministic from one key; K ensemble members train at once under vmap
(different inits and minibatch orders), so one compile serves them all.

A policy with memory (:func:`recurrent_def`, a GRU) gives its ModelDef
``init_cache() -> memory`` and ``decode(params, obs, t, memory) -> (logits,
memory)`` (one step; ``t`` is unused); ``apply(params, obs)`` is one step from
zero memory. Methods use the generic pair :func:`init_memory` /
:func:`policy_step`, which treat an MLP as a policy with empty memory; the
memory lives in the method's per-episode carry (harness-held, edge-side) and
its FLOPs are metered with the step that computes it.
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


class GRUPolicy(nn.Module):
    """Dense(hidden[:-1], relu) -> GRUCell(hidden[-1]) -> Dense(out) on the GRU state."""
    hidden: Sequence[int]
    out: int = 4

    @nn.compact
    def __call__(self, h, x):
        for w in self.hidden[:-1]:
            x = nn.relu(nn.Dense(w)(x))
        h, _ = nn.GRUCell(self.hidden[-1])(h, x)
        return nn.Dense(self.out)(h), h


def gru_flops(n_in: int, hidden: Sequence[int], out: int = 4) -> int:
    """Matmul FLOPs of one GRU-policy step: the encoder, the cell's three input and
    three recurrent products, the head."""
    dims = [n_in, *hidden[:-1]]
    enc = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    H = hidden[-1]
    return 2 * (enc + 3 * dims[-1] * H + 3 * H * H + H * out)


def recurrent_def(name: str, featurize: Callable, n_in: int, hidden: Sequence[int],
                  out: int = 4) -> api.ModelDef:
    """A policy with memory: ``decode(params, obs, t, h) -> (logits, h)`` one step,
    ``init_cache() -> h`` (zeros); ``apply(params, obs)`` = one step from zero memory."""
    net, H = GRUPolicy(tuple(hidden), out), int(hidden[-1])
    zero = lambda *_: jnp.zeros((H,), jnp.float32)
    init = lambda rng: net.init(rng, zero(), jnp.zeros((n_in,), jnp.float32))
    n = n_params(jax.eval_shape(init, jax.random.PRNGKey(0)))
    return api.ModelDef(
        name=name, init=init,
        apply=lambda p, obs: net.apply(p, zero(), featurize(obs))[0],
        decode=lambda p, obs, t, h: net.apply(p, h, featurize(obs)),
        init_cache=zero,
        info={"kind": "gru", "hidden": list(hidden), "inputs": n_in, "out": out, "params": n,
              "memory": H, "flops": gru_flops(n_in, hidden, out)})


def init_memory(model: api.ModelDef):
    """A policy's memory at an episode's start (float32[0] for a memory-less MLP)."""
    return model.init_cache() if model.init_cache is not None else jnp.zeros((0,), jnp.float32)


def policy_step(model: api.ModelDef, params, memory, obs):
    """``(logits, memory)`` after one observation, for an MLP or a GRU policy."""
    if model.decode is not None:
        return model.decode(params, obs, 0, memory)
    return model.apply(params, obs), memory


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
        info={"kind": "mlp", "hidden": list(hidden), "inputs": n_in, "out": out,
              "params": mlp_params(n_in, hidden, out), "flops": 2 * (mlp_params(n_in, hidden, out)
                                                                  - sum(hidden) - out)})


def features_apply(hidden: Sequence[int], out: int = 4) -> Callable:
    """``f(params, features) -> logits`` of the same network as :func:`policy_def`."""
    return MLP(tuple(hidden), out).apply


def _row_loss(apply_f):
    """Weighted cross-entropy of a memory-less policy on rows x[B, D]."""
    def loss_fn(p, xb, yb, wb):
        logits = jax.vmap(apply_f, (None, 0))(p, xb.astype(jnp.float32))
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
        return jnp.sum(ce * wb) / jnp.maximum(jnp.sum(wb), 1.0)
    return loss_fn


def _seq_loss(step_f, H: int):
    """Weighted cross-entropy of a GRU policy on whole episodes x[B, T, D] (memory
    from zeros at t = 0, backpropagated through time)."""
    def loss_fn(p, xb, yb, wb):
        def body(h, x):
            logits, h = step_f(p, h, x)
            return h, logits
        h0 = jnp.zeros((xb.shape[0], H), jnp.float32)
        _, logits = jax.lax.scan(body, h0, jnp.swapaxes(xb, 0, 1).astype(jnp.float32))
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb.T)
        return jnp.sum(ce * wb.T) / jnp.maximum(jnp.sum(wb), 1.0)
    return loss_fn


def _fit(loss_fn, params, X, y, w, n, key, steps: int, batch: int, lr: float):
    """Adam on ``loss_fn`` over minibatches drawn from the first n rows (or episodes)."""
    opt = optax.adam(lr)

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
              lr: float = 3e-3, w0=None, log=None):
    """Trains ``members`` policies (stacked params, leading axis K).

    ``X0`` uint8/float[N0, D] features and ``y0`` int[N0] expert actions seed
    the data (a GRU policy: whole episodes, X0[N0, T, D], y0 and ``w0`` [N0, T],
    and ``batch`` counts episodes). Each DAgger round, ``collect(params, key) ->
    (X, y, w)`` (rows or episodes alike) rolls out one member and labels the
    states it visited with the expert (w = 0 for padding); they are added to
    that member's data and training continues (``steps`` per round)."""
    out = model.info.get("out", 4)
    if model.info.get("kind") == "gru":
        net = GRUPolicy(tuple(model.info["hidden"]), out)
        loss_fn = _seq_loss(net.apply, int(model.info["hidden"][-1]))
    else:
        loss_fn = _row_loss(features_apply(model.info["hidden"], out))
    N0, shape = X0.shape[0], X0.shape[1:]
    keys = jax.random.split(key, members + 1)
    params = jax.vmap(model.init)(keys[:members])
    M = 0
    if collect is not None and rounds:
        M = jax.eval_shape(collect, jax.tree_util.tree_map(lambda a: a[0], params), keys[0])[0].shape[0]
    cap = N0 + rounds * M
    X = np.zeros((members, cap) + shape, np.uint8)
    y = np.zeros((members, cap) + np.shape(y0)[1:], np.int32)
    w = np.zeros((members, cap) + np.shape(y0)[1:], np.float32)
    X[:, :N0], y[:, :N0] = np.asarray(X0, np.uint8), np.asarray(y0)
    w[:, :N0] = 1.0 if w0 is None else np.asarray(w0, np.float32)
    fit = jax.jit(jax.vmap(lambda p, X, y, w, n, k: _fit(loss_fn, p, X, y, w, n, k, steps, batch, lr),
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
