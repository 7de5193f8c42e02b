"""Sequences from a procedurally generated probabilistic grammar (task pcfg-specdec).

The grammar (word lists and all probabilities drawn from ``grammar_seed``):
  S     -> NP_k VP_k '.'                      k ~ agreement class
  NP_k  -> Det_k Adj* N_k [ 'that' NP_j VP_j ]  (relative clause, nested <= 2)
  VP_k  -> V_k [ NP_m ]
Local statistics (Det -> Adj/N, words per class) are easy; the main verb must
agree with its head noun across a relative clause, which is long-range. So a
tiny model drafts well but generates worse. Sequences are BOS + sentences,
cut to a fixed length. Generation is numpy and takes about a second, so it is
regenerated from the seed rather than cached; ``data_hash`` fingerprints it.
"""
from __future__ import annotations

import hashlib

import numpy as np

from lsbench.data import textsplit

BOS, DOT, THAT = 0, 1, 2


def make_grammar(seed: int, classes: int = 3, dets: int = 2, nouns: int = 6, verbs: int = 6,
                 adjs: int = 4) -> dict:
    rng = np.random.default_rng(seed)
    nxt = 3
    g = {"adj": np.arange(nxt, nxt + adjs)}
    nxt += adjs
    for kind, n in (("det", dets), ("noun", nouns), ("verb", verbs)):
        g[kind] = np.arange(nxt, nxt + classes * n).reshape(classes, n)
        nxt += classes * n
    g["vocab"] = nxt
    g["p_class"] = rng.dirichlet(np.full(classes, 4.0))
    g["p_word"] = {k: rng.dirichlet(np.full(g[k].shape[-1], 1.0), size=classes) for k in ("det", "noun", "verb")}
    g["p_adj_word"] = rng.dirichlet(np.full(adjs, 1.0))
    g["p_adj"], g["p_rel"], g["p_obj"] = 0.3, 0.35, 0.5
    return g


def _pick(rng, p):
    return min(int(np.searchsorted(np.cumsum(p), rng.random(), side="right")), len(p) - 1)


def _word(rng, g, kind, k):
    return int(g[kind][k][_pick(rng, g["p_word"][kind][k])])


def _np(rng, g, k, depth, out):
    out.append(_word(rng, g, "det", k))
    while rng.random() < g["p_adj"]:
        out.append(int(g["adj"][_pick(rng, g["p_adj_word"])]))
    out.append(_word(rng, g, "noun", k))
    if depth < 2 and rng.random() < g["p_rel"]:
        out.append(THAT)
        j = _pick(rng, g["p_class"])
        _np(rng, g, j, depth + 1, out)
        _vp(rng, g, j, depth + 1, out)


def _vp(rng, g, k, depth, out):
    out.append(_word(rng, g, "verb", k))
    if depth < 2 and rng.random() < g["p_obj"]:
        m = _pick(rng, g["p_class"])
        _np(rng, g, m, depth + 1, out)


def generate(g: dict, n: int, length: int, seed: int) -> np.ndarray:
    """int32[n, length]: BOS then sentences, cut to ``length``."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, length), np.int32)
    for i in range(n):
        seq = [BOS]
        while len(seq) < length:
            k = _pick(rng, g["p_class"])
            _np(rng, g, k, 0, seq)
            _vp(rng, g, k, 0, seq)
            seq.append(DOT)
        out[i] = seq[:length]
    return out


def splits(g: dict, length: int, prompt_len: int, seed: int, sizes: dict) -> dict:
    """Sequences per split (``sizes``: train, calib, val, test) from one stream,
    disjoint by prompt (the first ``prompt_len`` tokens): a prompt's split
    is fixed by its content (``lsbench.data.textsplit``)."""
    d = textsplit.draw(lambda j: {"s": generate(g, 512, length, [seed, j])},
                       lambda c: c["s"][:, :prompt_len], sizes)
    return {k: v["s"] for k, v in d.items()}


def data_hash(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:16]
