"""Plugin validation before a run touches its directory: every metered
function must trace under jit, and return the structure, shapes and dtypes
its track's protocol requires. Failures become one-line PluginErrors."""
from __future__ import annotations

import jax

from lsbench.registry import PluginError


def same_structure(name, fn_name, got, want):
    """Raises PluginError unless two pytrees match in structure, shapes and dtypes."""
    gs, ws = jax.tree_util.tree_structure(got), jax.tree_util.tree_structure(want)
    if gs != ws:
        raise PluginError(f"method {name}: {fn_name} changed the state's structure "
                          f"({gs} vs {ws}); return the same pytree it was given")
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        if g.shape != w.shape or g.dtype != w.dtype:
            raise PluginError(f"method {name}: {fn_name} returned a leaf {g.dtype}{list(g.shape)} "
                              f"where {w.dtype}{list(w.shape)} was expected")


def check(loop, spec, method) -> None:
    name = method.manifest.name
    try:
        loop.preflight()
    except PluginError:
        raise
    except (jax.errors.TracerBoolConversionError, jax.errors.ConcretizationTypeError,
            jax.errors.TracerArrayConversionError, jax.errors.TracerIntegerConversionError) as e:
        first = str(e).strip().splitlines()[0]
        raise PluginError(f"method {name} is not jittable: {type(e).__name__}: {first}; "
                          "use jnp/lax control flow instead of Python branching on values") from None
    except NotImplementedError as e:
        raise PluginError(f"method {name} does not implement a required function ({e})") from None
    except Exception as e:  # noqa: BLE001 - any trace failure is the plugin's
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise PluginError(f"method {name} failed to trace on {spec.name}: "
                          f"{type(e).__name__}: {first}") from None
