"""lsbench: a benchmark for large-small model collaboration between cloud and edge.

``lsbench.run(task=..., method=...)`` runs one run in-process (the CLI, the
suite, the tests and the benchmark scripts all go through the same driver)."""
__version__ = "0.2.0"


def run(task: str, method, seed: int = 0, hparams=None, workdir=None, **options) -> dict:
    """Runs ``method`` (a Method class, a registered name, ``pkg.mod:Class`` or
    ``file.py[:Class]``) on ``task`` and returns the final.json dict.

    ``workdir=None`` runs in a temporary directory that is removed afterwards.
    ``options``: any other ``RunConfig`` field (``data_dir``, ``resume``,
    ``overwrite``, ``backend``, ``max_units``, ``checkpoint_every``, ``sweep_point``).
    Errors a user can cause raise ``lsbench.errors.LsbenchError`` subclasses."""
    import tempfile

    from lsbench.harness.runner import RunConfig, execute
    log = options.pop("log", lambda s: None)
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="lsbench-run-") as d:
            return execute(RunConfig(task=task, method=method, seed=seed, hparams=hparams,
                                     workdir=f"{d}/run", **options), log=log)
    return execute(RunConfig(task=task, method=method, seed=seed, hparams=hparams, workdir=workdir,
                             **options), log=log)
