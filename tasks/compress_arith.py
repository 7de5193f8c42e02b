"""Compression track, language side (inference loop): derive an edge model from
the arithmetic cloud Transformer, ship it down once, and let the edge answer
every test query alone (``compress/arith``, ``compress/arith-small``).

The data and the cloud model are ``infer/arith-route``'s (same splits, same
recipe, so the same cached model: ``tasks.infer_arith``). The cloud view
holds the fp32 cloud model (``params['cloud']``) and the models' training
split as ``calib = {'x', 'y'}`` (its data for distillation, calibration or
fine-tuning); the edge view holds nothing. Architectures are public:
``models['cloud']`` and ``models['edge']`` (the student: the route task's edge
architecture). A model's ``apply(params, tokens)`` gives the answer logits
float[B, 10] (the digit logits at the query's last position, '='), so the
shapes track's distillation and references run here unchanged;
``info['config']`` is the Transformer config (``transformer.config_of``).

A method derives the edge model in ``cloud_setup`` (FLOPs billed as
``setup_cloud_flops``) and returns it as the setup package, billed at its
exact bytes as ``setup_bytes_down``. The installed package is the edge's
state; its bytes are checked against ``param_bytes``, its matmul FLOPs per
query against ``flops_per_example``. Over budget: shown, not ranked.

Metrics: ``accuracy`` (primary): exact match of the answer. Answers are one
digit token, so exact match and per-token accuracy are the same number (one
key). ``ref_cloud_accuracy`` (the fp32 cloud model), ``acc_gap_to_cloud_pt``,
``accuracy_depth{k}``. Validation split: ``val`` (disjoint by content).
"""
from __future__ import annotations

import numpy as np

from lsbench import api
from lsbench.data import arith
from lsbench.models import transformer as T
from lsbench.models.cache import cached_params
from lsbench.task import InferInstance, TaskError, TaskSpec
from tasks import infer_arith


def model_def(cfg: T.LMConfig, name: str) -> api.ModelDef:
    """The Transformer as an answer classifier: ``apply`` -> digit logits [B, 10]."""
    return api.ModelDef(name=name, init=lambda rng: T.init_params(cfg, rng),
                        apply=lambda p, x: infer_arith.answer_logits(cfg, p, x),
                        info={"config": cfg.as_dict()})


def cloud_model(c: dict, d: dict, data_dir: str, log=print, costs=None):
    """(config, params, hash) of the cloud model: the route task's recipe and cache entry."""
    L = arith.query_len(c["max_depth"]) + 1
    m = c["cloud"]
    cfg = T.LMConfig(vocab=arith.VOCAB, d=m["d"], layers=m["layers"], heads=m["heads"], max_len=L)
    dhash = arith.data_hash(*(d[s][k] for s in arith.SPLITS for k in ("x", "y")))
    recipe = {"task": "arith", "role": "cloud", "model": cfg.as_dict(), "train": m, "data": dhash,
              "batch": c["train_batch"], "seed": c["model_seed"] + infer_arith.SEED_OFFSET["cloud"]}
    params, key = cached_params(data_dir, "arith-cloud", recipe,
                                infer_arith._train(cfg, "cloud", d["train"], c), log=log, costs=costs)
    return cfg, params, key, dhash


