"""A tiny causal Transformer LM (Flax linen) with KV-cache decoding, plus a
deterministic trainer. Methods use it as plain functions over param pytrees:

``lm_def(cfg)`` -> api.ModelDef (``apply(params, tokens) -> logits[B, S, V]``,
``decode(params, tokens, pos0, cache)`` and ``init_cache(batch)``: the two
functions below with the config bound);
``init_cache(cfg, B)``; ``decode(cfg, params, tokens[B, S], pos0[B], cache)``
-> (logits[B, S, V], cache): writes the S new keys/values at absolute positions
``pos0 + j`` and attends causally by absolute position, so stale cache entries
past a row's position (e.g. rejected drafts) are never read. Attention always
spans the whole cache (``max_len``), so the FLOPs of a call are linear in S.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsbench import api


@dataclasses.dataclass(frozen=True)
class LMConfig:
    vocab: int
    d: int
    layers: int
    heads: int
    max_len: int
    mlp: int = 4

    def as_dict(self):
        return dataclasses.asdict(self)


def _attend(q, k, v, qpos, kpos):
    """q [B,S,H,dh], k/v [B,T,H,dh], qpos [B,S], kpos [B,T] -> [B,S,H,dh]."""
    s = jnp.einsum("bshd,bthd->bhst", q, k) / np.sqrt(q.shape[-1])
    mask = kpos[:, None, None, :] <= qpos[:, None, :, None]
    s = jnp.where(mask, s, -1e9)
    return jnp.einsum("bhst,bthd->bshd", jax.nn.softmax(s, -1), v)


class Block(nn.Module):
    cfg: LMConfig

    @nn.compact
    def __call__(self, x, pos, cache):
        c = self.cfg
        B, S, _ = x.shape
        dh = c.d // c.heads
        h = nn.LayerNorm(name="ln1")(x)
        qkv = nn.Dense(3 * c.d, name="qkv")(h).reshape(B, S, 3, c.heads, dh)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if cache is None:
            a = _attend(q, k, v, pos, pos)
        else:
            put = jax.vmap(lambda buf, new, p: jax.lax.dynamic_update_slice(buf, new, (p, 0, 0)))
            kc, vc = put(cache["k"], k, pos[:, 0]), put(cache["v"], v, pos[:, 0])
            kpos = jnp.broadcast_to(jnp.arange(c.max_len)[None], (B, c.max_len))
            a = _attend(q, kc, vc, pos, kpos)
            cache = {"k": kc, "v": vc}
        x = x + nn.Dense(c.d, name="out")(a.reshape(B, S, c.d))
        h = nn.LayerNorm(name="ln2")(x)
        h = nn.Dense(c.d, name="mlp_out")(nn.gelu(nn.Dense(c.mlp * c.d, name="mlp_in")(h)))
        return x + h, cache


class CausalLM(nn.Module):
    cfg: LMConfig

    @nn.compact
    def __call__(self, tokens, pos0, cache=None):
        c = self.cfg
        S = tokens.shape[1]
        pos = pos0[:, None] + jnp.arange(S)[None]
        x = nn.Embed(c.vocab, c.d, name="tok")(tokens)
        x = x + nn.Embed(c.max_len, c.d, name="pos")(jnp.minimum(pos, c.max_len - 1))
        new = []
        for i in range(c.layers):
            x, ci = Block(c, name=f"block{i}")(x, pos, None if cache is None else cache[i])
            new.append(ci)
        logits = nn.Dense(c.vocab, use_bias=False, name="head")(nn.LayerNorm(name="ln_f")(x))
        return logits, (None if cache is None else tuple(new))


def init_params(cfg: LMConfig, rng):
    tok = jnp.zeros((1, 2), jnp.int32)
    return CausalLM(cfg).init(rng, tok, jnp.zeros((1,), jnp.int32))["params"]


def apply(cfg: LMConfig, params, tokens):
    """Full-sequence logits [B, S, V] (positions 0..S-1, no cache)."""
    tokens = jnp.asarray(tokens, jnp.int32)
    return CausalLM(cfg).apply({"params": params}, tokens, jnp.zeros((tokens.shape[0],), jnp.int32))[0]


def init_cache(cfg: LMConfig, batch: int):
    shape = (batch, cfg.max_len, cfg.heads, cfg.d // cfg.heads)
    return tuple({"k": jnp.zeros(shape), "v": jnp.zeros(shape)} for _ in range(cfg.layers))


def decode(cfg: LMConfig, params, tokens, pos0, cache):
    """Logits for S new tokens per row at positions pos0[b]..pos0[b]+S-1; updates the cache."""
    return CausalLM(cfg).apply({"params": params}, jnp.asarray(tokens, jnp.int32),
                               jnp.asarray(pos0, jnp.int32), cache)


def lm_def(cfg: LMConfig, name: str) -> api.ModelDef:
    return api.ModelDef(name=name, init=lambda rng: init_params(cfg, rng),
                        apply=lambda p, x: apply(cfg, p, x),
                        decode=lambda p, tokens, pos0, cache: decode(cfg, p, tokens, pos0, cache),
                        init_cache=lambda batch: init_cache(cfg, batch),
                        info={"config": cfg.as_dict()})


def config_of(model: api.ModelDef) -> LMConfig:
    return LMConfig(**model.info["config"])


def train_lm(cfg: LMConfig, seqs, weights, *, steps: int, batch: int, lr: float, seed: int,
             chunk: int = 50, log=None, desc: str = "", stats: dict | None = None):
    """Next-token training on ``seqs`` int32[n, L] with per-target ``weights`` float[n, L-1].

    Deterministic from ``seed``; steps run in jitted ``lax.scan`` chunks. Shows
    progress; ``stats`` gets ``steps`` and ``flops`` (the FLOP meter's count).
    """
    from lsbench.harness import progress
    seqs, weights = jnp.asarray(seqs, jnp.int32), jnp.asarray(weights, jnp.float32)
    key = jax.random.PRNGKey(seed)
    params = init_params(cfg, jax.random.fold_in(key, 0))
    sched = optax.warmup_cosine_decay_schedule(0.0, lr, max(1, steps // 20), steps, lr * 0.05)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=0.01))
    state = opt.init(params)

    def loss_fn(p, x, w):
        logits = apply(cfg, p, x[:, :-1])
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, x[:, 1:])
        return (nll * w).sum() / jnp.maximum(w.sum(), 1.0)

    def step(carry, k):
        p, s = carry
        idx = jax.random.randint(k, (batch,), 0, seqs.shape[0])
        loss, g = jax.value_and_grad(loss_fn)(p, seqs[idx], weights[idx])
        upd, s = opt.update(g, s, p)
        return (optax.apply_updates(p, upd), s), loss

    @jax.jit
    def run(carry, keys):
        return jax.lax.scan(step, carry, keys)

    if stats is not None:
        from lsbench.metering.flops import count_jaxpr
        one = count_jaxpr(jax.make_jaxpr(step)((params, state), key))
        stats.update(steps=steps, flops=int(one.matmul) * steps)
    carry, done = (params, state), 0
    with progress.Bar(steps, desc=f"training {desc or 'model'}", unit="step") as bar:
        while done < steps:
            n = min(chunk, steps - done)
            keys = jax.vmap(lambda i: jax.random.fold_in(key, i + 1))(jnp.arange(done, done + n))
            carry, losses = run(carry, keys) if n == chunk else jax.jit(
                lambda c, k: jax.lax.scan(step, c, k))(carry, keys)
            done += n
            bar.update(n, loss=float(losses[-1]))
            if log is not None:
                log(f"step {done}/{steps} loss {float(losses[-1]):.3f}")
    return carry[0]


def param_count(params) -> int:
    return int(sum(np.prod(np.shape(l)) for l in jax.tree_util.tree_leaves(params)))


__all__ = ["LMConfig", "CausalLM", "init_params", "apply", "init_cache", "decode", "lm_def",
           "config_of", "train_lm", "param_count"]
