"""Every training task's splits: clients' train rows, the validation split, the
test rows (global and clients' local) and the public split are disjoint by
*content* (row hashes, not indices), the validation split is fixed by the task
version (the same for every seed), and together the splits cover the pool."""
import hashlib

import numpy as np
import pytest

from lsbench.data import catalog
from tasks import train_digits, train_mnist1d, train_synthetic

FAST = [train_digits.TASK, train_synthetic.TASK]      # (train/synthetic-stragglers: the same splits)
SLOW = [train_mnist1d.TASK, train_mnist1d.TASK_DIR01, train_mnist1d.SANITY]  # mnist1d generation


def row_hashes(x, n=None) -> list:
    """sha1 of each row's bytes; ``x`` padded per client ([C, n_max, ...] with ``n``) or flat."""
    if n is not None:
        x = np.concatenate([x[c, :k] for c, k in enumerate(np.asarray(n))])
    x = np.ascontiguousarray(np.asarray(x, np.float32))
    return [hashlib.sha1(r.tobytes()).hexdigest() for r in x]


def splits(inst) -> dict:
    out = {"train": row_hashes(inst.train_x, inst.train_n),
           "val": row_hashes(inst.global_val_x),
           "test": row_hashes(inst.global_test_x) + row_hashes(inst.test_x, inst.test_n)}
    if inst.cloud_view.public is not None:
        out["public"] = row_hashes(inst.cloud_view.public)
    return out


def assert_disjoint(inst):
    s = {k: set(v) for k, v in splits(inst).items()}
    assert len(s["val"]) >= 50, "validation split too small to select on"
    names = sorted(s)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = s[a] & s[b]
            assert not both, f"{len(both)} rows are in both {a} and {b}"
    assert len(inst.global_val_y) == len(inst.global_val_x)


@pytest.mark.parametrize("spec", FAST, ids=lambda s: s.name)
def test_splits_disjoint(spec, data_dir):
    inst = spec.builder(spec, data_dir, 0)
    assert_disjoint(inst)
    # the pool is exactly clients' train + clients' local test (pooled tasks) + validation
    ds = catalog.load(spec.config["dataset"], data_dir, **dict(spec.config.get("data", {})))
    local_test = 0 if spec.config["partition"] == "natural" else int(np.sum(inst.test_n))
    assert int(np.sum(inst.train_n)) + local_test + len(inst.global_val_y) == len(ds.y)
    # validation is fixed by the task version, the client partition by the seed
    other = spec.builder(spec, data_dir, 1)
    assert np.array_equal(other.global_val_x, inst.global_val_x)
    assert other.hashes["validation"] == inst.hashes["validation"]
    if spec.config["partition"] != "natural":
        assert other.hashes["partition"] != inst.hashes["partition"]
    pool = lambda i: set(row_hashes(i.train_x, i.train_n)) | set(row_hashes(i.test_x, i.test_n))
    assert pool(other) == pool(inst)                    # the same pool, cut otherwise


@pytest.mark.slow
@pytest.mark.parametrize("spec", SLOW, ids=lambda s: s.name)
def test_splits_disjoint_large(spec, data_dir):
    test_splits_disjoint(spec, data_dir)


def test_validation_stratified(data_dir):
    """Every class (label-pooled tasks) or device (natural tasks) keeps its share."""
    d = train_digits.TASK.builder(train_digits.TASK, data_dir, 0)
    counts = np.bincount(d.global_val_y, minlength=10)
    assert counts.min() >= 0.5 * counts.mean()
    s = train_synthetic.TASK.builder(train_synthetic.TASK, data_dir, 0)
    assert (np.asarray(s.train_n) >= 1).all()      # every device keeps train rows


def test_bad_val_frac(data_dir):
    import dataclasses

    from lsbench.task import TaskError
    bad = dataclasses.replace(train_digits.TASK, config=dict(train_digits.TASK.config, val_frac=1.0))
    with pytest.raises(TaskError, match="val_frac"):
        bad.builder(bad, data_dir, 0)
