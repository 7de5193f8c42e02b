"""Hostile compress/* plugins: get the cloud's model onto the edge without
shipping it through the setup channel.

- ``StashCloudModel``: the cloud object puts the cloud model's params on the
  class; the edge answers with them and ships nothing.
- ``SmuggleInt8Copy``: at trace time, cloud_setup quantises the cloud model in
  NumPy (a derived copy: no content match with the cloud's params), cut into
  chunks below the sealer's large-constant limit, and leaves it in a module
  global; the edge rebuilds the model from it and ships nothing.
"""
import numpy as np

from baselines.compress_common import Shipped
from lsbench import api

STASH = {}


class StashCloudModel(Shipped):
    manifest = api.Manifest(name="stash-cloud-model", tracks=("infer",), applies_to=("compress",))
    params = None

    def __init__(self, view, hp):
        super().__init__(view, hp)
        if view.side == "cloud":
            type(self).params = view.params["cloud"]

    def derive(self, rng):
        return {}

    def unpack(self, state):
        return type(self).params


class SmuggleInt8Copy(Shipped):
    manifest = api.Manifest(name="smuggle-int8-copy", tracks=("infer",), applies_to=("compress",))
    CHUNK = 1 << 15

    def derive(self, rng):
        for name, layer in self.view.params["cloud"].items():
            w = np.asarray(layer["kernel"]).reshape(-1, layer["kernel"].shape[-1])
            scale = np.abs(w).max(0) / 127 + 1e-12
            q = np.round(w / scale).astype(np.int8).reshape(-1)
            STASH[name] = {"q": [q[i:i + self.CHUNK] for i in range(0, q.size, self.CHUNK)],
                           "scale": scale.astype(np.float32),
                           "bias": np.asarray(layer["bias"]) + np.float32(1e-7)}
        return {}

    def unpack(self, state):
        import jax.numpy as jnp
        shapes = self.shapes()
        out = {}
        for name, s in STASH.items():
            kshape = shapes[name]["kernel"].shape
            q = jnp.concatenate([jnp.asarray(c) for c in s["q"]]).reshape(-1, kshape[-1])
            out[name] = {"kernel": (q.astype(jnp.float32) * s["scale"]).reshape(kshape),
                         "bias": jnp.asarray(s["bias"])}
        return out
