"""TFDS helpers shared by lsbench's data builders: array_record on disk, read
back with ``as_data_source()`` (no TensorFlow), cached under ``<data_dir>/tfds``.
Nothing here ever downloads."""
from __future__ import annotations

import hashlib
import logging
import os
import sys

import numpy as np

from lsbench.task import TaskError


class LocalCode:
    """Mixin for lsbench's builders: points TFDS at the builder's own file.
    (TFDS's default ``code_path`` lookup needs the ``importlib_resources``
    backport, which is not a dependency.)"""

    @classmethod
    def _code_file(cls):
        import inspect
        from etils import epath
        return epath.Path(inspect.getfile(cls))

    # TFDS prints "Downloading and preparing dataset ..." around generation; lsbench
    # downloads nothing, so these two hooks say what actually happens.
    def _what(self):
        c = getattr(self, "builder_config", None)
        return self.name + (f"/{c.name}" if c is not None and c.name else ""), getattr(c, "description", "")

    def _log_download_bytes(self):
        import time
        what, desc = self._what()
        self._lsb_t0 = time.time()
        print(f"generating {what}" + (f" ({desc})" if desc else "") + f" into {self.data_dir} "
              "(made locally; nothing is downloaded)", file=sys.stderr, flush=True)

    def _log_download_done(self):
        import time
        what, _ = self._what()
        splits = " / ".join(f"{s.num_examples} {name}" for name, s in sorted(self.info.splits.items()))
        print(f"generated {what}: {splits} ({time.time() - getattr(self, '_lsb_t0', time.time()):.1f} s)",
              file=sys.stderr, flush=True)


def _install_code_path(cls):
    from tensorflow_datasets.core import utils
    cls.code_path = utils.classproperty(classmethod(lambda c: c._code_file()))
    return cls


def tfds_dir(data_dir: str) -> str:
    return os.path.join(os.path.abspath(os.path.expanduser(data_dir)), "tfds")


def _quiet():
    import tensorflow_datasets as tfds
    tfds.disable_progress_bar()
    logging.getLogger("absl").setLevel(logging.WARNING)
    return tfds


def prepare(builder_cls, data_dir: str, config=None):
    """Builds (once) and returns an lsbench-generated dataset builder."""
    tfds = _quiet()
    names = {c.name for c in getattr(builder_cls, "BUILDER_CONFIGS", [])}
    if config is not None and getattr(config, "name", None) in names:
        config = config.name  # a listed config must be passed by name
    kw = {"config": config} if config is not None else {}
    b = builder_cls(data_dir=tfds_dir(data_dir), file_format="array_record", **kw)
    from lsbench.models.cache import rebuild_requested
    if b.is_prepared() and rebuild_requested():
        import shutil
        shutil.rmtree(str(b.data_dir), ignore_errors=True)
        b = builder_cls(data_dir=tfds_dir(data_dir), file_format="array_record", **kw)
    if not b.is_prepared():
        b.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return b


def read_split(source, keys=None) -> dict:
    """All records of a data source as stacked numpy arrays, in ``index`` order
    when records carry an ``index`` feature (array_record shuffles by key)."""
    n = len(source)
    recs = source.__getitems__(list(range(n))) if n else []
    if not recs:
        return {}
    keys = keys or list(recs[0])
    out = {k: np.stack([np.asarray(r[k]) for r in recs]) for k in keys if k in recs[0]}
    if "index" in recs[0]:
        order = np.argsort(np.array([int(r["index"]) for r in recs]), kind="stable")
        out = {k: v[order] for k, v in out.items()}
    return out


HASH_FILE = "lsbench_content_hash.json"


def load_splits(builder, splits, keys=None) -> dict:
    """Reads splits and verifies them against the content hash recorded when the
    dataset was generated (recorded on first read); a mismatch or an unreadable
    file stops the run with one line naming the folder and ``--rebuild_cache``."""
    import json
    folder = str(builder.data_dir)
    try:
        out = {s: read_split(builder.as_data_source(split=s), keys) for s in splits}
    except Exception as e:  # noqa: BLE001 - a damaged array_record file
        raise TaskError(f"generated dataset at {folder} is corrupt ({type(e).__name__}); rebuild it: "
                        f"rerun with --rebuild_cache (or delete {folder})") from None
    got = array_hash(*[v for s in splits for _, v in sorted(out[s].items())])
    path = os.path.join(folder, HASH_FILE)
    rec = {}
    if os.path.exists(path):
        with open(path) as f:
            rec = json.load(f)
    key = ",".join(splits) + "|" + ",".join(keys or ())
    if key in rec and rec[key] != got:
        raise TaskError(f"generated dataset at {folder} is corrupt (content hash {got}, recorded "
                        f"{rec[key]}); rebuild it: rerun with --rebuild_cache (or delete {folder})")
    if key not in rec:
        rec[key] = got
        tmp = path + f".tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.replace(tmp, path)
    return out


def catalog_source(name: str, data_dir: str, split: str):
    """A TFDS catalog dataset's data source from ``data_dir`` (never downloads)."""
    tfds = _quiet()
    root = tfds_dir(data_dir)
    try:
        b = tfds.builder(name, data_dir=root)
        return b.as_data_source(split=split)
    except Exception as e:  # noqa: BLE001 - reported as one line
        raise TaskError(
            f"dataset '{name}' (split {split}) is not prepared as array_record under {root} "
            f"({type(e).__name__}); on a machine with internet run `tfds build {name} "
            f"--data_dir={root} --file_format=array_record` and copy it there") from None


def array_hash(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]
