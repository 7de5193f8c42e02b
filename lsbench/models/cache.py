"""Deterministic reference-model training, cached as Orbax checkpoints.

``cached_params(data_dir, name, recipe, train_fn)`` returns ``(params, hash)``.
The hash covers the recipe (a JSON-able dict: architecture, data version,
seed, steps, ...) and the lsbench model-cache version; the checkpoint lives at
``<data_dir>/models/<name>/<hash>`` and is reused on later runs. The manifest
records the hash, so a reviewer can tell which cached models produced a result.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

import jax
import numpy as np

CACHE_VERSION = "1"


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


def cached_params(data_dir: str, name: str, recipe: dict, train_fn, log=print):
    """Loads the cached params for ``recipe`` or trains them with ``train_fn()``.

    ``train_fn() -> params`` must be deterministic. Writes are atomic: a
    crashed training leaves no half checkpoint behind.
    """
    import orbax.checkpoint as ocp

    key = recipe_hash(recipe)
    root = os.path.abspath(os.path.join(os.path.expanduser(data_dir), "models", name))
    path = os.path.join(root, key)
    ckptr = ocp.StandardCheckpointer()
    if os.path.exists(os.path.join(path, "params")):
        params = ckptr.restore(os.path.join(path, "params"))
        return jax.tree_util.tree_map(np.asarray, params), key
    t0 = time.time()
    params = train_fn()
    params = jax.tree_util.tree_map(np.asarray, params)
    tmp = path + f".tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp, exist_ok=True)
    ckptr.save(os.path.join(tmp, "params"), params)
    ckptr.wait_until_finished()
    with open(os.path.join(tmp, "recipe.json"), "w") as f:
        json.dump({"recipe": recipe, "train_s": round(time.time() - t0, 2),
                   "params_hash": params_hash(params)}, f, indent=1, default=str)
    try:
        os.replace(tmp, path)
    except OSError:  # another process won the race; use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"trained {name} in {time.time() - t0:.1f}s; cached at {path}")
    params = ckptr.restore(os.path.join(path, "params"))
    return jax.tree_util.tree_map(np.asarray, params), key


def default_data_dir() -> str:
    return os.environ.get("LSBENCH_DATA_DIR", os.path.expanduser("~/.cache/lsbench"))
