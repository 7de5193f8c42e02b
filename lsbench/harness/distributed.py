"""Where a run executes: the JAX platform, and several processes over JAX's own
``jax.distributed`` (one run, clients sharded over every process's devices).

Both must be settled before anything touches a JAX backend, so the CLI calls
:func:`setup` first. Every process runs the same program (multi-controller
SPMD); only process 0 writes results (:func:`is_writer`).
"""
from __future__ import annotations

import os

from lsbench.errors import UsageError

PLATFORMS = ("cpu", "gpu", "tpu")
INSTALL_HINT = {"gpu": "install JAX for CUDA: pip install -U 'jax[cuda12]'",
                "tpu": "on a TPU VM install JAX for TPU: pip install -U 'jax[tpu]'"}


def _found_platforms(jax) -> list[str]:
    """Every platform JAX initialised here (falls back to the default backend's)."""
    try:
        from jax._src import xla_bridge
        return sorted(xla_bridge.backends())
    except Exception:  # noqa: BLE001 - a private API: fall back to the public one
        return sorted({d.platform for d in jax.devices()})


def select_platform(platform: str | None) -> None:
    """Makes ``platform`` JAX's backend, or raises one line naming what JAX found.

    ``cpu`` is pinned with JAX_PLATFORMS before JAX starts (no accelerator is
    touched). For ``gpu``/``tpu`` JAX picks among what it finds; asking JAX for
    a missing one would raise a traceback about plugins (e.g. 'rocm')."""
    if not platform:
        return
    if platform not in PLATFORMS:
        raise UsageError(f"--platform must be one of {', '.join(PLATFORMS)}, not '{platform}'")
    if platform == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
        return
    if os.environ.get("JAX_PLATFORMS", "").split(",")[0] not in ("", platform):
        os.environ.pop("JAX_PLATFORMS")  # e.g. a stale JAX_PLATFORMS=cpu from a parent
    import jax
    try:
        devs = jax.devices(platform)
    except RuntimeError:
        devs = []
    if not devs:
        raise UsageError(f"--platform={platform}: JAX found no {platform} here (platforms found: "
                         f"{', '.join(_found_platforms(jax)) or 'none'}); {INSTALL_HINT[platform]}, "
                         "or drop --platform")
    if jax.default_backend() != devs[0].platform:
        jax.config.update("jax_default_device", devs[0])


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, auto: bool = False) -> bool:
    """Joins a multi-process run through ``jax.distributed.initialize``.

    With a coordinator, all three values are needed; ``auto`` lets JAX detect
    them from its cluster environment (SLURM, Open MPI, TPU pods, ...).
    Returns whether this process is part of a multi-process run."""
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if not any(given) and not auto:
        return False
    if any(given) and not all(given):
        raise UsageError("multi-process runs need all of --coordinator=host:port, --num_processes=N "
                         "and --process_id=i (or --distributed on a cluster JAX detects)")
    if all(given):
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"--coordinator must be host:port, not '{coordinator}'")
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise UsageError(f"--process_id must be in 0..{num_processes - 1} and --num_processes >= 1 "
                             f"(got {process_id} of {num_processes})")
    import jax
    try:
        if all(given):
            jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                       process_id=process_id)
        else:
            jax.distributed.initialize()
    except (RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UsageError(f"jax.distributed.initialize failed ({first}); check --coordinator is "
                         "reachable from every process and each --process_id is used once") from None
    return jax.process_count() > 1


def setup(platform=None, coordinator=None, num_processes=None, process_id=None, auto=False) -> bool:
    """Platform and processes, in the order JAX needs (distributed first)."""
    if platform == "cpu":
        select_platform(platform)  # before JAX starts
    multi = initialize(coordinator, num_processes, process_id, auto)
    if platform != "cpu":
        select_platform(platform)
    return multi


def is_writer() -> bool:
    """Process 0 writes run directories; the others compute their share only."""
    import sys
    if "jax" not in sys.modules:
        return True
    import jax
    return jax.process_index() == 0


def describe() -> dict:
    """Platform, devices and processes actually used (for the manifest)."""
    import jax
    return {"platform": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "device_kind": jax.devices()[0].device_kind, "process_count": jax.process_count(),
            "process_index": jax.process_index(), "local_device_count": jax.local_device_count()}
