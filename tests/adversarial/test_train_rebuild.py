"""Route 1 (training): rebuilding the task inside the method to read, as
constants, other clients' data, the hidden test labels or the cloud's public
split. Unsealed, ``AllClientsData`` would train every edge on the pooled data at
FedAvg's bytes; sealed, each constant is recognised by content and refused with
one line naming the function and the asset."""
import pytest

import lsbench
from lsbench.errors import SealError

from ._train_util import data_dir, plugin

TASK = "train/digits"


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setenv("LSBENCH_TIME_PROGRAMS", "0")


def _refused(name):
    cls = getattr(plugin("train_rebuild"), name)
    with pytest.raises(SealError) as e:
        lsbench.run(task=TASK, method=cls, data_dir=data_dir(), hparams={"data_dir": data_dir()},
                    max_units=1)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_every_clients_data_on_the_edge_is_refused():
    msg = _refused("AllClientsData")
    assert msg.startswith("edge function") and "client_step" in msg and "hidden task data" in msg
    assert "train_x" in msg or "train_y" in msg


def test_one_other_clients_rows_are_refused():
    msg = _refused("OneOtherClient")
    assert "client_step" in msg and "hidden task data" in msg and "train_x" in msg


def test_hidden_test_labels_are_refused_on_either_side():
    msg = _refused("TestLabels")
    assert msg.startswith("edge function") and "predict_edge" in msg and "global_test_y" in msg
    msg = _refused("CloudTestLabels")
    assert msg.startswith("cloud function predict_global_edge") and "global_test_y" in msg


def test_the_clouds_public_split_is_refused_on_an_edge_that_did_not_declare_it():
    msg = _refused("PublicForFree")
    assert msg.startswith("edge function") and "client_final" in msg and "cloud view/public" in msg


def test_hidden_validation_labels_are_refused():
    """Selection reads validation, so its labels are hidden task data like the test labels."""
    msg = _refused("ValidationLabels")
    assert msg.startswith("edge function") and "predict_edge" in msg and "global_val_y" in msg
