"""``mnist1d``: MNIST-1D (Greydanus 2020) made by the ``mnist1d`` package's own
generator (``make_dataset``; its ``get_dataset`` would download), fixed args.

Configs:
- ``default``: the published setup, 5,000 samples, seed 42, 80/20 split ->
  4,000 train / 1,000 test (the README's 68% MLP / 94% CNN); ``public`` is a
  separate 2,000-sample generation (seed 43).
- ``large``: one 60,000-sample generation (seed 42) -> 40,000 train,
  10,000 public, 10,000 test.
``public`` keeps its labels on disk, but tasks hand methods only its x.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from lsbench.data import tfds_util


@dataclasses.dataclass
class Mnist1dConfig(tfds.core.BuilderConfig):
    num_samples: int = 5000
    train_split: float = 0.8
    public: int = 0          # taken from the train part of the same generation
    public_seed: int = 43    # else generated separately with this seed (2,000 samples)
    seed: int = 42


CONFIGS = [
    Mnist1dConfig(name="default", description="4k train / 1k test (published size)"),
    Mnist1dConfig(name="large", description="40k train / 10k public / 10k test",
                  num_samples=60000, train_split=50000 / 60000, public=10000),
]


def generate(num_samples: int, seed: int, train_split: float):
    """Calls mnist1d's generator directly (no download)."""
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = num_samples, seed, train_split
    state = np.random.get_state()  # make_dataset reseeds NumPy's global RNG
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(state)
    f = lambda a: np.asarray(a, np.float32)
    return f(d["x"]), np.asarray(d["y"], np.int32), f(d["x_test"]), np.asarray(d["y_test"], np.int32)


@tfds_util._install_code_path
class Mnist1d(tfds_util.LocalCode, tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = CONFIGS

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__,
            features=tfds.features.FeaturesDict({
                "x": tfds.features.Tensor(shape=(40,), dtype=np.float32),
                "y": tfds.features.ClassLabel(num_classes=10),
                "index": tfds.features.Scalar(dtype=np.int64)}))

    def _split_generators(self, dl_manager):
        c = self.builder_config
        x, y, xt, yt = generate(c.num_samples, c.seed, c.train_split)
        if c.public:
            xp, yp, x, y = x[-c.public:], y[-c.public:], x[:-c.public], y[:-c.public]
        else:
            xp, yp, _, _ = generate(2000, c.public_seed, 1.0)
        return {"train": self._generate_examples(x, y), "test": self._generate_examples(xt, yt),
                "public": self._generate_examples(xp, yp)}

    def _generate_examples(self, x, y):
        for i in range(len(y)):
            yield i, {"x": x[i], "y": int(y[i]), "index": i}
