"""Client partitions: determinism, skew, no empty clients, clear errors."""
import numpy as np
import pytest

from lsbench.data import partition as P
from lsbench.task import TaskError


def _labels(n=4000, k=10, seed=0):
    return np.random.default_rng(seed).integers(0, k, n)


def _whole(p):
    return [np.concatenate([a, b]) for a, b in zip(p.train, p.test)]


@pytest.mark.parametrize("kind", ["dirichlet", "pathological", "quantity", "iid"])
def test_same_seed_same_hash_different_seed_different_hash(kind):
    y = _labels()
    a = P.make(kind, y, 30, "1", seed=0)
    b = P.make(kind, y, 30, "1", seed=0)
    c = P.make(kind, y, 30, "1", seed=1)
    d = P.make(kind, y, 30, "2", seed=0)  # the task version is part of the key
    assert a.hash == b.hash
    assert all(np.array_equal(u, v) for u, v in zip(a.train, b.train))
    assert c.hash != a.hash and d.hash != a.hash


def test_dir01_more_skewed_than_dir100():
    y = _labels()
    skew = {a: P.label_skew(y, _whole(P.make("dirichlet", y, 50, "1", 0, alpha=a)), 10)
            for a in (0.1, 0.5, 100.0)}
    assert skew[0.1] > skew[0.5] > skew[100.0]
    assert skew[0.1] > 3 * skew[100.0]
    iid = P.label_skew(y, _whole(P.make("iid", y, 50, "1", 0)), 10)
    assert skew[0.1] > 3 * iid


@pytest.mark.parametrize("kind,kw,clients", [
    ("dirichlet", {"alpha": 0.1}, 7), ("dirichlet", {"alpha": 0.5}, 100), ("dirichlet", {"alpha": 100.0}, 100),
    ("pathological", {"classes_per_client": 1}, 100), ("pathological", {"classes_per_client": 3}, 7),
    ("quantity", {"alpha": 0.1}, 100), ("iid", {}, 100)])
def test_no_client_empty_and_disjoint(kind, kw, clients):
    y = _labels(4000)
    p = P.make(kind, y, clients, "1", 3, **kw)
    assert p.num_clients == clients
    assert min(len(t) for t in p.train) >= 1          # every client can train
    assert p.sizes().min() >= 1
    allidx = np.concatenate(_whole(p))
    assert len(np.unique(allidx)) == len(allidx)      # no example in two clients / splits
    assert allidx.max() < len(y)
    if kind == "dirichlet":                           # the documented minimum
        assert p.sizes().min() >= P.min_size_for(len(y), clients)


def test_pathological_classes_per_client():
    y = _labels(2000)
    p = P.make("pathological", y, 20, "1", 0, classes_per_client=2)
    assert max(len(np.unique(y[w])) for w in _whole(p)) <= 2


def test_local_test_split():
    y = _labels(2000)
    p = P.make("dirichlet", y, 20, "1", 0, test_frac=0.25)
    frac = sum(len(t) for t in p.test) / len(y)
    assert 0.2 < frac < 0.3
    assert all(len(t) >= 1 for t, s in zip(p.test, p.sizes()) if s >= 2)


def test_natural_partition():
    ids = np.array([2, 0, 1, 1, 2, 0, 0])
    parts = P.natural(ids)
    assert [list(p) for p in parts] == [[1, 5, 6], [2, 3], [0, 4]]
    with pytest.raises(TaskError):
        P.natural(np.array([0, 2]))  # client 1 missing


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_bad_alpha_one_line(alpha):
    with pytest.raises(TaskError) as e:
        P.make("dirichlet", _labels(100), 5, "1", 0, alpha=alpha)
    assert "alpha" in str(e.value) and "\n" not in str(e.value)


def test_more_clients_than_examples_one_line():
    with pytest.raises(TaskError) as e:
        P.make("dirichlet", _labels(30), 31, "1", 0)
    assert "clients" in str(e.value) and "at most 30" in str(e.value) and "\n" not in str(e.value)


def test_impossible_dirichlet_is_one_line():
    with pytest.raises(TaskError) as e:  # Dir(0.01), 100 clients of 15: no valid draw
        P.make("dirichlet", _labels(1500), 100, "1", 0, alpha=0.01)
    assert "raise alpha" in str(e.value) and "\n" not in str(e.value)


def test_unknown_partition():
    with pytest.raises(TaskError, match="unknown partition"):
        P.make("shards", _labels(100), 5, "1", 0)
