"""Shared helpers of the planning adversarial tests (not a plugin: no method here)."""
import importlib.util
import os
import sys

PLUGINS = os.path.dirname(os.path.abspath(__file__))


def plugin(name):
    """Imports tests/adversarial/plugins/<name>.py once (its classes are passed to lsbench.run)."""
    modname = f"lsbench_adversarial_{name}"
    if modname not in sys.modules:
        spec = importlib.util.spec_from_file_location(modname, os.path.join(PLUGINS, name + ".py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
    return sys.modules[modname]


def data_dir():
    from lsbench.models.cache import default_data_dir
    return default_data_dir()


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
