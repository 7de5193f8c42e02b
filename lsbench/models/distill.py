"""In-program training for deriving an edge model on the cloud (``compress/*``).

Unlike ``vision.fit`` (a host loop for reference models), ``train`` is one
traceable program: a ``lax.scan`` over every step, batches gathered from
per-epoch permutations drawn from ``key``. A method calls it inside
``cloud_setup``, so the FLOP meter bills every step to the cloud's setup.

``kd_loss``: Hinton et al. (2015): alpha * T^2 * KL(teacher_T || student_T)
+ (1 - alpha) * cross-entropy (alpha = 0 is plain supervised training).
``reverse_kl``: KL(student || teacher) (MiniLLM-style, mode seeking).
``flip`` / ``flip_batch``: label-preserving image flips (the shapes classes are
shape x colour family, invariant to mirror images) as a per-step augmentation;
a teacher's outputs for the four flips are computed once (``batched``, over
``flip(x, v)``) and the batch takes the row of its flip, so the teacher is
asked about exactly the image the student sees.
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


def flip(x, v):
    """Images ``x`` [B, H, W, C] mirrored per example by ``v`` [B] (or a scalar) in
    0..3: bit 0 flips left-right, bit 1 top-bottom."""
    v = jnp.broadcast_to(jnp.asarray(v, jnp.int32), x.shape[:1])[:, None, None, None]
    x = jnp.where(v & 1, x[:, :, ::-1], x)
    return jnp.where(v & 2, x[:, ::-1], x)


def flip_batch(b, key):
    """``train``'s ``augment``: a random flip per example of ``b['x']``; per-flip
    teacher outputs ``b[k]`` [B, 4, ...] (k in ``t``, ``f``) become that flip's row."""
    v = jax.random.randint(key, b["x"].shape[:1], 0, 4)
    out = dict(b, x=flip(b["x"], v))
    for k in ("t", "f"):
        if k in b:
            out[k] = jnp.take_along_axis(b[k], v.reshape((-1, 1) + (1,) * (b[k].ndim - 2)), 1)[:, 0]
    return out


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
          project=None, augment=None):
    """Adam (cosine decay) on ``loss_fn(params, batch_dict)`` over ``data`` (a dict of
    arrays sharing the leading axis); ``project(params)`` runs after every step
    (e.g. re-applying a pruning mask); ``augment(batch_dict, key)`` before every
    step (e.g. ``flip_batch``). Returns the trained params."""
    n = next(iter(data.values())).shape[0]
    steps = max(n // batch, 1)
    b = min(batch, n)
    total = int(epochs) * steps
    if total == 0:
        return params
    tx = optax.adam(optax.cosine_decay_schedule(lr, total))
    keys = jax.random.split(key, int(epochs))
    idx = jax.vmap(lambda k: jax.random.permutation(k, n)[: steps * b])(keys).reshape(total, b)
    aug_keys = jax.random.split(jax.random.fold_in(key, 1), total)

    def step(c, xs):
        p, o = c
        i, k_aug = xs
        bd = {k: v[i] for k, v in data.items()}
        loss, g = jax.value_and_grad(loss_fn)(p, augment(bd, k_aug) if augment else bd)
        upd, o = tx.update(g, o, p)
        p = optax.apply_updates(p, upd)
        return (project(p) if project else p, o), loss

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), (idx, aug_keys))
    return params
