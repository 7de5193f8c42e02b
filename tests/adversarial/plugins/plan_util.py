"""Shared helpers of the planning adversarial tests (not a plugin: no method here)."""

from adv_common import PLUGINS, data_dir, plugin  # noqa: F401


def unsealed_run(inst, cls, hp=None, seed=0):
    """What a method would score with sealing switched off (no guard, no inspection):
    shows that the refusal, not the method, is what stops a route. Returns final-like
    {'metrics', 'costs'}."""
    from lsbench.harness import sealed
    from lsbench.harness.plan_loop import PlanLoop
    from lsbench.harness.runner import merge_hparams
    from lsbench.metering.flops import count_jaxpr

    class Unsealed(sealed.Sealer):
        def _inspect(self, side, name, closed):
            return None

    sides = sealed.build_sides(cls, "plan", inst, merge_hparams(cls, hp or {}),
                               Unsealed(sealed.Guard.open(), meter=count_jaxpr))
    loop = PlanLoop(inst, sides, seed)
    st = loop.init_state()
    for u in range(loop.num_units):
        st, _, _ = loop.run_unit(st, u)
    return loop.finish(st, [])
