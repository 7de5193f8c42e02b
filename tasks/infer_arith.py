"""infer/arith-route: per query, answer on the edge or call the cloud.

Queries are nested max/min expressions of depth 1-5 (``lsbench.data.arith``);
the answer is one digit token. Edge and cloud are causal Transformers trained
here on the train split (answer-token loss) and cached with Orbax
(``lsbench.models.cache``); the run seed drives only the methods' randomness.
Query tokens go up (int32 each), the answer comes down.

Sides: the edge view holds the edge model's params (``params['edge']``), the
cloud view the cloud model's (``params['cloud']``) and the calibration split
(``calib = {'x', 'y'}``). Both know the architectures and ``answer_tokens``,
``vocab``, ``pad``.

Splits (``lsbench.data.arith.splits``): train (the models'), calibration (the
cloud's), validation (the harness's: final.json ``validation``) and test,
disjoint by query content. The edge holds no labelled data: what it needs
from calibration comes down as a billed setup package.

The task evaluates edge-only and cloud-only correctness per example once, on
test and on validation (``edge_correct``, ``cloud_correct``), so every routing
run reports its own ``gap_recovered`` on each; ``tasks._infer_metrics.routing_curve``
turns a sweep's (call_rate, accuracy) points into APGR, CPT(50/80%) and AIQ.
The same bits are the ``oracle_keys``: only the oracle reference (never
ranked) receives them in its batches.
"""
from __future__ import annotations

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
    return lambda stats: T.train_lm(cfg, seq, w, steps=m["steps"], batch=c["train_batch"], lr=m["lr"],
                                    seed=c["model_seed"] + SEED_OFFSET[role], desc=f"arith-{role}",
                                    stats=stats)


SEED_OFFSET = {"edge": 0, "cloud": 1, "mid": 2}


def _predict(cfg, params, x, chunk=1000):
    f = jax.jit(lambda p, xb: jnp.argmax(answer_logits(cfg, p, xb), -1))
    return np.concatenate([np.asarray(f(params, x[i:i + chunk])) for i in range(0, len(x), chunk)])


def query_flops(cfg, params, L) -> int:
    """Matmul FLOPs of one query's answer (a forward pass over the query), by the FLOP meter."""
    from lsbench.metering.flops import count_jaxpr
    x = jnp.zeros((1, L), jnp.int32)
    return int(count_jaxpr(jax.make_jaxpr(lambda p, x: answer_logits(cfg, p, x))(params, x)).matmul)


def build(spec, data_dir, seed, log=print):
    c = spec.config
    for k in ("n_train", "n_calib", "n_val", "n_test", "max_depth", "edge", "cloud", "edge_budgets"):
        if k not in c:
            raise TaskError(f"task {spec.name}: config lacks '{k}'; fix the TaskSpec")
    roles = tuple(c.get("roles", ("edge", "cloud")))
    d = arith.splits(c["data_seed"], c["n_train"], c["n_calib"], c["n_test"], c["max_depth"], c["ops"],
                     n_val=c["n_val"])
    L = arith.query_len(c["max_depth"]) + 1
    dhash = arith.data_hash(*(d[s][k] for s in arith.SPLITS for k in ("x", "y")))
    cfgs, params, hashes, trained = {}, {}, {"data": dhash}, {}
    for role in roles:
        m = c[role]
        cfg = T.LMConfig(vocab=arith.VOCAB, d=m["d"], layers=m["layers"], heads=m["heads"], max_len=L)
        recipe = {"task": "arith", "role": role, "model": cfg.as_dict(), "train": m, "data": dhash,
                  "batch": c["train_batch"], "seed": c["model_seed"] + SEED_OFFSET[role]}
        params[role], hashes[f"model_{role}"] = cached_params(
            data_dir, f"arith-{role}", recipe, _train(cfg, role, d["train"], c), log=log, costs=trained)
        cfgs[role] = cfg
    # Per example, whether each model alone answers right: the references of every
    # routing metric, per split (test and validation alike).
    test, val = dict(d["test"]), dict(d["val"])
    for role in roles:
        for split in (test, val):
            split[f"{role}_correct"] = _predict(cfgs[role], params[role], split["x"]) == split["y"]
    from lsbench.metering import profiles
    budgets = dict(c["edge_budgets"])
    calib = {"x": d["calib"]["x"], "y": d["calib"]["y"]}
    common = dict(
        task=spec.name, version=spec.version, track="infer", num_classes=ANSWERS,
        input_shape=(L - 1,), models={r: T.lm_def(cfgs[r], f"arith-{r}") for r in cfgs},
        budgets=budgets, input_keys=("x",), batch_size=c["batch_size"], max_turns=c.get("max_turns", MAX_TURNS),
        profiles=api.NetworkProfiles(profiles.networks(), profiles.devices(), spec.headline_profile),
        answer_tokens=ANSWERS, vocab=arith.VOCAB, pad=arith.PAD)
    edge_view = api.InferView(side="edge", params={"edge": params["edge"]}, **common)
    # Every model but the device's runs off the device (the cloud side: see infer_arith3).
    cloud_view = api.InferView(side="cloud", params={r: params[r] for r in roles if r != "edge"},
                               calib=calib, **common)
    if len(roles) == 2:
        def point(preds, data, log):
            return routing_point(preds["pred"], data["y"], np.asarray(log["sent"]).any(0),
                                 data["edge_correct"], data["cloud_correct"])
    else:
        qflops = {r: query_flops(cfgs[r], params[r], L - 1) for r in roles}
        point = _routing3_point(qflops)

    def metrics_fn(preds, data, log):
        out = point(preds, data, log)
        correct = np.asarray(preds["pred"]) == data["y"]
        for k in range(1, c["max_depth"] + 1):
            sel = data["depth"] == k
            out[f"accuracy_depth{k}"] = float(correct[sel].mean()) if sel.any() else float("nan")
        return finite(out)

    return InferInstance(edge_view=edge_view, cloud_view=cloud_view, calib=calib, test=test, val=val,
                         batch_size=c["batch_size"], max_turns=common["max_turns"], metrics_fn=metrics_fn,
                         hashes=hashes, edge_budgets=budgets, reference_training=trained,
                         oracle_keys=tuple(f"{r}_correct" for r in roles))


