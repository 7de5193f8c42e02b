"""In-program training for deriving an edge model on the cloud (``compress/*``).

Unlike ``vision.fit`` (a host loop for reference models), ``train`` is one
traceable program: a ``lax.scan`` over every step, batches gathered from
per-epoch permutations drawn from ``key``. A method calls it inside
``cloud_setup``, so the FLOP meter bills every step to the cloud's setup.

``kd_loss``: Hinton et al. (2015): alpha * T^2 * KL(teacher_T || student_T)
+ (1 - alpha) * cross-entropy (alpha = 0 is plain supervised training).
``reverse_kl``: KL(student || teacher) (MiniLLM-style, mode seeking).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def xent(logits, y):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))


def kd_loss(logits, teacher, y, T: float, alpha: float):
    ce = xent(logits, y)
    if alpha <= 0:
        return ce
    p = jax.nn.softmax(teacher / T)
    kl = jnp.sum(p * (jax.nn.log_softmax(teacher / T) - jax.nn.log_softmax(logits / T)), -1)
    return alpha * T * T * jnp.mean(kl) + (1 - alpha) * ce


def reverse_kl(logits, teacher, T: float = 1.0):
    q = jax.nn.softmax(logits / T)
    return jnp.mean(jnp.sum(q * (jax.nn.log_softmax(logits / T) - jax.nn.log_softmax(teacher / T)), -1))


def batched(fn, x, chunk: int = 500):
    """``fn`` over the rows of ``x`` in chunks (a ``lax.map`` over row indices, so a
    side's own data is gathered inside the traced program, never sliced at trace time)."""
    n = x.shape[0]
    c = min(chunk, n)
    m = -(-n // c)
    idx = jnp.minimum(jnp.arange(m * c), n - 1).reshape(m, c)
    out = jax.lax.map(lambda i: fn(x[i]), idx)
    return out.reshape((m * c,) + out.shape[2:])[:n]


def train(loss_fn, params, data: dict, key, *, epochs: int, batch: int, lr: float,
          project=None):
    """Adam (cosine decay) on ``loss_fn(params, batch_dict)`` over ``data`` (a dict of
    arrays sharing the leading axis); ``project(params)`` runs after every step
    (e.g. re-applying a pruning mask). Returns the trained params."""
    n = next(iter(data.values())).shape[0]
    steps = max(n // batch, 1)
    b = min(batch, n)
    total = int(epochs) * steps
    if total == 0:
        return params
    tx = optax.adam(optax.cosine_decay_schedule(lr, total))
    keys = jax.random.split(key, int(epochs))
    idx = jax.vmap(lambda k: jax.random.permutation(k, n)[: steps * b])(keys).reshape(total, b)

    def step(c, i):
        p, o = c
        loss, g = jax.value_and_grad(loss_fn)(p, {k: v[i] for k, v in data.items()})
        upd, o = tx.update(g, o, p)
        p = optax.apply_updates(p, upd)
        return (project(p) if project else p, o), loss

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), idx)
    return params
