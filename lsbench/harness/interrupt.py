"""SIGINT during a run. Ctrl-C raises ``KeyboardInterrupt`` at once, except inside
a critical section (a checkpoint save, a metrics write), where it waits until the
section ends: an interrupt that lands inside Orbax's save left its worker threads
failing after the process had reported. A SIGINT is also remembered, so one that
a library swallows (a KeyboardInterrupt raised inside a GC callback is only
printed) still stops the run at the next chunk boundary (``check``)."""
from __future__ import annotations

import contextlib
import signal
import threading

_state = {"depth": 0, "pending": False, "seen": False}


def _handler(signum, frame):
    _state["seen"] = True
    if _state["depth"]:
        _state["pending"] = True
    else:
        raise KeyboardInterrupt


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def handling():
    """Installs the handler for one run; a no-op off the main thread (where
    signals are not delivered)."""
    if not _main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, _handler)
    _state.update(depth=0, pending=False, seen=False)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def critical():
    """A section that a SIGINT does not split: the interrupt is raised after it."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
    if not _state["depth"] and _state["pending"]:
        _state["pending"] = False
        raise KeyboardInterrupt


def check() -> None:
    """Raises ``KeyboardInterrupt`` if a SIGINT arrived and was swallowed."""
    if _state["seen"]:
        raise KeyboardInterrupt


def ignore() -> None:
    """While the run reports an interrupt: further SIGINTs are ignored."""
    _state["seen"] = False
    if _main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
