"""One entry point for every training dataset: ``load(name, data_dir, **cfg)``.

Built-in (generated offline, cached under ``<data_dir>/tfds``): ``digits``,
``mnist1d`` (cfg ``size`` = default | large), ``synthetic`` (cfg ``alpha``,
``beta``, ``devices``, ``seed``, ``max_samples``). Real catalog datasets read a
user's prepared TFDS copy: ``emnist`` (cfg ``config``, default ``balanced``),
``cifar10``. Nothing downloads.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from lsbench.data import tfds_util
from lsbench.task import TaskError

BUILTIN = ("digits", "mnist1d", "synthetic")
REAL = ("emnist", "cifar10")
REAL_CLASSES = {"cifar10": 10, "emnist/balanced": 47, "emnist/byclass": 62, "emnist/bymerge": 47,
                "emnist/digits": 10, "emnist/letters": 37, "emnist/mnist": 10}


@dataclasses.dataclass
class Dataset:
    name: str
    x: np.ndarray              # train pool
    y: np.ndarray
    test_x: np.ndarray         # global test set
    test_y: np.ndarray
    num_classes: int
    public_x: Optional[np.ndarray] = None
    device: Optional[np.ndarray] = None       # natural client id of each train example
    test_device: Optional[np.ndarray] = None  # ... and of each test example
    hash: str = ""

    @property
    def input_shape(self):
        return tuple(self.x.shape[1:])


_MEMO: dict = {}


def public_rows(name: str, **cfg) -> int:
    """Rows in dataset ``name``'s public split, known without loading it (0: none).
    Lets methods cap a public-set size per task (``effective_hparams``)."""
    if name == "digits":
        from lsbench.data.digits import SPLIT_SIZES
        return SPLIT_SIZES["public"]
    if name == "mnist1d":
        from lsbench.data.mnist1d_data import CONFIGS
        c = {c.name: c for c in CONFIGS}.get(cfg.get("size", "default"))
        return 0 if c is None else (c.public or 2000)
    return 0


def load(name: str, data_dir: str, **cfg) -> Dataset:
    """The dataset ``name`` (memoised per process; treat the arrays as read-only)."""
    key = (name, tfds_util.tfds_dir(data_dir), tuple(sorted(cfg.items())))
    if key not in _MEMO:
        _MEMO[key] = _load(name, data_dir, **cfg)
    return _MEMO[key]


def _load(name: str, data_dir: str, **cfg) -> Dataset:
    if name == "digits":
        from lsbench.data.digits import LsbenchDigits
        b = tfds_util.prepare(LsbenchDigits, data_dir)
        ds = _from_builder(name, b, 10, public=True)
    elif name == "mnist1d":
        from lsbench.data.mnist1d_data import Mnist1d
        size = cfg.get("size", "default")
        if size not in ("default", "large"):
            raise TaskError(f"mnist1d size '{size}' is unknown; use default or large")
        ds = _from_builder(name, tfds_util.prepare(Mnist1d, data_dir, config=size), 10, public=True)
    elif name == "synthetic":
        from lsbench.data.synthetic import CLASSES, LeafSynthetic, make_config
        c = make_config(float(cfg.get("alpha", 1.0)), float(cfg.get("beta", 1.0)),
                        int(cfg.get("devices", 100)), int(cfg.get("seed", 0)), int(cfg.get("max_samples", 1000)))
        b = tfds_util.prepare(LeafSynthetic, data_dir, config=c)
        s = tfds_util.load_splits(b, ("train", "test"))
        ds = Dataset(name, s["train"]["x"], s["train"]["y"], s["test"]["x"], s["test"]["y"], CLASSES,
                     device=s["train"]["device"], test_device=s["test"]["device"])
    elif name in REAL:
        ds = _real(name, data_dir, cfg)
    else:
        raise TaskError(f"unknown dataset '{name}'; use one of {', '.join(BUILTIN + REAL)}")
    ds.y, ds.test_y = ds.y.astype(np.int32), ds.test_y.astype(np.int32)
    ds.hash = tfds_util.array_hash(ds.x, ds.y, ds.test_x, ds.test_y,
                                   *(a for a in (ds.public_x, ds.device) if a is not None))
    return ds


def _from_builder(name, b, classes, public=False) -> Dataset:
    s = tfds_util.load_splits(b, ("train", "test") + (("public",) if public else ()))
    return Dataset(name, s["train"]["x"], s["train"]["y"], s["test"]["x"], s["test"]["y"], classes,
                   public_x=s["public"]["x"] if public else None)


def _real(name, data_dir, cfg) -> Dataset:
    tf_name = f"emnist/{cfg.get('config', 'balanced')}" if name == "emnist" else name
    out = {}
    for split in ("train", "test"):
        src = tfds_util.catalog_source(tf_name, data_dir, split)
        limit = cfg.get(f"max_{split}")
        n = len(src) if limit is None else min(len(src), int(limit))
        recs = [src[i] for i in range(n)]
        x = np.stack([np.asarray(r["image"]) for r in recs]).astype(np.float32) / 255.0
        y = np.array([int(r["label"]) for r in recs], np.int32)
        out[split] = (x, y)
    if tf_name not in REAL_CLASSES:
        raise TaskError(f"unknown {name} config '{tf_name}'; use one of {', '.join(REAL_CLASSES)}")
    classes = REAL_CLASSES[tf_name]
    return Dataset(name, *out["train"], *out["test"], classes)
