"""Route 1 (training): an edge that rebuilds the task in-process and reads what
it may not see as constants: every client's data (to train on all of it), the
hidden global test labels (to answer the evaluation), or the cloud's public
split (without declaring ``edge_uses_public``, i.e. without paying for it)."""
import functools
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np

_spec = importlib.util.spec_from_file_location(
    "lsbench_adversarial_train_base", os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_base.py"))
base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(base)


@functools.lru_cache(maxsize=None)
def stolen(task: str, data_dir: str):
    """The task instance, rebuilt inside the method (what the harness built for itself)."""
    from lsbench.registry import load_task
    return load_task(task).build(data_dir, 0)


class _Thief(base.Honest):
    def inst(self):
        return stolen(self.view.task, self.hp["data_dir"])


class AllClientsData(_Thief):
    """Trains every edge on every client's data: centralized quality at FedAvg's bytes."""

    def client_step(self, p, batch, rng):
        inst = self.inst()
        x = jnp.asarray(inst.train_x).reshape((-1,) + inst.train_x.shape[2:])
        y = jnp.asarray(inst.train_y).reshape(-1)
        m = (np.arange(inst.train_x.shape[1])[None] < inst.train_n[:, None]).reshape(-1)
        return super().client_step(p, {"x": x, "y": y, "mask": jnp.asarray(m)}, rng)


class OneOtherClient(_Thief):
    """Adds one other client's examples (a slice of the hidden training data)."""

    def client_step(self, p, batch, rng):
        inst = self.inst()
        x = jnp.concatenate([batch["x"], jnp.asarray(inst.train_x[3])])
        y = jnp.concatenate([batch["y"], jnp.asarray(inst.train_y[3])])
        m = jnp.concatenate([batch["mask"], jnp.arange(inst.train_x.shape[1]) < int(inst.train_n[3])])
        return super().client_step(p, {"x": x, "y": y, "mask": m}, rng)


class TestLabels(_Thief):
    """Each edge answers the global test set from its hidden labels (there is no
    global model, so edge accuracy is the mean of the edges' on the global test)."""

    def predict_edge(self, p, x):
        inst = self.inst()
        gy = jnp.asarray(inst.global_test_y)
        if x.shape[0] == gy.shape[0]:
            return jax.nn.one_hot(gy, self.view.num_classes) * 100.0
        return super().predict_edge(p, x)

    def predict_global_edge(self, cloud, x):
        return None


class CloudTestLabels(_Thief):
    """The cloud's global model answers from the hidden labels."""

    def predict_global_edge(self, cloud, x):
        return jax.nn.one_hot(jnp.asarray(self.inst().global_test_y), self.view.num_classes) * 100.0


class PublicForFree(_Thief):
    """Distils on the cloud's public split on the edge without declaring edge_uses_public."""

    def client_final(self, p, edge_state, rng):
        pub = jnp.asarray(self.inst().cloud_view.public, jnp.float32)
        soft = jax.nn.softmax(self.apply(p, pub))
        return p, {"p": p, "soft": soft.mean(0)}

    def cloud_update(self, cloud, rnd, rng):
        return super().cloud_update(cloud, rnd._replace(messages=rnd.messages["p"]), rng)


class ValidationLabels(_Thief):
    """Answers the validation split from its hidden labels: the suite and the board select
    operating points on validation, so a method that games it would be selected."""

    def predict_edge(self, p, x):
        vy = jnp.asarray(self.inst().global_val_y)
        if x.shape[0] == vy.shape[0]:
            return jax.nn.one_hot(vy, self.view.num_classes) * 100.0
        return super().predict_edge(p, x)

    def predict_global_edge(self, cloud, x):
        return None