def build(spec: TaskSpec, data_dir: str, seed: int, log=print) -> InferInstance:
    from lsbench.metering import profiles
    c = spec.config
    for k in ("n_train", "n_val", "n_test", "max_depth", "edge", "cloud", "edge_budgets"):
        if k not in c:
            raise TaskError(f"task {spec.name}: config lacks '{k}'; fix the TaskSpec")
    d = arith.splits(c["data_seed"], c["n_train"], c["n_calib"], c["n_test"], c["max_depth"], c["ops"],
                     n_val=c["n_val"])
    trained: dict = {}
    cfg, params, key, dhash = cloud_model(c, d, data_dir, log, trained)
    e = c["edge"]
    ecfg = T.LMConfig(vocab=arith.VOCAB, d=e["d"], layers=e["layers"], heads=e["heads"], max_len=cfg.max_len)
    models = {"cloud": model_def(cfg, "arith-cloud"), "edge": model_def(ecfg, "arith-student")}
    test, val = (dict(d[s]) for s in ("test", "val"))
    ref_acc = float((infer_arith._predict(cfg, params, test["x"]) == test["y"]).mean())
    budgets = dict(c["edge_budgets"])
    train = {"x": d["train"]["x"], "y": d["train"]["y"]}
    common = dict(
        task=spec.name, version=spec.version, track="infer", num_classes=infer_arith.ANSWERS,
        input_shape=(cfg.max_len - 1,), models=models, budgets=budgets, input_keys=("x",),
        batch_size=c["batch_size"], max_turns=1,
        profiles=api.NetworkProfiles(profiles.networks(), profiles.devices(), spec.headline_profile),
        mode="compress", answer_tokens=infer_arith.ANSWERS, vocab=arith.VOCAB, pad=arith.PAD)
    edge_view = api.InferView(side="edge", params={}, **common)
    cloud_view = api.InferView(side="cloud", params={"cloud": params}, calib=train, **common)

    def metrics_fn(preds, data, log):
        ok = np.asarray(preds["pred"]) == np.asarray(data["y"])
        acc = float(ok.mean())
        out = {"accuracy": acc, "ref_cloud_accuracy": ref_acc, "acc_gap_to_cloud_pt": 100.0 * (ref_acc - acc)}
        for k in range(1, c["max_depth"] + 1):
            sel = np.asarray(data["depth"]) == k
            out[f"accuracy_depth{k}"] = float(ok[sel].mean()) if sel.any() else None
        return out

    keep = ("x", "y", "depth")
    return InferInstance(edge_view=edge_view, cloud_view=cloud_view, calib=train,
                         test={k: test[k] for k in keep}, val={k: val[k] for k in keep},
                         batch_size=c["batch_size"], max_turns=1, metrics_fn=metrics_fn,
                         hashes={"data": dhash, "model_cloud": key}, edge_budgets=budgets,
                         reference_training=trained)


def _spec(name, tier, route: TaskSpec, budgets, **over):
    cfg = {**route.config, "family": "compress-lm", "edge_budgets": budgets, **over}
    return TaskSpec(
        name=name, version="1", track="infer", tier=tier,
        description="derive an edge model from the arithmetic cloud Transformer (distil, "
                    "quantise), ship it once; edge-only exact match within "
                    f"{budgets['param_bytes'] // 1024} KiB",
        primary_metric="accuracy", higher_is_better=True, headline_profile="lte",
        config=cfg, builder=build)


# Edge budgets. Default: the fp32 cloud model is 615,936 B and 6.9 MFLOPs per query; the
# fp32 student 58,880 B. Small: cloud 238,272 B and 2.7 MFLOPs; student 17,152 B.
# Bytes bind (the fp32 cloud model is over, its int8 form fits); FLOPs admit the cloud
# architecture (~1.2x its forward pass).
TASK = _spec("compress/arith", "default", infer_arith.TASK,
             {"param_bytes": 256 * 1024, "flops_per_example": 8_000_000})
SMALL = _spec("compress/arith-small", "small", infer_arith.SMALL,
              {"param_bytes": 96 * 1024, "flops_per_example": 3_200_000})

# A test-sized tier (not an entry point): a cloud model trained in seconds, for the default
# tests' end-to-end checks of billing and budgets (tests/test_compress_arith.py).
TINY = _spec("compress/arith-tiny", "small", infer_arith.SMALL,
             {"param_bytes": 48 * 1024, "flops_per_example": 3_200_000},
             n_train=500, n_calib=10, n_val=100, n_test=100, max_depth=3, batch_size=100,
             cloud={"d": 32, "layers": 2, "heads": 2, "steps": 40, "lr": 3e-3},
             edge={"d": 16, "layers": 1, "heads": 2, "steps": 0, "lr": 3e-3})
