"""Client partitions: deterministic from (task version, seed); hashed into the manifest.

Kinds (``make(kind, labels, num_clients, version, seed, **kw)``):

``dirichlet`` (label skew Dir(alpha)). lsbench's exact definition, which is
NIID-Bench's ``noniid-labeldir`` (its ``partition_data``) with the minimum made
explicit: for every class k in turn, draw p ~ Dir(alpha * 1_C) over the C
clients; *balance* by setting p_j = 0 for each client j that already holds
>= N / C examples, renormalise; cut the (shuffled) class-k indices at the
cumulative proportions. Repeat the whole draw until every client holds at
least ``min_size`` examples, where ``min_size = min(10, floor(N / C))`` (so at
least 1: no client is ever empty); give up with a TaskError after 1000 draws.
FL-bench's Dirichlet has no balance step and Flower's ``DirichletPartitioner``
makes it optional, so "Dir(0.5)" differs between suites: ours matches
NIID-Bench's (balance on, min 10 when N >= 10 C).

``pathological`` (#C classes per client, NIID-Bench ``noniid-#label{C}``):
client i holds class i mod K plus C - 1 other distinct classes drawn at
random; each class's examples are split evenly among its holders (a class
no client holds is dropped).

``quantity`` (quantity skew, like NIID-Bench ``iid-diff-quantity``): every
client first gets ``min_size`` examples, the remaining N - C * min_size are
shared by q ~ Dir(alpha * 1_C) (NIID-Bench instead redraws q until the minimum
holds, which rarely succeeds for small alpha); a random permutation of all
examples is cut at the cumulative sizes (labels IID).

``iid``: a random permutation cut into near-equal parts.

``natural``: ``ids[i]`` is the client of example i (Synthetic: one device,
one client); ids must be 0..C-1 and every client must appear.

Every client's examples are then split into a local train and a local test
split (``test_frac``, default 0.2; at least one train example, and one test
example whenever the client has two or more), for personalised accuracy.
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from lsbench.task import TaskError

KINDS = ("dirichlet", "pathological", "quantity", "iid", "natural")
MAX_DRAWS = 1000


@dataclasses.dataclass
class Partition:
    train: list          # per client: int64 indices into the pool (local train)
    test: list           # per client: local test indices
    hash: str

    @property
    def num_clients(self):
        return len(self.train)

    def sizes(self):
        return np.array([len(a) + len(b) for a, b in zip(self.train, self.test)])


def rng_for(version: str, seed: int, salt: str = "partition") -> np.random.Generator:
    """A NumPy generator determined by (task version, seed, salt)."""
    h = int.from_bytes(hashlib.sha256(f"{version}/{salt}".encode()).digest()[:4], "little")
    return np.random.default_rng([h, int(seed)])


def _check(n: int, num_clients: int, alpha=None):
    if num_clients < 1:
        raise TaskError(f"num_clients must be >= 1, got {num_clients}")
    if num_clients > n:
        raise TaskError(f"{num_clients} clients but only {n} examples; use at most {n} clients")
    if alpha is not None and not alpha > 0:
        raise TaskError(f"Dirichlet alpha must be > 0, got {alpha}; use e.g. 0.1 (skewed) to 100 (near IID)")


def min_size_for(n: int, num_clients: int, min_size: int = 10) -> int:
    return max(1, min(min_size, n // num_clients))


def dirichlet(labels, num_clients: int, alpha: float, rng, min_size: int = 10) -> list:
    labels = np.asarray(labels)
    n = len(labels)
    _check(n, num_clients, alpha)
    need = min_size_for(n, num_clients, min_size)
    classes = np.unique(labels)
    by_class = [np.where(labels == k)[0] for k in classes]
    for _ in range(MAX_DRAWS):
        parts = [[] for _ in range(num_clients)]
        sizes = np.zeros(num_clients, np.int64)
        for idx in by_class:
            idx = rng.permutation(idx)
            p = rng.dirichlet(np.full(num_clients, alpha))
            p = p * (sizes < n / num_clients)              # balance step
            p = p / p.sum() if p.sum() > 0 else np.full(num_clients, 1.0 / num_clients)
            cuts = (np.cumsum(p) * len(idx)).astype(np.int64)[:-1]
            for j, chunk in enumerate(np.split(idx, cuts)):
                parts[j].append(chunk)
                sizes[j] += len(chunk)
        if sizes.min() >= need:
            return [np.sort(np.concatenate(p)) for p in parts]
    raise TaskError(f"Dir({alpha}) gave some client fewer than {need} examples in {MAX_DRAWS} draws; "
                    "raise alpha or use fewer clients")


def pathological(labels, num_clients: int, classes_per_client: int, rng) -> list:
    labels = np.asarray(labels)
    classes = np.unique(labels)
    K = len(classes)
    _check(len(labels), num_clients)
    if not 1 <= classes_per_client <= K:
        raise TaskError(f"classes_per_client must be in 1..{K}, got {classes_per_client}")
    holds = []
    for i in range(num_clients):
        own = i % K
        others = rng.choice([k for k in range(K) if k != own], classes_per_client - 1, replace=False)
        holds.append([own, *others.tolist()])
    parts = [[] for _ in range(num_clients)]
    for k in range(K):
        holders = [i for i in range(num_clients) if k in holds[i]]
        if not holders:
            continue
        idx = rng.permutation(np.where(labels == classes[k])[0])
        for i, chunk in zip(holders, np.array_split(idx, len(holders))):
            parts[i].append(chunk)
    out = [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]
    if min(len(p) for p in out) == 0:
        raise TaskError(f"pathological partition left a client empty ({num_clients} clients, "
                        f"{classes_per_client} classes each); use fewer clients")
    return out


def quantity(n: int, num_clients: int, alpha: float, rng, min_size: int = 10) -> list:
    _check(n, num_clients, alpha)
    need = min_size_for(n, num_clients, min_size)
    q = rng.dirichlet(np.full(num_clients, alpha))
    sizes = need + np.floor(q * (n - need * num_clients)).astype(np.int64)
    sizes[-1] = n - sizes[:-1].sum()
    return [np.sort(p) for p in np.split(rng.permutation(n), np.cumsum(sizes)[:-1])]


def iid(n: int, num_clients: int, rng) -> list:
    _check(n, num_clients)
    return [np.sort(p) for p in np.array_split(rng.permutation(n), num_clients)]


def natural(ids) -> list:
    ids = np.asarray(ids)
    C = int(ids.max()) + 1 if len(ids) else 0
    out = [np.where(ids == c)[0] for c in range(C)]
    if not out or min(len(p) for p in out) == 0:
        raise TaskError("natural partition: client ids must be 0..C-1 with every client present")
    return out


def split_local(parts, test_frac: float, rng):
    """Each client's indices -> (local train, local test)."""
    train, test = [], []
    for p in parts:
        p = rng.permutation(p)
        t = min(int(round(test_frac * len(p))), len(p) - 1)
        t = max(t, 1) if len(p) >= 2 and test_frac > 0 else max(t, 0)
        test.append(np.sort(p[:t]))
        train.append(np.sort(p[t:]))
    return train, test


