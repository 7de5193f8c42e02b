"""Inference track, vision: split computing (``infer/shapes-split``) and early
exit (``infer/shapes-exit``) on the procedural ``shapes`` images.

Data: ``lsbench.data.shapes`` (train / calib / test, fixed data seed); the run
seed only seeds the method. Reference models (``lsbench.models.vision``) are
trained by the task's recipe and cached under ``<data_dir>/models``:
split -> edge CNN + cloud CNN with named split points; exit -> a multi-exit
net whose edge part ends at an early exit (``models['edge']`` = exit 1,
``models['cloud']`` = the final exit).

Sides: split -- the edge view holds the edge CNN's params (``params['edge']``),
the cloud view the cloud CNN's (``params['cloud']``); exit -- the multi-exit
network is the cloud's (``params['cloud']``) and the edge view holds no
params: a method that runs exit 1 on the device ships that part down in its
setup package (billed). The calibration split (``calib = {'x', 'y'}``) is the
cloud's. Both views know ``mode``, the network and device ``profiles``,
``raw_bytes`` and ``pred_bytes``.

Metrics (besides the harness's per-example bytes, FLOPs, messages, offload
rate and per-profile latency): ``accuracy`` (and by difficulty),
``acc_gap_to_cloud_pt`` (cloud-only accuracy minus this, in points),
``within_1pt``, ``latency_lte_s``. Primary metrics:
- split: ``latency_lte_1pt_s`` = the mean ``lte`` latency if accuracy is
  within 1 point of cloud-only, else the cloud-only (raw-offload) latency the
  configuration would have to fall back to (finite, lower is better);
- exit: ``gap_recovered`` = (acc - acc_exit1) / (acc_final - acc_exit1), the
  share of the edge-to-cloud accuracy gap recovered; read it against
  ``offload_rate`` across the method's sweep.
"""
from __future__ import annotations

import json
import os

import numpy as np

from lsbench import api
from lsbench.task import InferInstance, TaskError, TaskSpec

RAW_BYTES = 32 * 32 * 3
PRED_BYTES = 4  # int32 class index down


def _models(mode: str, cfg):
    from lsbench.models import vision
    if mode == "split":
        return {"edge": vision.edge_cnn(), "cloud": vision.cloud_cnn()}
    me = vision.multi_exit()
    return {"edge": vision.exit_model(me), "cloud": me}


def _ref_accuracy(data_dir, models, params, test, keys):
    """Test accuracy of each role's own model, memoised next to the model cache."""
    from lsbench.models import vision
    path = os.path.join(os.path.abspath(os.path.expanduser(data_dir)), "models", "shapes-refs",
                        "-".join(keys) + ".json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    acc = {r: float((vision.predict(m.apply, params[r], test["x"]) == test["y"]).mean())
           for r, m in models.items()}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(acc, f)
    os.replace(tmp, path)
    return acc


