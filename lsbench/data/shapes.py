"""``lsbench_shapes``: procedurally generated 32x32x3 images, 10 classes.

Class = shape (circle, square, triangle, cross, ring) x colour family (warm,
cool): ``label = 2 * shape + family``. Each image has a random position, scale,
rotation, background gradient, pixel noise and clutter, all set by a
per-example ``difficulty`` in {0 easy, 1 medium, 2 hard}: harder examples are
smaller, lower-contrast, nearer the hue boundary between families, noisier and
more cluttered. Splits: train, calib, test, val (validation; added in 1.1.0,
last, so the other splits are unchanged). Deterministic from (sizes, seed,
difficulty mix): each split draws from its own ``numpy`` generator seeded by
(seed, split), so the splits share no image (a test checks it).
Built once by a TFDS builder into array_record under ``<data_dir>/tfds`` and
read back with ``as_data_source`` (no TensorFlow).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from lsbench.data import tfds_util

SHAPES = ("circle", "square", "triangle", "cross", "ring")
FAMILIES = ("warm", "cool")
NUM_CLASSES = len(SHAPES) * len(FAMILIES)
SIZE = 32
SPLITS = ("train", "calib", "test", "val")
GEN_VERSION = "1.1.0"

# Per difficulty level: radius range, contrast range, hue margin to the family
# boundary, noise std, clutter count.
LEVELS = (
    dict(radius=(8.0, 11.0), contrast=(0.9, 1.0), hue_margin=0.10, noise=0.02, clutter=0),
    dict(radius=(6.0, 10.0), contrast=(0.6, 0.9), hue_margin=0.05, noise=0.06, clutter=2),
    dict(radius=(4.5, 8.0), contrast=(0.4, 0.7), hue_margin=0.0, noise=0.12, clutter=4),
)
DIFFICULTY_P = (0.4, 0.35, 0.25)


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB, all inputs float[...] in [0, 1]."""
    h = (h % 1.0) * 6.0
    i = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in
                      ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], 0)
    return np.take_along_axis(table, i[None, ..., None], 0)[0]


def _family_hue(rng, fam, margin):
    """Warm hues around red (0 +- 0.2), cool around blue (0.5 +- 0.2); the
    boundary sits 0.25 from each centre, ``margin`` keeps away from it."""
    half = 0.22 - margin
    return (np.where(fam == 0, 0.0, 0.5) + rng.uniform(-half, half, fam.shape)) % 1.0


def _inside(shape, u, v, r):
    """Signed depth inside each shape (pixels, > 0 inside); u, v rotated coords."""
    d = np.sqrt(u * u + v * v)
    tri = np.min(np.stack([0.5 * r - (u * np.cos(a) + v * np.sin(a))
                           for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3)]), 0)
    w = 0.32 * r
    cross = np.maximum(np.minimum(w - np.abs(u), r - np.abs(v)), np.minimum(w - np.abs(v), r - np.abs(u)))
    table = np.stack([r - d, 0.8 * r - np.maximum(np.abs(u), np.abs(v)), tri, cross,
                      np.minimum(r - d, d - 0.55 * r)], 0)
    return np.take_along_axis(table, shape[None, :, None, None], 0)[0]


def generate(n: int, seed: int, split: str = "train", difficulty_p=DIFFICULTY_P) -> dict:
    """Returns {"image": uint8[n,32,32,3], "label": int32[n], "difficulty": int32[n]};
    ``difficulty_p``: the probabilities of the three difficulty levels."""
    rng = np.random.default_rng([seed, SPLITS.index(split) if split in SPLITS else 99])
    out = {"image": np.zeros((n, SIZE, SIZE, 3), np.uint8), "label": np.zeros(n, np.int32),
           "difficulty": np.zeros(n, np.int32)}
    for lo in range(0, n, 512):
        m = min(512, n - lo)
        img, lab, dif = _chunk(rng, m, difficulty_p)
        out["image"][lo:lo + m], out["label"][lo:lo + m], out["difficulty"][lo:lo + m] = img, lab, dif
    return out


