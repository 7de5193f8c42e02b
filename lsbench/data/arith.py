"""Nested modular-arithmetic expressions with a single-token answer (task arith-route).

An expression of depth d is ``( A op B )`` where one side is an expression of
depth d-1 and the other a digit; ops are max/min (``minmax``, default), + - * mod 10 (``mod``)
or + max min (``mixed``); depth 0 is a digit. So a
depth-d query has 4d+1 tokens, then ``=``; queries are left-padded to a fixed
length and the answer is one digit token. Depth (1..max_depth, uniform) sets
the difficulty. Splits are disjoint by content (``splits``): there are only
200 distinct depth-1 queries, so independent draws repeated test queries in train. Generation is plain numpy and takes well under a second, so
splits are regenerated on demand from the seed instead of cached (a TFDS
builder would add a disk cache and nothing else); ``data_hash`` fingerprints them.
"""
from __future__ import annotations

import hashlib

import numpy as np

from lsbench.data import textsplit

DIGITS = 10
PLUS, MINUS, TIMES, MAX, MIN, OPEN, CLOSE, EQ, PAD = range(10, 19)
VOCAB = 19
SYMBOLS = "0123456789+-*><()=_"
OPSETS = {"mod": (PLUS, MINUS, TIMES), "minmax": (MAX, MIN), "mixed": (PLUS, MAX, MIN)}


def query_len(max_depth: int) -> int:
    return 4 * max_depth + 2


def _apply(op, a, b):
    if op == MAX:
        return max(a, b)
    if op == MIN:
        return min(a, b)
    return (a + b if op == PLUS else a - b if op == MINUS else a * b) % DIGITS


def _expr(rng, depth, ops):
    if depth == 0:
        v = int(rng.integers(DIGITS))
        return [v], v
    sub, sv = _expr(rng, depth - 1, ops)
    d = int(rng.integers(DIGITS))
    op = ops[int(rng.integers(len(ops)))]
    left, right = (sub, [d]) if rng.random() < 0.5 else ([d], sub)
    lv, rv = (sv, d) if left is sub else (d, sv)
    return [OPEN] + left + [op] + right + [CLOSE], _apply(op, lv, rv)


def generate(n: int, seed: int, max_depth: int = 5, ops: str = "minmax"):
    """{'x': int32[n, 4*max_depth+2] left-padded queries ending in '=',
    'y': int32[n] answer digit, 'depth': int32[n]}; deterministic from seed."""
    rng = np.random.default_rng(seed)
    L = query_len(max_depth)
    x = np.full((n, L), PAD, np.int32)
    y = np.zeros(n, np.int32)
    depth = rng.integers(1, max_depth + 1, size=n).astype(np.int32)
    for i in range(n):
        toks, v = _expr(rng, int(depth[i]), OPSETS[ops])
        toks = toks + [EQ]
        x[i, L - len(toks):] = toks
        y[i] = v
    return {"x": x, "y": y, "depth": depth}


SPLITS = ("train", "calib", "val", "test")


def splits(seed: int, n_train: int, n_calib: int, n_test: int, max_depth: int = 5,
           ops: str = "minmax", n_val: int = 0):
    """Train, calibration, validation and test splits from one stream of the seed,
    disjoint by content: a query's split is fixed by its tokens
    (``lsbench.data.textsplit``), so no test, validation or calibration query
    occurs in train, nor in another split."""
    if ops not in OPSETS:
        raise ValueError(f"unknown arith op set '{ops}'; use one of {sorted(OPSETS)}")
    sizes = {"train": n_train, "calib": n_calib, "val": n_val, "test": n_test}
    return textsplit.draw(lambda j: generate(textsplit.CHUNK, [seed, j], max_depth, ops),
                          lambda c: c["x"], sizes)


def splits_v1(seed: int, n_train: int, n_calib: int, n_test: int, max_depth: int = 5,
              ops: str = "minmax"):
    """The splits of task versions <= 2 (independent streams, not deduplicated);
    kept to measure their overlap (``textsplit.overlap``)."""
    return {name: generate(n, seed * 1000 + i, max_depth, ops)
            for i, (name, n) in enumerate((("train", n_train), ("calib", n_calib), ("test", n_test)))}


def as_text(q) -> str:
    return " ".join(SYMBOLS[t] for t in np.asarray(q) if t != PAD)


def data_hash(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:16]
