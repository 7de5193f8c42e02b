"""``lsbench_digits``: scikit-learn's bundled 8x8 digits (1,797 images, no download).

Fixed split from one permutation (seed 0): 400 test, 200 public (an unlabelled
held-out slice for distillation methods), 1,197 train. Pixels scaled to [0, 1].
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from lsbench.data import tfds_util

SPLIT_SIZES = {"test": 400, "public": 200}


def digits_arrays():
    """(x float32[N, 8, 8, 1] in [0, 1], y int32[N]) straight from scikit-learn."""
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.images[..., None] / 16.0).astype(np.float32), d.target.astype(np.int32)


def split_indices(n: int) -> dict:
    perm = np.random.default_rng(0).permutation(n)
    t, p = SPLIT_SIZES["test"], SPLIT_SIZES["public"]
    return {"test": perm[:t], "public": perm[t:t + p], "train": perm[t + p:]}


@tfds_util._install_code_path
class LsbenchDigits(tfds_util.LocalCode, tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__,
            features=tfds.features.FeaturesDict({
                "x": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.float32),
                "y": tfds.features.ClassLabel(num_classes=10),
                "index": tfds.features.Scalar(dtype=np.int64)}))

    def _split_generators(self, dl_manager):
        x, y = digits_arrays()
        return {s: self._generate_examples(x[i], y[i]) for s, i in split_indices(len(y)).items()}

    def _generate_examples(self, x, y):
        for i in range(len(y)):
            yield i, {"x": x[i], "y": int(y[i]), "index": i}
