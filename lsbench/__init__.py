"""lsbench: a benchmark for large-small model collaboration between cloud and edge.

``lsbench.run(task=..., method=...)`` runs one run in-process (the CLI, the
suite, the tests and the benchmark scripts all go through the same driver)."""
__version__ = "0.2.0"


def run(task: str, method, seed: int = 0, hparams=None, workdir=None, seeds=None, **options):
    """Runs ``method`` (a Method class, a registered name, ``pkg.mod:Class`` or
    ``file.py[:Class]``) on ``task`` and returns the final.json dict.

    ``seeds=[0, 1, 2]``: one run per seed, batched into one compiled program
    where the runs allow it (training, vmap backend); returns the list of
    final.json dicts. Each seed writes its own run directory: ``workdir`` with
    ``{seed}`` formatted in, else ``workdir/seed<N>``.

    ``workdir=None`` runs in a temporary directory that is removed afterwards.
    ``options``: any other ``RunConfig`` field (``data_dir``, ``resume``,
    ``overwrite``, ``backend``, ``max_units``, ``checkpoint_every``, ``sweep_point``).
    Errors a user can cause raise ``lsbench.errors.LsbenchError`` subclasses."""
    import os
    import tempfile

    from lsbench.harness.runner import RunConfig, execute, execute_seeds
    log = options.pop("log", lambda s: None)
    if seeds is not None:
        def cfgs(root):
            return [RunConfig(task=task, method=method, seed=s, hparams=hparams,
                              workdir=(root.format(seed=s) if "{seed}" in root else os.path.join(root, f"seed{s}")),
                              **options) for s in seeds]
        if workdir is None:
            with tempfile.TemporaryDirectory(prefix="lsbench-run-") as d:
                return execute_seeds(cfgs(d), log=log)
        return execute_seeds(cfgs(str(workdir)), log=log)
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="lsbench-run-") as d:
            return execute(RunConfig(task=task, method=method, seed=seed, hparams=hparams,
                                     workdir=f"{d}/run", **options), log=log)
    return execute(RunConfig(task=task, method=method, seed=seed, hparams=hparams, workdir=workdir,
                             **options), log=log)