def build(spec: TaskSpec, data_dir: str, seed: int) -> InferInstance:
    from lsbench.data import shapes
    from lsbench.metering import profiles
    from lsbench.models import vision
    from lsbench.models.cache import cached_params
    cfg = spec.config
    mode = cfg["mode"]
    if mode not in ("split", "exit"):
        raise TaskError(f"task {spec.name}: config mode must be 'split' or 'exit', not '{mode}'")
    data, data_hash = shapes.load(data_dir, cfg["sizes"], cfg["data_seed"])
    train, calib, test = data["train"], data["calib"], data["test"]
    models = _models(mode, cfg)
    params, keys, done = {}, {}, {}
    for role, md in models.items():
        if "exit_of" in md.info:  # the exit task's two roles share one network
            md = models["cloud"]
        base = md.name
        if base not in done:
            rc = dict(cfg["train"])
            arch = {k: v for k, v in md.info.items() if isinstance(v, (int, str, tuple))}
            arch["stages"] = md.stages
            recipe = {"family": "shapes", "model": base, "data": data_hash, **rc, "arch": arch}
            done[base] = cached_params(data_dir, f"shapes-{base}", recipe,
                                       lambda md=md, rc=rc: vision.train_classifier(
                                           md, train["x"], train["y"], **rc))
        params[role], keys[role] = done[base]
    ref = _ref_accuracy(data_dir, models, params, test, [keys["edge"], keys["cloud"], data_hash])
    budgets = dict(cfg["edge_budgets"])
    common = dict(
        task=spec.name, version=spec.version, track="infer", num_classes=shapes.NUM_CLASSES,
        input_shape=vision.IMAGE, models=models, budgets=budgets, input_keys=("x",),
        batch_size=cfg["batch_size"], max_turns=1,
        profiles=api.NetworkProfiles(profiles.networks(), profiles.devices(), spec.headline_profile),
        mode=mode, raw_bytes=RAW_BYTES, pred_bytes=PRED_BYTES)
    calib_view = {"x": calib["x"], "y": calib["y"]}
    edge_view = api.InferView(side="edge", params={"edge": params["edge"]} if mode == "split" else {},
                              **common)
    cloud_view = api.InferView(side="cloud", params={"cloud": params["cloud"]}, calib=calib_view,
                               **common)
    # The fallback of the split task's primary metric: cloud-only (raw pixels up, the
    # class down, the whole cloud model) under the harness's latency model.
    cloud_flops = sum(t["flops"] for t in vision.stage_table(models["cloud"]).values())
    raw_log = {k: np.zeros((1, 1), np.int64) for k in ("edge_flops", "edge_flops_all", "cloud_flops_all")}
    raw_log.update(cloud_flops=np.full((1, 1), cloud_flops), bytes_up=np.full((1, 1), RAW_BYTES),
                   bytes_down=np.full((1, 1), PRED_BYTES), messages=np.full((1, 1), 2),
                   sent=np.ones((1, 1), bool), active=np.ones((1, 1), bool))
    head = spec.headline_profile
    cloud_only_lat = profiles.derived(raw_log)[head]["latency_mean_s"]

    def metrics_fn(preds, test, log):
        ok = np.asarray(preds["pred"]) == np.asarray(test["y"])
        acc = float(ok.mean())
        lat = profiles.derived(log)[head]["latency_mean_s"]
        gap = 100.0 * (ref["cloud"] - acc)
        out = {"accuracy": acc, "acc_gap_to_cloud_pt": gap, "within_1pt": float(gap <= 1.0),
               "latency_lte_s": lat, "ref_cloud_accuracy": ref["cloud"], "ref_edge_accuracy": ref["edge"]}
        for d in range(3):
            sel = np.asarray(test["difficulty"]) == d
            out[f"accuracy_d{d}"] = float(ok[sel].mean()) if sel.any() else None
        if mode == "split":
            out["latency_lte_1pt_s"] = lat if gap <= 1.0 else cloud_only_lat
        else:
            span = ref["cloud"] - ref["edge"]
            out["gap_recovered"] = float((acc - ref["edge"]) / span) if abs(span) > 1e-9 else 0.0
        return out

    hashes = {"data": data_hash, **{f"model_{r}": k for r, k in keys.items()}}
    return InferInstance(edge_view=edge_view, cloud_view=cloud_view, calib=calib_view,
                         test={"x": test["x"], "y": test["y"], "difficulty": test["difficulty"]},
                         batch_size=cfg["batch_size"], max_turns=1, metrics_fn=metrics_fn,
                         hashes=hashes, edge_budgets=budgets)


def _spec(name, mode, tier, sizes, train, batch_size):
    split = mode == "split"
    return TaskSpec(
        name=name, version="2", track="infer", tier=tier,
        description=("split a cloud CNN between device and cloud on shapes images; lte latency at "
                     "cloud-only accuracy (within 1 pt)") if split else
                    ("early exit on the device with a cloud fallback on shapes images; share of the "
                     "edge-to-cloud accuracy gap recovered"),
        primary_metric="latency_lte_1pt_s" if split else "gap_recovered",
        higher_is_better=not split, headline_profile="lte",
        config={"family": "shapes", "mode": mode, "sizes": sizes, "data_seed": 0, "train": train,
                "batch_size": batch_size, "edge_budgets": dict(EDGE_BUDGETS)},
        builder=build)


# Edge budgets (checked by the harness): what one device may hold (the cloud CNN up to
# pool3 is 57 KB) and spend per image (that prefix: 4.0 MFLOPs).
EDGE_BUDGETS = {"param_bytes": 256 * 1024, "flops_per_example": 10_000_000}
_FULL = {"epochs": 6, "batch": 64, "lr": 3e-3, "seed": 0}
_SMALL = {"epochs": 3, "batch": 64, "lr": 3e-3, "seed": 0}
SPLIT = _spec("infer/shapes-split", "split", "default", (8000, 1000, 2000), _FULL, 1000)
EXIT = _spec("infer/shapes-exit", "exit", "default", (8000, 1000, 2000), _FULL, 1000)
SPLIT_SMALL = _spec("infer/shapes-split-small", "split", "small", (1200, 300, 1000), _SMALL, 500)
EXIT_SMALL = _spec("infer/shapes-exit-small", "exit", "small", (1200, 300, 1000), _SMALL, 500)
