"""Errors a user can cause. Each carries one line that names the problem and
what to do; the CLI prints it as ``lsbench: error: ...`` and exits 2. Anything
else is an internal bug and keeps its traceback (please report it)."""
from __future__ import annotations


class LsbenchError(ValueError):
    """Base class of every user-caused error."""


class UsageError(LsbenchError):
    """Bad flags or arguments (workdir clash, unknown hyper-parameter, ...)."""


class TaskError(LsbenchError):
    """Bad task input (unknown dataset, bad partition, missing data, ...)."""


class PluginError(LsbenchError):
    """A plugin could not be found, is malformed, or broke the protocol."""


class SealError(PluginError):
    """A method tried to pass information between the sides outside the channel
    (a leaked tracer, a host callback, the other side's asset as a constant,
    array work in a constructor)."""


class FlopError(PluginError):
    """A function cannot be metered (an unbounded while_loop, an unknown primitive)."""


class BudgetError(LsbenchError):
    """A run went over one of its task's declared edge budgets."""


__all__ = ["LsbenchError", "UsageError", "TaskError", "PluginError", "SealError", "FlopError",
           "BudgetError"]
