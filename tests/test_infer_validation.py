"""Inference data splits (issue 14): train, calibration, validation and test are
disjoint for every inference task's data, and the generated text tasks have no
train/test overlap (by construction; the old independent draws had some).
Validation metrics (that change nothing of the test run, and that selection
reads no test metric) are tested with the tasks' fixtures in
``test_infer_language.py``."""
import dataclasses

import numpy as np
import pytest

from lsbench.data import arith, pcfg, shapes, textsplit


def _rows(a):
    return {np.ascontiguousarray(r).tobytes() for r in np.asarray(a)}


def test_text_splits_are_disjoint_and_deterministic():
    d = arith.splits(7, 3000, 300, 400, 5, "minmax", n_val=300)
    assert {k: len(v["y"]) for k, v in d.items()} == {"train": 3000, "calib": 300, "val": 300, "test": 400}
    for a in d:
        for b in d:
            if a < b:
                assert not _rows(d[a]["x"]) & _rows(d[b]["x"]), (a, b)
    # every depth is still in test (the 200 depth-1 queries are shared out by content)
    assert set(np.unique(d["test"]["depth"])) == set(range(1, 6))
    again = arith.splits(7, 3000, 300, 400, 5, "minmax", n_val=300)
    np.testing.assert_array_equal(d["test"]["x"], again["test"]["x"])
    # a split's content does not depend on the other splits' sizes
    other = arith.splits(7, 1000, 300, 400, 5, "minmax", n_val=50)
    np.testing.assert_array_equal(d["test"]["x"], other["test"]["x"])
    # the old independent draws overlapped (what the dedup fixes): most depth-1 test queries
    old = arith.splits_v1(7, 3000, 300, 400)
    one = old["test"]["depth"] == 1
    assert textsplit.overlap(old["train"]["x"], old["test"]["x"][one]) > 0.5
    g = pcfg.make_grammar(3)
    p = pcfg.splits(g, 24, 8, 5, {"train": 300, "calib": 20, "val": 40, "test": 40})
    for a in p:
        for b in p:
            if a < b:
                assert textsplit.overlap(p[a][:, :8], p[b][:, :8]) == 0.0, (a, b)


def test_shapes_splits_share_no_image():
    # The TFDS builder writes exactly these streams (one generator per split).
    got = {s: shapes.generate(150, 0, s, (0.6, 0.4, 0.0))["image"] for s in shapes.SPLITS}
    keys = {s: _rows(v) for s, v in got.items()}
    for a in keys:
        for b in keys:
            if a < b:
                assert not keys[a] & keys[b], (a, b)
