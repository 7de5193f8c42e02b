"""Small pytree helpers the track loops share."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def nbytes(tree) -> int:
    """Bytes of the array leaves of a pytree (arrays or ShapeDtypeStructs)."""
    return int(sum(math.prod(np.shape(a)) * np.dtype(a.dtype).itemsize
                   for a in jax.tree_util.tree_leaves(tree) if hasattr(a, "dtype")))


def finite(tree):
    """A traced bool: every floating leaf is free of NaN and Inf."""
    ok = jnp.array(True)
    for leaf in jax.tree_util.tree_leaves(tree):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            ok = ok & jnp.all(jnp.isfinite(leaf))
    return ok


def where(c, a, b):
    """Leafwise ``jnp.where(c, a, b)`` over two pytrees of one structure."""
    return jax.tree_util.tree_map(lambda x, y: jnp.where(c, x, y), a, b)
