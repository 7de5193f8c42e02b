"""infer/arith-route: per query, answer on the edge or call the cloud.

Queries are nested max/min expressions of depth 1-5 (``lsbench.data.arith``);
the answer is one digit token. Edge and cloud are causal Transformers trained
here on the train split (answer-token loss) and cached with Orbax
(``lsbench.models.cache``); the run seed drives only the methods' randomness.
Query tokens go up (int32 each), the answer comes down.

The task evaluates edge-only and cloud-only correctness per example once
(``test['edge_correct']``, ``test['cloud_correct']``), so every routing run
reports its own ``gap_recovered``; ``tasks._infer_metrics.routing_curve``
turns a sweep's (call_rate, accuracy) points into APGR, CPT(50/80%) and AIQ.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from lsbench import api
from lsbench.data import arith
from lsbench.models import transformer as T
from lsbench.models.cache import cached_params
from lsbench.task import InferInstance, TaskError, TaskSpec
from tasks._infer_metrics import finite, routing_point

ANSWERS = arith.DIGITS  # answer logits are the first 10 (digit) tokens


def answer_logits(cfg, params, x):
    """Digit logits at the last query position (the '=' token): float[B, 10]."""
    return T.apply(cfg, params, x)[:, -1, :ANSWERS]


def _train(cfg, role, data, c):
    seq = np.concatenate([data["x"], data["y"][:, None]], 1)
    w = np.zeros((len(seq), seq.shape[1] - 1), np.float32)
    w[:, -1] = 1.0  # answer-token loss only
    m = c[role]
    return lambda: T.train_lm(cfg, seq, w, steps=m["steps"], batch=c["train_batch"], lr=m["lr"],
                              seed=c["model_seed"] + (role == "cloud"))


def _predict(cfg, params, x, chunk=1000):
    f = jax.jit(lambda p, xb: jnp.argmax(answer_logits(cfg, p, xb), -1))
    return np.concatenate([np.asarray(f(params, x[i:i + chunk])) for i in range(0, len(x), chunk)])


def build(spec, data_dir, seed, log=print):
    c = spec.config
    for k in ("n_train", "n_calib", "n_test", "max_depth", "edge", "cloud"):
        if k not in c:
            raise TaskError(f"task {spec.name}: config lacks '{k}'; fix the TaskSpec")
    d = arith.splits(c["data_seed"], c["n_train"], c["n_calib"], c["n_test"], c["max_depth"], c["ops"])
    L = arith.query_len(c["max_depth"]) + 1
    dhash = arith.data_hash(*(d[s][k] for s in ("train", "calib", "test") for k in ("x", "y")))
    cfgs, params, hashes, train_s = {}, {}, {"data": dhash}, {}
    for role in ("edge", "cloud"):
        m = c[role]
        cfg = T.LMConfig(vocab=arith.VOCAB, d=m["d"], layers=m["layers"], heads=m["heads"], max_len=L)
        recipe = {"task": "arith", "role": role, "model": cfg.as_dict(), "train": m, "data": dhash,
                  "batch": c["train_batch"], "seed": c["model_seed"]}
        t0 = time.time()
        params[role], hashes[f"model_{role}"] = cached_params(
            data_dir, f"arith-{role}", recipe, _train(cfg, role, d["train"], c), log=log)
        train_s[role] = time.time() - t0
        cfgs[role] = cfg
    test = dict(d["test"])
    for role in ("edge", "cloud"):
        test[f"{role}_correct"] = _predict(cfgs[role], params[role], test["x"]) == test["y"]
    ctx = api.TaskContext(
        task=spec.name, version=spec.version, track="infer", num_classes=ANSWERS,
        input_shape=(L - 1,), models={r: T.lm_def(cfgs[r], f"arith-{r}") for r in cfgs},
        params=params, budgets={"max_turns": 2},
        extras={"input_keys": ("x",), "answer_tokens": ANSWERS, "pad": arith.PAD,
                "vocab": arith.VOCAB, "load_s": train_s})

    def metrics_fn(preds, test, log):
        out = routing_point(preds["pred"], test["y"], np.asarray(log["sent"]).any(0),
                            test["edge_correct"], test["cloud_correct"])
        correct = np.asarray(preds["pred"]) == test["y"]
        for k in range(1, c["max_depth"] + 1):
            sel = test["depth"] == k
            out[f"accuracy_depth{k}"] = float(correct[sel].mean()) if sel.any() else float("nan")
        return finite(out)

    return InferInstance(ctx=ctx, calib={"x": d["calib"]["x"], "y": d["calib"]["y"]}, test=test,
                         batch_size=c["batch_size"], max_turns=2, metrics_fn=metrics_fn,
                         hashes=hashes)


_BASE = {"family": "arith", "ops": "minmax", "data_seed": 7, "model_seed": 11, "train_batch": 128,
         "batch_size": 500}

TASK = TaskSpec(
    name="infer/arith-route", version="1", track="infer", tier="default",
    description="Route nested max/min queries (depth 1-5) between a 1-layer edge and a 3-layer "
                "cloud Transformer; accuracy vs cloud-call rate (APGR, CPT, AIQ).",
    primary_metric="accuracy", headline_profile="lte",
    config={**_BASE, "n_train": 20000, "n_calib": 2000, "n_test": 2000, "max_depth": 5,
            "edge": {"d": 32, "layers": 1, "heads": 2, "steps": 600, "lr": 3e-3},
            "cloud": {"d": 64, "layers": 3, "heads": 4, "steps": 600, "lr": 3e-3}},
    builder=build)

SMALL = TaskSpec(
    name="infer/arith-route-small", version="1", track="infer", tier="small",
    description="CI-sized arith-route: smaller models and splits.",
    primary_metric="accuracy", headline_profile="lte",
    config={**_BASE, "n_train": 8000, "n_calib": 1000, "n_test": 2000, "max_depth": 5,
            "train_batch": 64,
            "edge": {"d": 16, "layers": 1, "heads": 2, "steps": 250, "lr": 3e-3},
            "cloud": {"d": 48, "layers": 2, "heads": 4, "steps": 400, "lr": 3e-3}},
    builder=build)
