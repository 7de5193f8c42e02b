"""Route 4 (training): work that used to be free. Under API v1 a method could
precompute arrays in its constructor, or in NumPy at trace time, outside the
FLOP meter. Now constructors may do no array work (refused), a large NumPy
constant in a metered function is refused, and the same work moved into
``cloud_setup`` / ``edge_setup`` is billed in full (``setup_*_flops``).
The methods are classes defined right here and passed to ``lsbench.run``."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lsbench
from lsbench.errors import SealError

from ._train_util import TINY, plugin

Honest = plugin("train_base").Honest
M, K, N = 48, 40, 24          # the cloud's precomputation: [M, K] @ [K, N]
m, k, n = 8, 16, 12           # each edge's: [m, k] @ [k, n]
CLIENTS = 6                   # tests/plugins/tiny_train.py:TASK


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setenv("LSBENCH_TIME_PROGRAMS", "0")


class CtorJaxWork(Honest):
    def __init__(self, view, hp):
        super().__init__(view, hp)
        self.table = jnp.ones((M, K)) @ jnp.ones((K, N))


class CtorStoresArray(Honest):
    def __init__(self, view, hp):
        super().__init__(view, hp)
        self.table = np.random.default_rng(0).normal(size=(M, K))


class NumpyAtTrace(Honest):
    """A 300 x 300 table made in NumPy while client_step is traced: unmetered work."""

    def client_step(self, p, batch, rng):
        table = np.linalg.inv(np.eye(300) + 0.01 * np.random.default_rng(0).normal(size=(300, 300)))
        p, loss = super().client_step(p, batch, rng)
        return p, loss + 0.0 * jnp.asarray(table, jnp.float32).sum()


class SetupWork(Honest):
    """The same precomputation, done where it is metered."""

    def cloud_setup(self, rng):
        a, b = jax.random.normal(rng, (M, K)), jax.random.normal(rng, (K, N))
        return {"p": super().cloud_setup(rng), "table": a @ b}

    def cloud_downlink(self, cloud, tier, ids):
        return cloud["p"]

    def cloud_update(self, cloud, rnd, rng):
        return {"p": super().cloud_update(cloud["p"], rnd, rng), "table": cloud["table"]}

    def predict_global_edge(self, cloud, x):
        return self.apply(cloud["p"], x)

    def edge_setup(self, rng):
        a, b = jax.random.normal(rng, (m, k)), jax.random.normal(rng, (k, n))
        p, table = super().edge_setup(rng), a @ b
        return jax.tree_util.tree_map(lambda w: w + 0.0 * table.sum(), p)


@pytest.mark.parametrize("cls,words", [(CtorJaxWork, "constructor does JAX work"),
                                       (CtorStoresArray, "constructor stores an array in self.table")])
def test_array_work_in_the_constructor_is_refused(cls, words):
    with pytest.raises(SealError) as e:
        lsbench.run(task=TINY, method=cls)
    assert words in str(e.value) and "edge_setup/cloud_setup" in str(e.value) and "\n" not in str(e.value)


def test_numpy_work_at_trace_time_is_refused():
    with pytest.raises(SealError) as e:
        lsbench.run(task=TINY, method=NumpyAtTrace)
    msg = str(e.value)
    assert msg.startswith("edge function") and "client_step" in msg and "90000-element constant" in msg


def test_work_moved_into_setup_is_billed_in_full():
    final = lsbench.run(task=TINY, method=SetupWork)
    honest = lsbench.run(task=TINY, method=Honest)
    c, h = final["costs"], honest["costs"]
    assert final["status"] == "completed"
    # the tiny task's linear model initialises without a matmul: setup FLOPs are exactly the tables'
    assert h["setup_cloud_flops"] == h["setup_edge_flops"] == 0
    assert c["setup_cloud_flops"] == 2 * M * K * N
    assert c["setup_edge_flops"] == CLIENTS * 2 * m * k * n
    # nothing else changed: same bytes and per-round FLOPs, same quality
    for key in ("bytes_up", "bytes_down", "edge_flops", "cloud_flops"):
        assert c[key] == h[key], key
    assert final["metrics"]["edge_personal_accuracy"] == honest["metrics"]["edge_personal_accuracy"]
