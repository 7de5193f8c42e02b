"""Edge-draft / cloud-verify speculative decoding for infer/pcfg-specdec.

Protocol: ``edge_start`` prefills the edge KV cache with the prompt. Each turn
the edge commits the cloud's last verdict (accepted count a, correction or
bonus token), drafts gamma tokens and sends their ids (int32; the prompt goes
up once, on turn 0). The cloud (``cloud_first_turn`` prefills the prompt) runs
ONE pass over gamma+1 positions with its KV cache, accepts the longest valid
draft prefix and returns (a, token): 8 bytes down. Exact in both modes:
greedy (temperature 0) gives the cloud's greedy output token for token;
sampling (temperature 1) uses the rejection rule of Leviathan et al. 2023 /
Chen et al. 2023. ``SpecDec`` uploads ids only, so the cloud recomputes the
draft probabilities with its copy of the edge model (a full-sequence pass,
billed); ``SpecDecTopK`` samples drafts from the edge's top-k distribution and
uploads those k probabilities (fp16 on the wire) with the ids.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lsbench import api
from lsbench.models import transformer as T


def accept_greedy(p_logits, drafts):
    """Greedy verification. p_logits [B, g+1, V], drafts [B, g] -> (a [B], token [B])."""
    target = jnp.argmax(p_logits, -1).astype(jnp.int32)
    ok = jnp.cumprod((drafts == target[:, :-1]).astype(jnp.int32), 1)
    a = ok.sum(1)
    return a, jnp.take_along_axis(target, a[:, None], 1)[:, 0]


def accept_sample(p, q, drafts, rng):
    """Speculative sampling. p [B, g+1, V] target probs, q [B, g, V] draft probs
    (the distributions drafts were sampled from) -> (a [B], token [B])."""
    B, g = drafts.shape
    ku, kr = jax.random.split(rng)
    pd = jnp.take_along_axis(p[:, :g], drafts[..., None], -1)[..., 0]
    qd = jnp.take_along_axis(q, drafts[..., None], -1)[..., 0]
    u = jax.random.uniform(ku, (B, g))
    ok = jnp.cumprod((u * qd < pd).astype(jnp.int32), 1)  # u < min(1, p/q)
    a = ok.sum(1)
    q_pad = jnp.concatenate([q, jnp.zeros_like(q[:, :1])], 1)  # at a == g: residual = p
    pa = jnp.take_along_axis(p, a[:, None, None], 1)[:, 0]
    qa = jnp.take_along_axis(q_pad, a[:, None, None], 1)[:, 0]
    resid = jnp.maximum(pa - qa, 0.0)
    resid = jnp.where(resid.sum(-1, keepdims=True) > 0, resid, pa)
    tok = jax.random.categorical(kr, jnp.log(resid + 1e-30) + jnp.where(resid > 0, 0.0, -1e30))
    return a, tok.astype(jnp.int32)


def _topk_dist(logits, k):
    """Top-k probabilities rounded to fp16 (exactly what the wire carries) and ids."""
    vals, idx = jax.lax.top_k(jax.nn.softmax(logits, -1), k)
    return vals.astype(jnp.float16).astype(jnp.float32), idx.astype(jnp.int32)


def topk_q(vals, idx, V):
    """The draft distribution both sides use: the k values scattered and renormalised."""
    q = (jax.nn.one_hot(idx, V) * vals[..., None]).sum(-2)
    return q / jnp.maximum(q.sum(-1, keepdims=True), 1e-30)


class _Decoder(api.InferMethod):
    """Shared state handling: prompt, output buffer, KV caches."""
    default_hparams = {"gamma": 4, "temperature": 0.0}
    edge_prefill = True  # False where the edge never runs its model on the prompt

    def _ex(self):
        e = self.ctx.extras
        return e["prompt_len"], e["gen_len"], e["vocab"]

    def _cfg(self, role):
        return T.config_of(self.ctx.models[role])

    def _sample(self):
        t = self.hp["temperature"]
        if t not in (0, 0.0, 1, 1.0):
            raise ValueError(f"temperature must be 0 (greedy) or 1 (sampling), got {t}")
        return t > 0

    def prepare(self, calib, rng):
        return self.ctx.params["edge"], {"cloud": self.ctx.params["cloud"], "edge": self.ctx.params["edge"]}

    def _next(self, logits, key):
        if self._sample():
            return jax.random.categorical(key, logits).astype(jnp.int32)
        return jnp.argmax(logits, -1).astype(jnp.int32)

    def edge_start(self, es, batch):
        Lp, N, V = self._ex()
        x = jnp.asarray(batch["x"], jnp.int32)
        B = x.shape[0]
        cfg = self._cfg("edge")
        cache = T.init_cache(cfg, B)
        if Lp > 2 and self.edge_prefill:
            _, cache = T.decode(cfg, es, x[:, :Lp - 2], jnp.zeros((B,), jnp.int32), cache)
        g = self.hp.get("gamma", 1)
        zi = jnp.zeros((B,), jnp.int32)
        return {"x": x, "out": jnp.zeros((B, N + g + 1), jnp.int32), "n": zi, "prev": x[:, Lp - 2],
                "last": x[:, Lp - 1], "cache": cache, "started": jnp.zeros((B,), bool),
                "passes": zi, "accepted": zi, "drafted": zi, "drafts": jnp.zeros((B, g), jnp.int32)}

    def _commit(self, carry, got, toks, count):
        """Appends toks[:, :count] to the output of rows that got them."""
        n = carry["n"]
        W = carry["out"].shape[1]
        rel = jnp.arange(W)[None] - n[:, None]
        new = jnp.take_along_axis(toks, jnp.clip(rel, 0, toks.shape[1] - 1), 1)
        write = got[:, None] & (rel >= 0) & (rel < count[:, None])
        return jnp.where(write, new, carry["out"]), n + jnp.where(got, count, 0)

    def downlink_like(self, batch_size):
        z = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
        return {"acc": z, "tok": z}

    def finalize(self, es, carry):
        Lp, N, V = self._ex()
        return {"tokens": carry["out"][:, :N], "passes": carry["passes"],
                "accepted": carry["accepted"], "drafted": carry["drafted"]}

    # The cloud side: its carry holds the committed sequence and its KV cache.
    def cloud_start(self, cs, batch_size):
        Lp, N, V = self._ex()
        cfg = self._cfg("cloud")
        return {"seq": jnp.zeros((batch_size, cfg.max_len), jnp.int32),
                "n": jnp.zeros((batch_size,), jnp.int32), "cache": T.init_cache(cfg, batch_size)}

    def _prefill(self, cs, cc, up):
        Lp, N, V = self._ex()
        x = up["prompt"].data["x"]
        B = x.shape[0]
        _, cache = T.decode(self._cfg("cloud"), cs["cloud"], x[:, :Lp - 1], jnp.zeros((B,), jnp.int32),
                            cc["cache"])
        return {"seq": cc["seq"].at[:, :Lp].set(x), "n": cc["n"], "cache": cache}


class EdgeOnly(_Decoder):
    manifest = api.Manifest(name="edge-only", tracks=("infer",), reference="edge-only",
                            description="The edge model generates every token (KV cache).")
    default_hparams = {"temperature": 0.0}

    def edge_turn(self, es, carry, inbox, rng):
        Lp, N, V = self._ex()
        cfg = self._cfg("edge")
        B = carry["x"].shape[0]
        # First step feeds [prev, last]; then one token per step.
        logits, cache = T.decode(cfg, es, jnp.stack([carry["prev"], carry["last"]], 1), Lp - 2
                                 + jnp.zeros((B,), jnp.int32), carry["cache"])
        t0 = self._next(logits[:, -1], jax.random.fold_in(rng, 0))

        def step(c, i):
            tok, cache = c
            lg, cache = T.decode(cfg, es, tok[:, None], Lp + i + jnp.zeros((B,), jnp.int32), cache)
            nxt = self._next(lg[:, -1], jax.random.fold_in(rng, i + 1))
            return (nxt, cache), nxt
        (_, cache), rest = jax.lax.scan(step, (t0, cache), jnp.arange(N - 1))
        toks = jnp.concatenate([t0[:, None], rest.T], 1)
        out, n = self._commit(carry, jnp.ones((B,), bool), toks, jnp.full((B,), N, jnp.int32))
        carry = dict(carry, out=out, n=n, cache=cache, started=jnp.ones((B,), bool))
        up = {"prompt": api.Rows({"x": carry["x"]}, jnp.zeros((B,), bool))}
        return carry, up, jnp.zeros((B,), bool), jnp.ones((B,), bool)

    def cloud_turn(self, cs, cc, up, rng):
        B = cc["n"].shape[0]
        return cc, {"acc": jnp.zeros((B,), jnp.int32), "tok": jnp.zeros((B,), jnp.int32)}


class CloudOnly(_Decoder):
    manifest = api.Manifest(name="cloud-only", tracks=("infer",), reference="cloud-only",
                            description="Cloud streaming: the prompt goes up once, the cloud "
                                        "decodes one token per pass and streams it down.")
    default_hparams = {"temperature": 0.0}
    edge_prefill = False

    def downlink_like(self, batch_size):
        return {"tok": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}

    def edge_turn(self, es, carry, inbox, rng):
        Lp, N, V = self._ex()
        B = carry["x"].shape[0]
        out, n = self._commit(carry, inbox.got, inbox.msg["tok"][:, None], jnp.ones((B,), jnp.int32))
        send = n < N
        up = {"prompt": api.Rows({"x": carry["x"]}, ~carry["started"])}
        carry = dict(carry, out=out, n=n, started=jnp.ones((B,), bool),
                     passes=carry["passes"] + send.astype(jnp.int32))
        return carry, up, send, ~send

    def _step(self, cs, cc, last, rng, sent):
        Lp, N, V = self._ex()
        pos = Lp - 1 + cc["n"]
        logits, cache = T.decode(self._cfg("cloud"), cs["cloud"], last[:, None], pos, cc["cache"])
        tok = self._next(logits[:, -1], rng)
        seq = jnp.where(sent[:, None] & (jnp.arange(cc["seq"].shape[1])[None] == pos[:, None] + 1),
                        tok[:, None], cc["seq"])
        cc = {"seq": seq, "n": cc["n"] + sent, "cache": cache}
        return cc, {"tok": tok}

    def cloud_first_turn(self, cs, cc, up, rng):
        Lp, N, V = self._ex()
        cc = self._prefill(cs, cc, up)
        return self._step(cs, cc, up["prompt"].data["x"][:, Lp - 1], rng, up["prompt"].mask)

    def cloud_turn(self, cs, cc, up, rng):
        Lp, N, V = self._ex()
        last = jnp.take_along_axis(cc["seq"], (Lp - 1 + cc["n"])[:, None], 1)[:, 0]
        return self._step(cs, cc, last, rng, up["prompt"].mask | (cc["n"] > 0))


class SpecDec(_Decoder):
    manifest = api.Manifest(name="specdec", tracks=("infer",),
                            description="Edge drafts gamma tokens (ids up), the cloud verifies them "
                                        "in one pass; exact in greedy and sampling modes.",
                            paper="Leviathan et al. 2023; Chen et al. 2023")
    default_hparams = {"gamma": 4, "temperature": 0.0}
    sweep = tuple({"gamma": g} for g in (1, 2, 4, 8))
    topk = 0  # > 0: sample drafts from the edge's top-k and upload those probabilities

    def _draft_dist(self, logits):
        if self.topk:
            vals, idx = _topk_dist(logits, self.topk)
            return topk_q(vals, idx, logits.shape[-1]), (vals, idx)
        return jax.nn.softmax(logits, -1), None

    def _draw(self, logits, key):
        if not self._sample():
            return jnp.argmax(logits, -1).astype(jnp.int32), None
        q, sent = self._draft_dist(logits)
        return jax.random.categorical(key, jnp.log(q + 1e-30) + jnp.where(q > 0, 0, -1e30)).astype(jnp.int32), sent

    def edge_turn(self, es, carry, inbox, rng):
        Lp, N, V = self._ex()
        g = self.hp["gamma"]
        cfg = self._cfg("edge")
        B = carry["x"].shape[0]
        # 1. Commit the cloud's verdict: accepted drafts, then its token.
        got, a, tok = inbox.got, inbox.msg["acc"], inbox.msg["tok"]
        seq = jnp.concatenate([carry["drafts"], jnp.zeros((B, 1), jnp.int32)], 1)
        seq = jnp.where(jnp.arange(g + 1)[None] == a[:, None], tok[:, None], seq)
        out, n = self._commit(carry, got, seq, a + 1)
        prev_new = jnp.where(a > 0, jnp.take_along_axis(carry["drafts"], jnp.maximum(a - 1, 0)[:, None], 1)[:, 0],
                             carry["last"])
        prev = jnp.where(got, prev_new, carry["prev"])
        last = jnp.where(got, tok, carry["last"])
        done = n >= N
        # 2. Draft gamma tokens: the first step feeds [prev, last].
        pos = Lp - 1 + n
        logits, cache = T.decode(cfg, es, jnp.stack([prev, last], 1), pos - 1, carry["cache"])
        d0, s0 = self._draw(logits[:, -1], jax.random.fold_in(rng, 0))

        def step(c, i):
            tok_i, cache = c
            lg, cache = T.decode(cfg, es, tok_i[:, None], pos + i, cache)
            d, s = self._draw(lg[:, -1], jax.random.fold_in(rng, i))
            return (d, cache), (d, s)
        (_, cache), (rest, srest) = jax.lax.scan(step, (d0, cache), jnp.arange(1, g))
        drafts = jnp.concatenate([d0[:, None], rest.T], 1)
        send = ~done
        first = ~carry["started"]
        carry = dict(carry, out=out, n=n, prev=prev, last=last, cache=cache, drafts=drafts,
                     started=jnp.ones((B,), bool), passes=carry["passes"] + send,
                     accepted=carry["accepted"] + jnp.where(got, a, 0), drafted=carry["drafted"] + send * g)
        payload = {"tok": drafts}
        if self.topk and self._sample():
            vals = jnp.concatenate([s0[0][:, None], jnp.swapaxes(srest[0], 0, 1)], 1)
            idx = jnp.concatenate([s0[1][:, None], jnp.swapaxes(srest[1], 0, 1)], 1)
            payload.update(q_p=vals, q_ids=idx)
        up = {"prompt": api.Rows({"x": carry["x"]}, first),
              "draft": api.Rows(payload, send)}
        return carry, up, send, done

    def _verify(self, cs, cc, up, rng):
        Lp, N, V = self._ex()
        g = self.hp["gamma"]
        sent = up["draft"].mask
        drafts = up["draft"].data["tok"]
        pos = Lp - 1 + cc["n"]
        last = jnp.take_along_axis(cc["seq"], pos[:, None], 1)[:, 0]
        inp = jnp.concatenate([last[:, None], drafts], 1)
        logits, cache = T.decode(self._cfg("cloud"), cs["cloud"], inp, pos, cc["cache"])
        if not self._sample():
            a, tok = accept_greedy(logits, drafts)
        else:
            p = jax.nn.softmax(logits, -1)
            if self.topk:
                q = topk_q(up["draft"].data["q_p"].astype(jnp.float32), up["draft"].data["q_ids"], V)
            else:  # recompute the draft distributions with the cloud's copy of the edge model
                W = cc["seq"].shape[1]
                rel = jnp.arange(W)[None] - pos[:, None] - 1
                full = jnp.where((rel >= 0) & (rel < g),
                                 jnp.take_along_axis(drafts, jnp.clip(rel, 0, g - 1), 1), cc["seq"])
                el = T.apply(self._cfg("edge"), cs["edge"], full)
                idx = jnp.clip(pos[:, None] + jnp.arange(g)[None], 0, W - 1)
                q = jax.nn.softmax(jnp.take_along_axis(el, idx[..., None], 1), -1)
            a, tok = accept_sample(p, q, drafts, rng)
        W = cc["seq"].shape[1]
        rel = jnp.arange(W)[None] - pos[:, None] - 1
        commit = jnp.where(jnp.arange(g + 1)[None] == a[:, None], tok[:, None],
                           jnp.concatenate([drafts, drafts[:, :1]], 1))
        new = jnp.take_along_axis(commit, jnp.clip(rel, 0, g), 1)
        seq = jnp.where(sent[:, None] & (rel >= 0) & (rel <= a[:, None]), new, cc["seq"])
        cc = {"seq": seq, "n": cc["n"] + jnp.where(sent, a + 1, 0), "cache": cache}
        return cc, {"acc": a.astype(jnp.int32), "tok": tok.astype(jnp.int32)}

    def cloud_first_turn(self, cs, cc, up, rng):
        return self._verify(cs, self._prefill(cs, cc, up), up, rng)

    def cloud_turn(self, cs, cc, up, rng):
        return self._verify(cs, cc, up, rng)


class SpecDecTopK(SpecDec):
    manifest = api.Manifest(name="specdec-topk", tracks=("infer",),
                            description="SpecDec whose drafts are sampled from the edge's top-k "
                                        "distribution; the k probabilities (fp16) and ids go up "
                                        "with each draft, so the cloud need not rerun the drafter.",
                            paper="Leviathan et al. 2023; Oh et al. 2024 (U-HLM)")
    default_hparams = {"gamma": 4, "temperature": 1.0, "k": 8}
    sweep = tuple({"gamma": g} for g in (1, 2, 4, 8))
    codec_up = "fp16"

    def __init__(self, ctx, hp):
        super().__init__(ctx, hp)
        self.topk = int(self.hp["k"])
