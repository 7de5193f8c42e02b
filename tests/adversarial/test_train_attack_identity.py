"""Byzantine tasks (#18): the identity of the malicious clients never reaches the method.

It is on no view (nor in the Round the cloud gets: client ids it sampled, the
reports), and a method that finds it in the harness's memory at trace time
and bakes it into its program is refused by the sealer: the mask is listed
with the task's hidden data (``TrainInstance.hidden``). What in-process sealing
cannot stop (see ``lsbench.harness.sealed``): a side that copies a small
derived table (fewer than 16 numbers) out of another object's memory; only a
two-process mode closes that."""
import dataclasses
import gc
import os

import jax.numpy as jnp
import numpy as np
import pytest

from lsbench import api, registry
from lsbench.errors import SealError
from lsbench.harness import runner, sealed
from baselines._train_common import weighted_average
from baselines.fedavg import FedAvg
from tasks.train_byz import variant

TINY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins", "tiny_train.py") + ":TASK"


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setenv("LSBENCH_TIME_PROGRAMS", "0")


def _spec():
    tiny = registry.load_task(TINY)
    tiny = dataclasses.replace(tiny, config=dict(tiny.config, clients=20, clients_per_round=10, rounds=2))
    return variant(tiny, "signflip", 0.5)


def _build(cls):
    spec = _spec()
    hp = runner.merge_hparams(cls, None)
    cfg = runner.RunConfig(task=spec.name, method=cls, seed=0, data_dir="/nonexistent-unused")
    return runner.build(cfg, spec, cls, hp, log=lambda s: None)


class ReadsIdentity(FedAvg):
    """Finds the harness's Byzantine object in memory and drops the malicious clients."""
    manifest = api.Manifest(name="reads-identity", tracks=("train",))

    def cloud_update(self, cloud, rnd, rng):
        byz = next(o for o in gc.get_objects() if type(o).__name__ == "Byzantine")
        honest = ~jnp.asarray(byz.malicious)[rnd.client_ids]
        return weighted_average(rnd.messages, rnd.examples * honest)


def test_no_view_holds_the_malicious_clients():
    inst, sides, loop, _ = _build(FedAvg)
    mask = inst.attack.malicious
    assert 0 < mask.sum() < len(mask)
    key = sealed._content_key(mask.astype(np.float32))
    for view in list(inst.edge_views.values()) + [inst.cloud_view]:
        assert key not in sealed._walk_arrays(view, "view", {})
        assert not any("malicious" in f.name or "attack" in f.name for f in dataclasses.fields(view))
    assert set(api.Round._fields) == {"messages", "examples", "client_ids", "tier", "local_steps"}


def test_a_method_that_reads_the_identity_is_refused():
    inst, sides, loop, _ = _build(ReadsIdentity)
    with pytest.raises(SealError) as e:
        loop.preflight()
        state = loop.init_state()
        runner.run_units(loop, state, 0, 1)
    msg = str(e.value)
    assert "\n" not in msg and "cloud_update" in msg and "hidden task data" in msg
