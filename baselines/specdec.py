"""Edge-draft / cloud-verify speculative decoding for infer/pcfg-specdec.

Sides: the edge holds the edge (draft) model, the cloud the cloud (target)
model. Protocol, per turn: ``edge_query`` drafts gamma tokens with the edge
KV cache and sends their ids (int32; the prompt goes up once, with the first
drafts); the cloud (``cloud_first_reply`` prefills the prompt first) runs ONE
pass over gamma+1 positions with its KV cache, accepts the longest valid
draft prefix and returns (a, token): 8 bytes down; ``edge_receive`` commits
the a accepted drafts and the cloud's token. A row is done at the first query
that finds gen_len tokens committed. Exact in both modes: greedy
(temperature 0) gives the cloud's greedy output token for token; sampling
(temperature 1) uses the rejection rule of Leviathan et al. 2023 / Chen et
al. 2023. ``SpecDec`` uploads ids only, so in sampling mode the cloud
recomputes the draft probabilities with a copy of the edge model that the
edge sends up in setup (billed setup bytes) and a full-sequence pass (billed);
``SpecDecTopK`` samples drafts from the edge's top-k distribution and uploads
those k probabilities (fp16 on the wire) with the ids.

``finalize`` returns the tokens with -1 where nothing is committed yet: the
harness reads the output after every turn and computes MAT and acceptance
from its own log (``tasks.infer_pcfg``), not from counters of the method.
The first turn's query carries the prompt; later turns' carry has a
``started`` key, so they are their own (smaller) programs with no prompt.
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
    manifest = None
    default_hparams = {"gamma": 4, "temperature": 0.0}
    edge_prefill = True  # False where the edge never runs its model on the prompt

    def _ex(self):
        v = self.view
        return v.prompt_len, v.gen_len, v.vocab

    def _model(self, role):
        return self.view.models[role]

    def _sample(self):
        t = self.hp["temperature"]
        if t not in (0, 0.0, 1, 1.0):
            raise ValueError(f"temperature must be 0 (greedy) or 1 (sampling), got {t}")
        return t > 0

    def _next(self, logits, key):
        if self._sample():
            return jax.random.categorical(key, logits).astype(jnp.int32)
        return jnp.argmax(logits, -1).astype(jnp.int32)

    def edge_start(self, es, batch):
        Lp, N, V = self._ex()
        x = jnp.asarray(batch["x"], jnp.int32)
        B = x.shape[0]
        m = self._model("edge")
        carry = {"x": x, "out": jnp.full((B, N + self.hp.get("gamma", 1) + 1), -1, jnp.int32),
                 "n": jnp.zeros((B,), jnp.int32), "prev": x[:, Lp - 2], "last": x[:, Lp - 1]}
        if self.edge_prefill:
            cache = m.init_cache(B)
            if Lp > 2:
                _, cache = m.decode(es["edge"], x[:, :Lp - 2], jnp.zeros((B,), jnp.int32), cache)
            carry["cache"] = cache
        return carry

    def _commit(self, carry, got, toks, count):
        """Appends toks[:, :count] to the output of rows that got them."""
        n = carry["n"]
        W = carry["out"].shape[1]
        rel = jnp.arange(W)[None] - n[:, None]
        new = jnp.take_along_axis(toks, jnp.clip(rel, 0, toks.shape[1] - 1), 1)
        write = got[:, None] & (rel >= 0) & (rel < count[:, None])
        return jnp.where(write, new, carry["out"]), n + jnp.where(got, count, 0)

    def finalize(self, es, carry):
        Lp, N, V = self._ex()
        return {"tokens": carry["out"][:, :N]}

    # The cloud side: its carry holds the committed sequence and its KV cache.
    def cloud_start(self, cs, batch_size):
        m = self._model("cloud")
        W = T.config_of(m).max_len
        return {"seq": jnp.zeros((batch_size, W), jnp.int32),
                "n": jnp.zeros((batch_size,), jnp.int32), "cache": m.init_cache(batch_size)}

    def _prefill(self, cs, cc, prompt):
        Lp, N, V = self._ex()
        x = prompt.data["x"]
        B = x.shape[0]
        _, cache = self._model("cloud").decode(cs["cloud"], x[:, :Lp - 1], jnp.zeros((B,), jnp.int32),
                                               cc["cache"])
        return {"seq": cc["seq"].at[:, :Lp].set(x), "n": cc["n"], "cache": cache}


class EdgeOnly(_Decoder):
    manifest = api.Manifest(name="edge-only", tracks=("infer",), applies_to=("pcfg",),
                            reference="edge-only",
                            description="The edge model generates every token (KV cache), in one turn.")
    default_hparams = {"temperature": 0.0}

    def edge_query(self, es, carry, rng):
        Lp, N, V = self._ex()
        m = self._model("edge")
        B = carry["x"].shape[0]
        # First step feeds [prev, last]; then one token per step.
        logits, cache = m.decode(es["edge"], jnp.stack([carry["prev"], carry["last"]], 1),
                                 Lp - 2 + jnp.zeros((B,), jnp.int32), carry["cache"])
        t0 = self._next(logits[:, -1], jax.random.fold_in(rng, 0))

        def step(c, i):
            tok, cache = c
            lg, cache = m.decode(es["edge"], tok[:, None], Lp + i + jnp.zeros((B,), jnp.int32), cache)
            nxt = self._next(lg[:, -1], jax.random.fold_in(rng, i + 1))
            return (nxt, cache), nxt
        (_, cache), rest = jax.lax.scan(step, (t0, cache), jnp.arange(N - 1))
        toks = jnp.concatenate([t0[:, None], rest.T], 1)
        out, n = self._commit(carry, jnp.ones((B,), bool), toks, jnp.full((B,), N, jnp.int32))
        carry = dict(carry, out=out, n=n, cache=cache)
        none = jnp.zeros((B,), bool)
        return api.Query(carry, {"go": api.Rows({}, none)}, none, ~none)

    def cloud_reply(self, cs, cc, up, rng):
        return cc, {}

    def edge_receive(self, es, carry, inbox, rng):
        return carry


class CloudOnly(_Decoder):
    manifest = api.Manifest(name="cloud-only", tracks=("infer",), applies_to=("pcfg",),
                            reference="cloud-only",
                            description="Cloud streaming: the prompt goes up once, the cloud "
                                        "decodes one token per pass and streams it down.")
    default_hparams = {"temperature": 0.0}
    edge_prefill = False

    def edge_setup(self, rng):
        return {}, {}  # the edge model is never used

    def edge_query(self, es, carry, rng):
        Lp, N, V = self._ex()
        n = carry["n"]
        send = n < N
        # The first request carries the prompt; later ones are empty (a row asking costs nothing).
        up = ({"go": api.Rows({}, send)} if "started" in carry
              else {"prompt": api.Rows({"x": carry["x"]}, send)})
        return api.Query(carry, up, send, n + 1 >= N)  # done once this reply completes the row

    def edge_receive(self, es, carry, inbox, rng):
        B = carry["x"].shape[0]
        out, n = self._commit(carry, inbox.got, inbox.msg["tok"][:, None], jnp.ones((B,), jnp.int32))
        return dict(carry, out=out, n=n, started=jnp.ones((B,), bool))

    def _step(self, cs, cc, last, rng, sent):
        Lp, N, V = self._ex()
        pos = Lp - 1 + cc["n"]
        logits, cache = self._model("cloud").decode(cs["cloud"], last[:, None], pos, cc["cache"])
        tok = self._next(logits[:, -1], rng)
        seq = jnp.where(sent[:, None] & (jnp.arange(cc["seq"].shape[1])[None] == pos[:, None] + 1),
                        tok[:, None], cc["seq"])
        cc = {"seq": seq, "n": cc["n"] + sent, "cache": cache}
        return cc, {"tok": tok}

    def cloud_first_reply(self, cs, cc, up, rng):
        Lp, N, V = self._ex()
        cc = self._prefill(cs, cc, up["prompt"])
        return self._step(cs, cc, up["prompt"].data["x"][:, Lp - 1], rng, up["prompt"].mask)

    def cloud_reply(self, cs, cc, up, rng):
        Lp, N, V = self._ex()
        last = jnp.take_along_axis(cc["seq"], (Lp - 1 + cc["n"])[:, None], 1)[:, 0]
        return self._step(cs, cc, last, rng, up["go"].mask)


class SpecDec(_Decoder):
    manifest = api.Manifest(name="specdec", tracks=("infer",), applies_to=("pcfg",),
                            description="Edge drafts gamma tokens (ids up), the cloud verifies them "
                                        "in one pass; exact in greedy and sampling modes.",
                            paper="Leviathan et al. 2023; Chen et al. 2023")
    default_hparams = {"gamma": 4, "temperature": 0.0}
    sweep = tuple({"gamma": g} for g in (1, 2, 4, 8))
    topk = 0  # > 0: sample drafts from the edge's top-k and upload those probabilities

    def __init__(self, view, hp):
        super().__init__(view, hp)
        if not 1 <= int(self.hp["gamma"]) <= view.max_gamma:
            raise api.TaskError(f"gamma must be in 1..{view.max_gamma} (the task's max_gamma), "
                                f"got {self.hp['gamma']}")

    def _cloud_has_drafter(self) -> bool:
        """Sampling with ids only: the cloud recomputes the draft distributions."""
        return self._sample() and not self.topk

    def edge_setup(self, rng):
        es = dict(self.view.params)
        return es, ({"edge": es["edge"]} if self._cloud_has_drafter() else {})

    def cloud_setup(self, uplink, rng):
        cs = dict(self.view.params)
        if self._cloud_has_drafter():
            cs["edge"] = uplink["edge"]
        return cs, {}

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

    def edge_query(self, es, carry, rng):
        Lp, N, V = self._ex()
        g = self.hp["gamma"]
        m = self._model("edge")
        n = carry["n"]
        done = n >= N
        # Draft gamma tokens: the first step feeds [prev, last].
        pos = Lp - 1 + n
        logits, cache = m.decode(es["edge"], jnp.stack([carry["prev"], carry["last"]], 1), pos - 1,
                                 carry["cache"])
        d0, s0 = self._draw(logits[:, -1], jax.random.fold_in(rng, 0))

        def step(c, i):
            tok_i, cache = c
            lg, cache = m.decode(es["edge"], tok_i[:, None], pos + i, cache)
            d, s = self._draw(lg[:, -1], jax.random.fold_in(rng, i))
            return (d, cache), (d, s)
        (_, cache), (rest, srest) = jax.lax.scan(step, (d0, cache), jnp.arange(1, g))
        drafts = jnp.concatenate([d0[:, None], rest.T], 1)
        send = ~done
        payload = {"tok": drafts}
        if self.topk and self._sample():
            vals = jnp.concatenate([s0[0][:, None], jnp.swapaxes(srest[0], 0, 1)], 1)
            idx = jnp.concatenate([s0[1][:, None], jnp.swapaxes(srest[1], 0, 1)], 1)
            payload.update(q_p=vals, q_ids=idx)
        up = {"draft": api.Rows(payload, send)}
        if "started" not in carry:  # the first query carries the prompt
            up["prompt"] = api.Rows({"x": carry["x"]}, send)
        return api.Query(dict(carry, cache=cache, drafts=drafts), up, send, done)

    def edge_receive(self, es, carry, inbox, rng):
        """Commits the cloud's verdict: the accepted drafts, then its token."""
        g = self.hp["gamma"]
        B = carry["x"].shape[0]
        got, a, tok = inbox.got, inbox.msg["acc"], inbox.msg["tok"]
        seq = jnp.concatenate([carry["drafts"], jnp.zeros((B, 1), jnp.int32)], 1)
        seq = jnp.where(jnp.arange(g + 1)[None] == a[:, None], tok[:, None], seq)
        out, n = self._commit(carry, got, seq, a + 1)
        prev_new = jnp.where(a > 0, jnp.take_along_axis(carry["drafts"], jnp.maximum(a - 1, 0)[:, None], 1)[:, 0],
                             carry["last"])
        return dict(carry, out=out, n=n, prev=jnp.where(got, prev_new, carry["prev"]),
                    last=jnp.where(got, tok, carry["last"]), started=jnp.ones((B,), bool))

    def _verify(self, cs, cc, draft, rng):
        Lp, N, V = self._ex()
        g = self.hp["gamma"]
        sent = draft.mask
        drafts = draft.data["tok"]
        pos = Lp - 1 + cc["n"]
        last = jnp.take_along_axis(cc["seq"], pos[:, None], 1)[:, 0]
        inp = jnp.concatenate([last[:, None], drafts], 1)
        logits, cache = self._model("cloud").decode(cs["cloud"], inp, pos, cc["cache"])
        if not self._sample():
            a, tok = accept_greedy(logits, drafts)
        else:
            p = jax.nn.softmax(logits, -1)
            if self.topk:
                q = topk_q(draft.data["q_p"].astype(jnp.float32), draft.data["q_ids"], V)
            else:  # recompute the draft distributions with the edge model sent up in setup
                W = cc["seq"].shape[1]
                rel = jnp.arange(W)[None] - pos[:, None] - 1
                full = jnp.where((rel >= 0) & (rel < g),
                                 jnp.take_along_axis(drafts, jnp.clip(rel, 0, g - 1), 1), cc["seq"])
                el = self._model("edge").apply(cs["edge"], full)
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

    def cloud_first_reply(self, cs, cc, up, rng):
        return self._verify(cs, self._prefill(cs, cc, up["prompt"]), up["draft"], rng)

    def cloud_reply(self, cs, cc, up, rng):
        return self._verify(cs, cc, up["draft"], rng)


class SpecDecTopK(SpecDec):
    manifest = api.Manifest(name="specdec-topk", tracks=("infer",), applies_to=("pcfg",),
                            description="SpecDec whose drafts are sampled from the edge's top-k "
                                        "distribution; the k probabilities (fp16) and ids go up "
                                        "with each draft, so the cloud need not rerun the drafter.",
                            paper="Leviathan et al. 2023; Oh et al. 2024 (U-HLM)")
    default_hparams = {"gamma": 4, "temperature": 1.0, "k": 8}
    sweep = tuple({"gamma": g} for g in (1, 2, 4, 8))
    codec_up = "fp16"

    def __init__(self, view, hp):
        super().__init__(view, hp)
        self.topk = int(self.hp["k"])