def partition_hash(train, test) -> str:
    h = hashlib.sha256()
    for a, b in zip(train, test):
        for arr in (a, b):
            arr = np.asarray(arr, np.int64)
            h.update(len(arr).to_bytes(8, "little"))
            h.update(arr.tobytes())
    return h.hexdigest()[:16]


def make(kind: str, labels, num_clients: int, version: str, seed: int, *, alpha: float = 0.5,
         classes_per_client: int = 2, ids=None, test_frac: float = 0.2, min_size: int = 10) -> Partition:
    """The partition of a pool with ``labels``, deterministic from (version, seed)."""
    rng = rng_for(version, seed)
    n = len(labels)
    if kind == "dirichlet":
        parts = dirichlet(labels, num_clients, alpha, rng, min_size)
    elif kind == "pathological":
        parts = pathological(labels, num_clients, classes_per_client, rng)
    elif kind == "quantity":
        parts = quantity(n, num_clients, alpha, rng, min_size)
    elif kind == "iid":
        parts = iid(n, num_clients, rng)
    elif kind == "natural":
        if ids is None:
            raise TaskError("natural partition needs per-example client ids (dataset has none)")
        parts = natural(ids)
    else:
        raise TaskError(f"unknown partition '{kind}'; use one of {', '.join(KINDS)}")
    train, test = split_local(parts, test_frac, rng)
    return Partition(train, test, partition_hash(train, test))


def label_skew(labels, parts, num_classes: int) -> float:
    """Example-weighted mean total-variation distance between each client's label
    distribution and the pooled one (0 = IID, 1 = disjoint)."""
    labels = np.asarray(labels)
    glob = np.bincount(labels, minlength=num_classes) / len(labels)
    tv, w = [], []
    for p in parts:
        if len(p):
            h = np.bincount(labels[p], minlength=num_classes) / len(p)
            tv.append(0.5 * np.abs(h - glob).sum())
            w.append(len(p))
    return float(np.average(tv, weights=w))