def _chunk(rng, m, difficulty_p=DIFFICULTY_P):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    dif = rng.choice(3, size=m, p=difficulty_p)
    lv = {k: np.array([LEVELS[d][k] for d in dif]) for k in ("radius", "contrast", "hue_margin",
                                                             "noise", "clutter")}
    shape, fam = rng.integers(0, len(SHAPES), m), rng.integers(0, 2, m)
    label = 2 * shape + fam
    r = rng.uniform(lv["radius"][:, 0], lv["radius"][:, 1])
    cx, cy = (rng.uniform(r + 1, SIZE - r - 1) for _ in range(2))
    th = rng.uniform(0, 2 * np.pi, m)
    # background: a soft random-colour gradient
    bg0 = rng.uniform(0.2, 0.8, (m, 1, 1, 3))
    grad = rng.uniform(-0.25, 0.25, (m, 1, 1, 3)) * ((xx * np.cos(th[:, None, None]) + yy
                                                       * np.sin(th[:, None, None])) / SIZE)[..., None]
    img = np.clip(bg0 + grad, 0, 1)
    # clutter: small blobs of any colour, drawn under the object
    for k in range(int(lv["clutter"].max())):
        on = (k < lv["clutter"])[:, None, None]
        bx, by = rng.uniform(0, SIZE, (2, m, 1, 1))
        br = rng.uniform(1.5, 3.5, (m, 1, 1))
        col = _hsv_to_rgb(rng.uniform(0, 1, m), rng.uniform(0.4, 1, m), rng.uniform(0.3, 1, m))
        cov = np.clip(br - np.sqrt((xx - bx) ** 2 + (yy - by) ** 2) + 0.5, 0, 1) * on
        img = img * (1 - cov[..., None]) + col[:, None, None, :] * cov[..., None]
    # the object
    hue = _family_hue(rng, fam, lv["hue_margin"])
    col = _hsv_to_rgb(hue, rng.uniform(0.6, 1, m), rng.uniform(0.6, 1, m))
    dx, dy = xx - cx[:, None, None], yy - cy[:, None, None]
    c, s = np.cos(th)[:, None, None], np.sin(th)[:, None, None]
    u, v = c * dx + s * dy, -s * dx + c * dy
    alpha = rng.uniform(lv["contrast"][:, 0], lv["contrast"][:, 1])
    cov = np.clip(_inside(shape, u, v, r[:, None, None]) + 0.5, 0, 1) * alpha[:, None, None]
    img = img * (1 - cov[..., None]) + col[:, None, None, :] * cov[..., None]
    img = img + rng.normal(0, 1, img.shape) * lv["noise"][:, None, None, None]
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), label.astype(np.int32), dif.astype(np.int32)


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
    sizes: tuple = (12000, 2000, 4000, 1000)  # in SPLITS order
    seed: int = 0
    difficulty_p: tuple = DIFFICULTY_P


def config(sizes, seed, difficulty_p=DIFFICULTY_P) -> ShapesConfig:
    dp = tuple(float(p) for p in difficulty_p)
    name = f"n{'-'.join(str(int(s)) for s in sizes)}_s{int(seed)}"
    if dp != tuple(DIFFICULTY_P):
        name += "_d" + "-".join(f"{p:g}" for p in dp)
    return ShapesConfig(name=name, version=GEN_VERSION, sizes=tuple(int(s) for s in sizes), seed=int(seed),
                        difficulty_p=dp)


@tfds_util._install_code_path
class LsbenchShapes(tfds_util.LocalCode, tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version(GEN_VERSION)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(SIZE, SIZE, 3), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                "difficulty": tfds.features.Scalar(dtype=np.int32),
                "index": tfds.features.Scalar(dtype=np.int64)}))

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        return {s: self._generate_examples(generate(n, cfg.seed, s, cfg.difficulty_p))
                for s, n in zip(SPLITS, cfg.sizes)}

    def _generate_examples(self, d):
        for i in range(len(d["label"])):
            yield i, {"image": d["image"][i], "label": int(d["label"][i]),
                      "difficulty": int(d["difficulty"][i]), "index": i}


def load(data_dir: str, sizes=(12000, 2000, 4000, 1000), seed: int = 0,
         difficulty_p=DIFFICULTY_P) -> tuple[dict, str]:
    """Builds (once) and reads all splits: ({split: {x, y, difficulty}}, data hash).
    ``sizes``: train, calib, test, val."""
    if len(sizes) != len(SPLITS):
        raise ValueError(f"shapes sizes must give {len(SPLITS)} splits {SPLITS}, got {tuple(sizes)}")
    b = tfds_util.prepare(LsbenchShapes, data_dir, config(sizes, seed, difficulty_p))
    raw = tfds_util.load_splits(b, SPLITS, keys=("image", "label", "difficulty"))
    out = {s: {"x": raw[s]["image"].astype(np.uint8), "y": raw[s]["label"].astype(np.int32),
               "difficulty": raw[s]["difficulty"].astype(np.int32)} for s in SPLITS}
    h = tfds_util.array_hash(*[out[s][k] for s in SPLITS for k in ("x", "y", "difficulty")])
    return out, h
