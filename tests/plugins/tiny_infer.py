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
    ctx = api.TaskContext(task=spec.name, version=spec.version, track="infer", num_classes=k,
                          input_shape=(d,), models={"edge": lin, "cloud": lin},
                          params={"edge": w_edge, "cloud": w}, extras={"input_keys": ("x",)})

    def metrics_fn(preds, test, log):
        return {"accuracy": float((preds["pred"] == test["y"]).mean())}
    return InferInstance(ctx=ctx, calib={"x": x[n:], "y": y[n:]}, test={"x": x[:n], "y": y[:n]},
                         batch_size=spec.config["batch"], max_turns=2, metrics_fn=metrics_fn,
                         hashes={"data": "tiny-infer-v1"})


TASK = TaskSpec(name="test/tiny-infer", version="1", track="infer", description="tiny cascade task",
                primary_metric="accuracy", config={"n": 100, "batch": 32}, builder=build)


class Cascade(api.InferMethod):
    manifest = api.Manifest(name="tiny-cascade", tracks=("infer",))
    default_hparams = {"tau": 0.8}
    sweep = ({"tau": 0.0}, {"tau": 0.8}, {"tau": 1.01})

    def prepare(self, calib, rng):
        return self.ctx.params["edge"], self.ctx.params["cloud"]

    def edge_start(self, w, batch):
        logits = batch["x"] @ w
        return {"x": batch["x"], "pred": jnp.argmax(logits, -1),
                "conf": jax.nn.softmax(logits).max(-1)}

    def edge_turn(self, w, carry, inbox, rng):
        pred = jnp.where(inbox.got, inbox.msg["pred"] if inbox.msg else carry["pred"], carry["pred"])
        carry = dict(carry, pred=pred)
        send = (carry["conf"] < self.hp["tau"]) & ~inbox.got
        return carry, {"x": carry["x"]}, send, ~send

    def downlink_like(self, b):
        return {"pred": jax.ShapeDtypeStruct((b,), jnp.int32)}

    def cloud_turn(self, w, carry, up, rng):
        return carry, {"pred": jnp.argmax(up["x"] @ w, -1).astype(jnp.int32)}

    def finalize(self, w, carry):
        return {"pred": carry["pred"]}