def _routing3_point(qflops):
    from tasks._infer_metrics import routing3_point

    def point(preds, data, log):
        return routing3_point(preds["pred"], data["y"], log, qflops,
                              {r: data[f"{r}_correct"] for r in ("edge", "mid", "cloud")})
    return point


# Two turns: a router may send a query on the first and answer the rest on the
# edge on the second (only the rows it kept are active there).
MAX_TURNS = 2
# Edge budgets (checked by the harness): what one edge may hold (the full tier's edge
# model is 59 KB) and spend per query (its forward pass: 0.63 MFLOPs; a router adds ~40).
EDGE_PARAM_BYTES = 256 * 1024
EDGE_FLOPS = 2_000_000
_BASE = {"family": "arith", "ops": "minmax", "data_seed": 7, "model_seed": 11, "train_batch": 128,
         "batch_size": 500}

TASK = TaskSpec(
    name="infer/arith-route", version="3", track="infer", tier="default",
    description="Route nested max/min queries (depth 1-5) between a 1-layer edge and a 3-layer "
                "cloud Transformer; accuracy vs cloud-call rate (APGR, CPT, AIQ).",
    primary_metric="accuracy", headline_profile="lte",
    config={**_BASE, "n_train": 20000, "n_calib": 2000, "n_val": 2000, "n_test": 2000, "max_depth": 5,
            "edge": {"d": 32, "layers": 1, "heads": 2, "steps": 600, "lr": 3e-3},
            "cloud": {"d": 64, "layers": 3, "heads": 4, "steps": 600, "lr": 3e-3},
            "edge_budgets": {"param_bytes": EDGE_PARAM_BYTES, "flops_per_example": EDGE_FLOPS}},
    builder=build)

SMALL = TaskSpec(
    name="infer/arith-route-small", version="3", track="infer", tier="small",
    description="CI-sized arith-route: smaller models and splits.",
    primary_metric="accuracy", headline_profile="lte",
    config={**_BASE, "n_train": 8000, "n_calib": 1000, "n_val": 1000, "n_test": 2000, "max_depth": 5,
            "train_batch": 64,
            "edge": {"d": 16, "layers": 1, "heads": 2, "steps": 250, "lr": 3e-3},
            "cloud": {"d": 48, "layers": 2, "heads": 4, "steps": 400, "lr": 3e-3},
            "edge_budgets": {"param_bytes": EDGE_PARAM_BYTES, "flops_per_example": EDGE_FLOPS}},
    builder=build)
