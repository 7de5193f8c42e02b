"""Sweeps of the public-set methods mean something on every task: ``n_pub`` is
capped to the task's public split in ``effective_hparams`` (the suite runs
equal effective points once), the capped value is the one a run uses, and no
built-in sweep point collapses onto another on the training tasks. Also the
centralized reference's bounded budget (``pooled_epochs``)."""
import dataclasses
import math

import numpy as np
import pytest

from baselines.bikd import BiKD
from baselines.dsfl import DSFL
from baselines.feddf import FedDF
from baselines.fedmd import FedMD
from lsbench.data import catalog
from lsbench.data.mnist1d_data import CONFIGS
from lsbench.suite.grid import collapse
from tasks import train_digits, train_mnist1d, train_synthetic

PUBLIC = (FedMD, DSFL, BiKD, FedDF)


def test_public_rows_known_without_loading(data_dir):
    d = catalog.load("digits", data_dir)
    assert catalog.public_rows("digits") == len(d.public_x)
    large = {c.name: c for c in CONFIGS}["large"]
    assert catalog.public_rows("mnist1d", size="large") == large.public == 10000
    assert catalog.public_rows("mnist1d", size="default") == 2000   # a separate generation
    assert catalog.public_rows("synthetic") == 0


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_sweeps_distinct_and_capped(cls):
    for spec in (train_digits.TASK, train_mnist1d.TASK):
        points = [{}, *cls.sweep]
        kept, notes = collapse(points, cls, spec)
        assert kept == points and not notes, f"{cls.__name__} on {spec.name}: {notes}"
    # the case: n_pub=200 and n_pub=1000 are one run on digits (200 public rows), two on mnist1d
    two = [{"n_pub": 200}, {"n_pub": 1000}]
    assert len(collapse(two, cls, train_digits.TASK)[0]) == 1
    assert len(collapse(two, cls, train_mnist1d.TASK)[0]) == 2
    eff = cls.effective_hparams(dict(cls.default_hparams, n_pub=10 ** 6), train_digits.TASK)
    assert eff["n_pub"] == catalog.public_rows("digits")


def test_run_uses_the_effective_n_pub(data_dir):
    inst = train_digits.TASK.builder(train_digits.TASK, data_dir, 0)
    for cls in PUBLIC:
        hp = dict(cls.default_hparams, n_pub=1000)
        m = cls(inst.cloud_view, hp)
        assert m.n_pub == cls.effective_hparams(hp, train_digits.TASK)["n_pub"] == len(inst.cloud_view.public)


def test_pooled_epochs_bound_the_centralized_reference(data_dir):
    from lsbench.harness.train_loop import pooled_view
    assert train_mnist1d.TASK.config["pooled_epochs"] and train_synthetic.TASK.config["pooled_epochs"]
    spec = dataclasses.replace(train_digits.TASK, config=dict(train_digits.TASK.config, pooled_epochs=6))
    inst = spec.builder(spec, data_dir, 0)
    n = int(np.sum(inst.train_n))
    assert inst.pooled_epochs == 6.0
    assert pooled_view(inst).max_local_steps == math.ceil(6 / inst.rounds * n / inst.batch_size)
    plain = train_digits.TASK.builder(train_digits.TASK, data_dir, 0)
    assert plain.pooled_epochs is None
    assert pooled_view(plain).max_local_steps == math.ceil(plain.local_epochs * n / plain.batch_size)
