"""adapt/* tasks: the pretrained backbone is billed once per client, and each
method's round bills exactly its delta (the whole model for fedavg-full, the
adapters for fedlora/fedadapter/fedprompt, nothing for the local references);
the personal shift is real (clients' data differ by a transform). One round
each on adapt/mnist1d-small; the accuracy claims are in the slow test."""
import os

import numpy as np
import pytest

TASK = "adapt/mnist1d-small"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return os.environ.get("LSBENCH_DATA_DIR") or str(tmp_path_factory.mktemp("adapt-data"))


@pytest.fixture(scope="module")
def inst(data_dir):
    from tasks.adapt_mnist1d import SMALL
    return SMALL.build(data_dir, 0)


def test_clients_are_shifted_and_pretrained_on_both_views(inst):
    from tasks.adapt_mnist1d import transforms
    t = transforms("1", len(inst.train_n), 6)
    assert len(set(np.round(t["gain"], 6))) == len(inst.train_n)  # one transform per client
    for v in (inst.cloud_view, *inst.edge_views.values()):
        assert v.pretrained is inst.cloud_view.pretrained


@pytest.mark.parametrize("method,hp", [
    ("fedavg-full", {}), ("fedlora", {"rank": 4}), ("local-lora", {"rank": 4}),
    pytest.param("fedadapter", {"bottleneck": 8}, marks=pytest.mark.slow),  # default-suite CPU budget
    pytest.param("fedprompt", {}, marks=pytest.mark.slow)])
def test_round_bills_exactly_the_delta(data_dir, inst, tmp_path, method, hp):
    import jax
    import lsbench
    from lsbench.models import lora
    from lsbench.harness.trees import nbytes
    kind = {"fedavg-full": "full", "fedlora": "lora", "local-lora": "lora", "fedadapter": "adapter",
            "fedprompt": "prompt"}[method]
    pre = inst.cloud_view.pretrained
    delta = lora.init(kind, pre, jax.random.PRNGKey(0), rank=hp.get("rank", 4), bias=True,
                      bottleneck=hp.get("bottleneck", 8))
    f = lsbench.run(TASK, method, hparams=hp, data_dir=data_dir, workdir=str(tmp_path / "r"),
                    max_units=1)
    c, C = f["costs"], len(inst.train_n)
    assert "edge_personal_accuracy" in f["validation"]  # the primary (personal) metric has a validation twin
    k = inst.clients_per_round
    assert c["setup_bytes_down"] == nbytes(pre) * C
    if method.startswith("local"):
        assert c["bytes_down"] == 0 and c["bytes_up"] == 0
    else:
        assert c["bytes_down"] == k * 4 * lora.size(delta)
        assert c["bytes_up"] == k * (4 * lora.size(delta) + 8)  # + the examples/steps report
    if method == "fedlora":  # r = 4 on every dense layer: <= 5% of fedavg-full's bytes per round
        assert 4 * lora.size(delta) <= 0.05 * nbytes(pre)


@pytest.mark.slow
def test_fedlora_r4_bytes_and_personal_accuracy(data_dir, tmp_path):
    """fedlora r=4 sends <= 5% of fedavg-full's bytes per round, at personal
    accuracy within 3 points of it (adapt/mnist1d-small, seed 0)."""
    import lsbench
    full = lsbench.run(TASK, "fedavg-full", data_dir=data_dir)
    lo = lsbench.run(TASK, "fedlora", hparams={"rank": 4}, data_dir=data_dir)
    per_round = lambda f: (f["costs"]["bytes_up"] + f["costs"]["bytes_down"]) / f["units"]  # noqa: E731
    assert per_round(lo) <= 0.05 * per_round(full)
    m_full, m_lo = full["metrics"]["edge_personal_accuracy"], lo["metrics"]["edge_personal_accuracy"]
    assert m_lo >= m_full - 0.03, (m_lo, m_full)


def test_personal_validation_is_each_clients_own_and_disjoint_from_test(inst):
    """Selection on a personal metric reads validation: each client's val rows are its own
    (same transform, same client) and share no row with its test rows."""
    assert inst.val_x is not None and inst.val_x.shape[0] == inst.test_x.shape[0]
    for c in range(len(inst.train_n)):
        val = {r.tobytes() for r in inst.val_x[c, : inst.val_n[c]]}
        test = {r.tobytes() for r in inst.test_x[c, : inst.test_n[c]]}
        assert not val & test
    assert inst.val_n.sum() > 0 and abs(int(inst.val_n.sum()) - int(inst.test_n.sum())) <= len(inst.train_n)
    hidden = inst.hidden()
    assert "val_x" in hidden and "val_y" in hidden  # no side may hold them
