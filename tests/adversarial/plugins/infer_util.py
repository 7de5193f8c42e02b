"""Shared helpers of the inference adversarial tests (not a plugin: no method here)."""

from adv_common import PLUGINS, data_dir, plugin  # noqa: F401

TASK = "infer/arith-route-small"


def run_loop(inst, cls, hp=None, seed=0, sealed_on=True):
    """Runs a method on a built instance through the InferLoop, sealed as the runner
    seals it or (``sealed_on=False``) with sealing switched off (no guard, no
    inspection): the latter shows that the refusal, not the method, stops a route.
    Returns (final-like {'metrics', 'costs'}, loop, state)."""
    from lsbench.harness import sealed
    from lsbench.harness.infer_loop import InferLoop
    from lsbench.harness.runner import merge_hparams
    from lsbench.metering.flops import count_jaxpr

    class Unsealed(sealed.Sealer):
        def _inspect(self, side, name, closed):
            return None

    sealer = (sealed.Sealer(sealed.guard_for("infer", inst), meter=count_jaxpr) if sealed_on
              else Unsealed(sealed.Guard.open(), meter=count_jaxpr))
    sides = sealed.build_sides(cls, "infer", inst, merge_hparams(cls, hp or {}), sealer)
    loop = InferLoop(inst, sides, seed)
    loop.preflight()
    st = loop.init_state()
    for u in range(loop.num_units):
        st, _, _ = loop.run_unit(st, u)
    return loop.finish(st, []), loop, st


def refused(cls):
    """Runs ``cls`` on TASK and returns the one-line SealError that refuses it."""
    import pytest

    import lsbench
    from lsbench.errors import SealError
    with pytest.raises(SealError) as e:
        lsbench.run(task=TASK, method=cls, data_dir=data_dir())
    msg = str(e.value)
    assert "\n" not in msg
    return msg
