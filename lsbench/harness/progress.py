"""Progress of long work (rounds, batches, episodes, reference training, data
generation), shown with tqdm, which flax and TFDS already install.

On a terminal: a live bar with the latest metric. Elsewhere (CI logs, the
suite's subprocesses): one line per 10% of the work, so logs stay short.
``LSBENCH_PROGRESS=0`` silences both.

    with progress.Bar(total=rounds, desc="train/mnist1d fedavg", unit="round") as bar:
        for r in range(rounds):
            ...
            bar.update(1, edge_accuracy=0.61)
"""
from __future__ import annotations

import os
import sys
import time


def enabled() -> bool:
    return os.environ.get("LSBENCH_PROGRESS", "1") != "0"


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class Bar:
    """A progress bar over ``total`` units; ``update(n, **live_metrics)``."""

    def __init__(self, total: int, desc: str = "", unit: str = "it", initial: int = 0,
                 stream=None, tty: bool | None = None):
        self.total, self.desc, self.unit, self.n = max(int(total), 1), desc, unit, int(initial)
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.on = enabled()
        self._bar, self._next_tenth, self._t0 = None, self._tenth(self.n) + 1, time.time()
        if self.on and self.tty:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=self.total, initial=self.n, desc=desc, unit=unit,
                             file=self.stream, dynamic_ncols=True, leave=False)

    def _tenth(self, n: int) -> int:
        return (10 * n) // self.total

    def update(self, n: int = 1, **metrics) -> None:
        self.n += n
        if not self.on:
            return
        if self._bar is not None:
            if metrics:
                self._bar.set_postfix({k: _fmt(v) for k, v in metrics.items()}, refresh=False)
            self._bar.update(n)
            return
        if self._tenth(self.n) >= self._next_tenth or self.n >= self.total:
            self._next_tenth = self._tenth(self.n) + 1
            live = " ".join(f"{k}={_fmt(v)}" for k, v in metrics.items())
            print(f"{self.desc}: {self.unit} {min(self.n, self.total)}/{self.total} "
                  f"({time.time() - self._t0:.1f}s){' ' + live if live else ''}", file=self.stream, flush=True)
            if self.n >= self.total:
                self._next_tenth = 11  # printed the last line once

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
