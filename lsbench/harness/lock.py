"""An exclusive lock on a run directory, held from a run's start to its end.

The lock file sits beside the run directory (``<parent>/.<name>.lock``), so no
run directory is created before preflight passes. ``fcntl.flock`` is released
by the kernel when the holder dies, so a killed run never leaves a stale lock.
"""
from __future__ import annotations

import fcntl
import os

from lsbench.errors import UsageError


class RunLock:
    def __init__(self, run_path: str):
        run_path = os.path.abspath(run_path).rstrip("/")
        self.path = os.path.join(os.path.dirname(run_path), f".{os.path.basename(run_path)}.lock")
        self.fd = None

    def acquire(self) -> "RunLock":
        parent, self.created = os.path.dirname(self.path), []
        while parent and not os.path.exists(parent):
            self.created.append(parent)
            parent = os.path.dirname(parent)
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UsageError(f"cannot use workdir {self.path[:-5]}: {e.strerror} "
                             f"({os.path.dirname(self.path)}); pick a writable --workdir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            run = os.path.join(os.path.dirname(self.path), os.path.basename(self.path)[1:-5])
            raise UsageError(f"workdir {run} is in use by another run (process {holder}); "
                             "wait for it to finish or pick another --workdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        run = os.path.join(os.path.dirname(self.path), os.path.basename(self.path)[1:-5])
        if not os.path.exists(run):  # the run failed before its directory existed: leave nothing
            try:
                os.unlink(self.path)
                for d in self.created:
                    os.rmdir(d)
            except OSError:
                pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
