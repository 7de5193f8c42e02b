"""A tiny inference task and a threshold cascade, for harness tests.

Edge: a weak linear classifier; cloud: the true linear model. The cascade
sends rows whose edge confidence is below ``tau``; the cloud answers them.
"""
import jax
import jax.numpy as jnp
import numpy as np

from lsbench import api
from lsbench.task import InferInstance, TaskSpec


def build(spec, data_dir, seed):
    rng = np.random.default_rng(99)
    d, k, n = 6, 3, spec.config["n"]
    w = rng.normal(size=(d, k)).astype(np.float32)
    x = rng.normal(size=(n + 64, d)).astype(np.float32)
    y = np.argmax(x @ w, -1).astype(np.int32)
    w_edge = (w + 0.8 * rng.normal(size=w.shape)).astype(np.float32)
    lin = api.ModelDef("linear", init=None, apply=lambda p, x: x @ p)
    common = dict(task=spec.name, version=spec.version, track="infer", num_classes=k, input_shape=(d,),
                  models={"edge": lin, "cloud": lin}, input_keys=("x",),
                  batch_size=spec.config["batch"], max_turns=1)
    calib = {"x": x[n:], "y": y[n:]}
    edge_view = api.InferView(side="edge", params={"edge": w_edge}, **common)
    cloud_view = api.InferView(side="cloud", params={"cloud": w}, calib=calib, **common)

    def metrics_fn(preds, test, log):
        return {"accuracy": float((preds["pred"] == test["y"]).mean())}
    return InferInstance(edge_view=edge_view, cloud_view=cloud_view, calib=calib,
                         test={"x": x[:n], "y": y[:n]}, batch_size=spec.config["batch"], max_turns=1,
                         metrics_fn=metrics_fn, hashes={"data": "tiny-infer-v1"})


TASK = TaskSpec(name="test/tiny-infer", version="2", track="infer", description="tiny cascade task",
                primary_metric="accuracy", config={"n": 100, "batch": 32}, builder=build)


class Cascade(api.InferMethod):
    """One turn: the edge answers; rows below confidence tau send their features
    and take the cloud's answer."""
    manifest = api.Manifest(name="tiny-cascade", tracks=("infer",))
    default_hparams = {"tau": 0.8}
    sweep = ({"tau": 0.0}, {"tau": 0.8}, {"tau": 1.01})

    def edge_start(self, es, batch):
        return {"x": batch["x"]}

    def edge_query(self, es, carry, rng):
        logits = carry["x"] @ es["edge"]
        send = jax.nn.softmax(logits).max(-1) < self.hp["tau"]
        carry = dict(carry, pred=jnp.argmax(logits, -1).astype(jnp.int32))
        return api.Query(carry, {"x": carry["x"]}, send, jnp.ones_like(send))

    def cloud_reply(self, cs, cc, up, rng):
        return cc, {"pred": jnp.argmax(up["x"] @ cs["cloud"], -1).astype(jnp.int32)}

    def edge_receive(self, es, carry, inbox, rng):
        return dict(carry, pred=jnp.where(inbox.got, inbox.msg["pred"], carry["pred"]))

    def finalize(self, es, carry):
        return {"pred": carry["pred"]}

