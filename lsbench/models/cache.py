"""Deterministic reference-model training, cached as Orbax checkpoints.

``cached_params(data_dir, name, recipe, train_fn)`` returns ``(params, hash)``.
The hash covers the recipe (a JSON-able dict: architecture, data version,
seed, steps, ...) and the lsbench model-cache version; the checkpoint lives at
``<data_dir>/models/<name>/<hash>`` and is reused on later runs. Every load is
verified against the params hash recorded when the model was trained: a
corrupted or altered checkpoint stops the run with one line naming the file and
the command that rebuilds it (``--rebuild_cache``, or ``LSBENCH_REBUILD_CACHE=1``).
The returned hash is ``<recipe hash>-<params hash>`` of the content actually
used, and the manifest records it. What training cost (wall seconds, the cores
it had, steps and FLOPs where the trainer reports them) is recorded next to the
checkpoint (with the process's CPU seconds and the load average, since
the cores may be shared) and handed to ``costs`` on every load: tasks put it in their
instance's ``reference_training``, which the manifest records.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import time

import jax
import numpy as np

from lsbench.errors import TaskError

CACHE_VERSION = "1"
REBUILD_ENV = "LSBENCH_REBUILD_CACHE"


def rebuild_requested() -> bool:
    return os.environ.get(REBUILD_ENV, "") not in ("", "0")


def _corrupt(what: str, path: str, why: str) -> TaskError:
    return TaskError(f"cached {what} at {path} is corrupt ({why}); rebuild it: rerun with "
                     f"--rebuild_cache (or delete {path})")


def _restore_verified(ckptr, path: str, name: str):
    """Restores a cached model and checks it against its recorded params hash."""
    try:
        with open(os.path.join(path, "recipe.json")) as f:
            want = json.load(f)["params_hash"]
        params = ckptr.restore(os.path.join(path, "params"))
    except Exception as e:  # noqa: BLE001 - any read failure is a corrupt cache
        raise _corrupt(f"model {name}", path, f"{type(e).__name__}: {str(e).splitlines()[0][:120]}") from None
    params = jax.tree_util.tree_map(np.asarray, params)
    got = params_hash(params)
    if got != want:
        raise _corrupt(f"model {name}", path, f"params hash {got}, recorded {want}")
    return params, got


def recipe_hash(recipe: dict) -> str:
    blob = json.dumps({"v": CACHE_VERSION, **recipe}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def params_hash(params) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(params):
        a = np.asarray(leaf)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _training_cost(path: str) -> dict:
    try:
        with open(os.path.join(path, "recipe.json")) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return {}
    return {"wall_s": rec.get("train_s"), **rec.get("training", {})}


def cached_params(data_dir: str, name: str, recipe: dict, train_fn, log=print, costs=None):
    """Loads the cached params for ``recipe`` or trains them with ``train_fn(stats)``.

    ``train_fn`` must be deterministic; if it has a parameter ``stats`` it gets a
    dict to fill with ``steps`` and ``flops``. Writes are atomic: a crashed training leaves
    no half checkpoint behind. ``costs`` (a dict) gets ``costs[name]``: the
    training's ``wall_s``, ``cpu_s``, ``cores``, ``load_avg``, ``steps`` and
    ``flops`` as recorded.
    """
    import orbax.checkpoint as ocp

    key = recipe_hash(recipe)
    root = os.path.abspath(os.path.join(os.path.expanduser(data_dir), "models", name))
    path = os.path.join(root, key)
    ckptr = ocp.StandardCheckpointer()
    if os.path.exists(path) and rebuild_requested():
        stale = path + f".stale{os.getpid()}"
        os.replace(path, stale)
        shutil.rmtree(stale, ignore_errors=True)
        log(f"rebuilding cached model {name} ({REBUILD_ENV} set)")
    if os.path.exists(os.path.join(path, "params")):
        params, phash = _restore_verified(ckptr, path, name)
        if costs is not None:
            costs[name] = _training_cost(path)
        return params, f"{key}-{phash}"
    t0, c0 = time.time(), time.process_time()
    stats: dict = {}
    try:
        takes_stats = "stats" in inspect.signature(train_fn).parameters
    except (TypeError, ValueError):
        takes_stats = False
    params = train_fn(stats=stats) if takes_stats else train_fn()
    params = jax.tree_util.tree_map(np.asarray, params)
    tmp = path + f".tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp, exist_ok=True)
    ckptr.save(os.path.join(tmp, "params"), params)
    ckptr.wait_until_finished()
    with open(os.path.join(tmp, "recipe.json"), "w") as f:
        json.dump({"recipe": recipe, "train_s": round(time.time() - t0, 2),
                   "training": {"cpu_s": round(time.process_time() - c0, 2),
                                "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                else os.cpu_count(), "load_avg": round(os.getloadavg()[0], 2), **stats},
                   "params_hash": params_hash(params)}, f, indent=1, default=str)
    try:
        os.replace(tmp, path)
    except OSError:  # another process won the race; use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"trained {name} in {time.time() - t0:.1f}s; cached at {path}")
    params, phash = _restore_verified(ckptr, path, name)
    if costs is not None:
        costs[name] = _training_cost(path)
    return params, f"{key}-{phash}"


def default_data_dir() -> str:
    return os.environ.get("LSBENCH_DATA_DIR", os.path.expanduser("~/.cache/lsbench"))
