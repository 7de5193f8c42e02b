"""Content-addressed splits for the generated text tasks (arith, pcfg).

An example's split is fixed by its content: ``bucket = crc32(key bytes) mod
BUCKETS`` and each split owns its own buckets, so a query (arith) or a prompt
(pcfg) that occurs in one split never occurs in another: train, calibration,
validation and test are disjoint by construction, at any size. One random
stream feeds all splits: each example goes to the split owning its bucket. (Drawing the splits independently, as these tasks
did before, put 27% of arith-route's test queries in its training set, all of
its depth-1 queries: ``overlap`` measures it, ``benchmarks/bench_infer_language.py
--overlap`` prints it.)
"""
from __future__ import annotations

import zlib

import numpy as np

BUCKETS = 20
OWNER = {"test": (0, 1), "val": (2, 3), "calib": (4, 5), "train": tuple(range(6, BUCKETS))}
CHUNK = 4096


def buckets(keys) -> np.ndarray:
    """int[n]: the bucket of each row of ``keys`` (int array [n, ...])."""
    keys = np.ascontiguousarray(np.asarray(keys, np.int32))
    return np.array([zlib.crc32(r.tobytes()) % BUCKETS for r in keys], np.int64)


def draw(make, key, sizes: dict) -> dict:
    """Examples per split (``sizes``: split -> n) from one stream: ``make(i)``
    returns chunk i (a dict of arrays with a leading example axis), ``key(chunk)``
    the rows that decide each example's bucket. Each example goes to the split
    that owns its bucket; a split keeps its first n. A split's content does not
    depend on the other splits' sizes."""
    owner = np.full(BUCKETS, -1)
    names = list(sizes)
    for j, name in enumerate(names):
        owner[list(OWNER[name])] = j
    parts = {name: [] for name in names}
    have = dict.fromkeys(names, 0)
    i = 0
    while any(have[n] < sizes[n] for n in names):
        c = make(i)
        where = owner[buckets(key(c))]
        for j, name in enumerate(names):
            if have[name] < sizes[name]:
                sel = where == j
                parts[name].append({k: v[sel] for k, v in c.items()})
                have[name] += int(sel.sum())
        i += 1
        if i > 10_000:
            raise RuntimeError(f"could not draw {sizes} examples")
    first = make(0) if not all(parts.values()) else None  # a split of size 0 keeps the keys
    return {name: {k: np.concatenate([p[k] for p in ps])[:sizes[name]] for k in ps[0]} if ps else
            {k: v[:0] for k, v in first.items()} for name, ps in parts.items()}


def overlap(a, b) -> float:
    """The share of rows of ``b`` that also occur in ``a`` (both int arrays [n, ...])."""
    seen = {np.ascontiguousarray(r).tobytes() for r in np.asarray(a)}
    rows = np.asarray(b)
    return float(np.mean([np.ascontiguousarray(r).tobytes() in seen for r in rows])) if len(rows) else 0.0
