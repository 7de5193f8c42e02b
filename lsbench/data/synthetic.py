"""``leaf_synthetic``: Synthetic(alpha, beta) of Li et al. (FedProx, MLSys 2020),
the LEAF synthetic family, written from the paper's definition.

Device k (of ``devices``): u_k ~ N(0, alpha), B_k ~ N(0, beta) (second argument
is the standard deviation, as in the reference generator); true model
W_k ~ N(u_k, 1)^{d x C}, b_k ~ N(u_k, 1)^C; feature mean v_k ~ N(B_k, 1)^d;
x ~ N(v_k, Sigma) with Sigma = diag(j^-1.2), j = 1..d; y = argmax(x W_k + b_k).
Sample counts follow the paper's power law: n_k = floor(LogNormal(4, 2)) + 50,
here capped at ``max_samples`` so padded client arrays stay small. Each device's
samples are split 80/20 into its local train and test (the natural partition:
one device is one client). d = 60, C = 10.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from lsbench.data import tfds_util

DIM, CLASSES = 60, 10


def generate(alpha: float, beta: float, devices: int, seed: int, max_samples: int = 1000,
             test_frac: float = 0.2):
    """Returns dict split -> (x float32[n, 60], y int32[n], device int32[n])."""
    rng = np.random.default_rng(seed)
    n = np.minimum(rng.lognormal(4, 2, devices).astype(np.int64) + 50, max_samples)
    u = rng.normal(0, alpha, devices)
    bmean = rng.normal(0, beta, devices)
    sd = np.arange(1, DIM + 1) ** (-1.2 / 2)  # sqrt of the diagonal covariance
    out = {"train": ([], [], []), "test": ([], [], [])}
    for k in range(devices):
        w = rng.normal(u[k], 1, (DIM, CLASSES))
        b = rng.normal(u[k], 1, CLASSES)
        v = rng.normal(bmean[k], 1, DIM)
        x = (v + sd * rng.normal(size=(n[k], DIM))).astype(np.float32)
        y = np.argmax(x @ w + b, -1).astype(np.int32)
        nt = max(1, int(round(test_frac * n[k])))
        for split, sl in (("train", slice(nt, None)), ("test", slice(0, nt))):
            out[split][0].append(x[sl])
            out[split][1].append(y[sl])
            out[split][2].append(np.full(len(y[sl]), k, np.int32))
    return {s: tuple(np.concatenate(a) for a in v) for s, v in out.items()}


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
    alpha: float = 1.0
    beta: float = 1.0
    devices: int = 100
    seed: int = 0
    max_samples: int = 1000


def config_name(alpha, beta, devices, seed, max_samples=1000) -> str:
    return f"a{alpha:g}_b{beta:g}_d{devices}_s{seed}_m{max_samples}"


def make_config(alpha, beta, devices, seed, max_samples=1000) -> SyntheticConfig:
    return SyntheticConfig(name=config_name(alpha, beta, devices, seed, max_samples), alpha=alpha,
                           beta=beta, devices=devices, seed=seed, max_samples=max_samples)


@tfds_util._install_code_path
class LeafSynthetic(tfds_util.LocalCode, tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [make_config(1.0, 1.0, 100, 0)]

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__,
            features=tfds.features.FeaturesDict({
                "x": tfds.features.Tensor(shape=(DIM,), dtype=np.float32),
                "y": tfds.features.ClassLabel(num_classes=CLASSES),
                "device": tfds.features.Scalar(dtype=np.int32),
                "index": tfds.features.Scalar(dtype=np.int64)}))

    def _split_generators(self, dl_manager):
        c = self.builder_config
        data = generate(c.alpha, c.beta, c.devices, c.seed, c.max_samples)
        return {s: self._generate_examples(*v) for s, v in data.items()}

    def _generate_examples(self, x, y, dev):
        for i in range(len(y)):
            yield i, {"x": x[i], "y": int(y[i]), "device": int(dev[i]), "index": i}
