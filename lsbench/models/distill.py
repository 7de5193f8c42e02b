"""In-program training for deriving an edge model on the cloud (``compress/*``).

Unlike ``vision.fit`` (a host loop for reference models), ``train`` is one
traceable program: a ``lax.scan`` over every step, batches gathered from
per-epoch permutations drawn from ``key``. A method calls it inside
``cloud_setup``, so the FLOP meter bills every step to the cloud's setup. The
loss runs through ``im2col.rewrite`` (convolutions as matmuls: XLA:CPU's
convolutions are several times slower inside the scan).

``kd_loss``: Hinton et al. (2015): alpha * T^2 * KL(teacher_T || student_T)
+ (1 - alpha) * cross-entropy (alpha = 0 is plain supervised training).
``reverse_kl``: KL(student || teacher) (MiniLLM-style, mode seeking).
``views(kinds)``: a per-step augmentation of image batches, any of ``flip``
(the four mirror images: the shapes classes are mirror-invariant), ``shift``
(a random translation by up to ``pad`` pixels, edge-replicated) and ``mixup``
(each image mixed with its batch neighbour, weight ~ Beta(a, a); the batch
gets ``y2`` and ``lam`` for the mixed hard label). For distillation the teacher
labels exactly the view the student sees ("function matching", Beyer et al.
2022), computed in the same program.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lsbench.models import im2col


def xent(logits, y, y2=None, lam=None):
    """Cross-entropy; with ``y2``/``lam`` (mixup) lam * CE(y) + (1 - lam) * CE(y2) per example."""
    lp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(lp, y[:, None], 1)[:, 0]
    if y2 is not None:
        nll = lam * nll - (1 - lam) * jnp.take_along_axis(lp, y2[:, None], 1)[:, 0]
    return jnp.mean(nll)


def kd_loss(logits, teacher, y, T: float, alpha: float, y2=None, lam=None):
    ce = xent(logits, y, y2, lam)
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


def shift(x, d, pad: int):
    """Images ``x`` [B, H, W, C] translated per example by ``d`` [B, 2] in
    [-pad, pad] pixels (edges replicated)."""
    H, W, C = x.shape[1:]
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    return jax.vmap(lambda xi, o: jax.lax.dynamic_slice(xi, (o[0], o[1], 0), (H, W, C)))(xp, pad - d)


VIEWS = ("flip", "shift", "mixup")


def views(kinds, pad: int = 4, mix_a: float = 1.0):
    """``train``'s ``augment`` for image batches (``kinds``: a subset of ``VIEWS``);
    None when empty. ``mixup`` returns float images (``vision.to_float``'s scale)."""
    kinds = tuple(kinds)
    if not kinds:
        return None

    def aug(b, key):
        kf, ks, km = jax.random.split(key, 3)
        x, n = b["x"], b["x"].shape[0]
        if "flip" in kinds:
            x = flip(x, jax.random.randint(kf, (n,), 0, 4))
        if "shift" in kinds:
            x = shift(x, jax.random.randint(ks, (n, 2), -pad, pad + 1), pad)
        out = dict(b, x=x)
        if "mixup" in kinds:
            from lsbench.models.vision import to_float
            lam = jax.random.beta(km, mix_a, mix_a, (n,))
            xf = to_float(x)
            out.update(x=lam[:, None, None, None] * xf + (1 - lam[:, None, None, None]) * xf[::-1],
                       y2=b["y"][::-1], lam=lam)
        return out
    return aug


def batched(fn, x, chunk: int = 500):
    """``fn`` over the rows of ``x`` in chunks (a ``lax.map`` over row indices, so a
    side's own data is gathered inside the traced program, never sliced at trace time)."""
    n = x.shape[0]
    c = min(chunk, n)
    m = -(-n // c)
    idx = jnp.minimum(jnp.arange(m * c), n - 1).reshape(m, c)
    fn = im2col.rewrite(fn)
    out = jax.lax.map(lambda i: fn(x[i]), idx)
    return out.reshape((m * c,) + out.shape[2:])[:n]


def train(loss_fn, params, data: dict, key, *, epochs: int, batch: int, lr: float,
          project=None, augment=None):
    """Adam (cosine decay) on ``loss_fn(params, batch_dict)`` over ``data`` (a dict of
    arrays sharing the leading axis); ``project(params)`` runs after every step
    (e.g. re-applying a pruning mask); ``augment(batch_dict, key)`` before every
    step (e.g. ``views(...)``). Returns the trained params."""
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
    loss_fn = im2col.rewrite(loss_fn)

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
