"""Reference points of the ``shapes`` inference tasks, and the one-turn
offload protocol the shapes baselines share.

``Offload``: in its single turn the edge computes its part once (features to
send and, optionally, local logits), picks the rows to send (``api.Rows``:
only they are billed), the cloud finishes the model and answers an int32
class, and the edge takes the answers. Subclasses supply ``edge_part``,
``cloud_part`` and ``send_rows``; what the edge needs from the cloud's model
(its first stages, an exit head, an encoder) comes down in setup
(``cloud_setup``'s package, billed as ``setup_bytes_down``).

- ``EdgeOnly``: the task's edge model, 0 bytes per image (split: the edge
  CNN, the edge's own; exit: exit 1 of the cloud's multi-exit network, whose
  edge part comes down once in setup).
- ``CloudOnly``: raw uint8 pixels up (3,072 B), the cloud model, the class down.
"""
from __future__ import annotations

import jax.numpy as jnp

from lsbench import api
from lsbench.models import vision


class Offload(api.InferMethod):
    """Shared protocol; not registered itself (no manifest)."""

    # --- what subclasses supply -------------------------------------------
    def edge_part(self, es, x):
        """(uplink payload pytree with leading batch axis, local logits or None)."""
        raise NotImplementedError

    def cloud_part(self, cs, payload):
        """Logits from the delivered payload."""
        raise NotImplementedError

    def send_rows(self, local_logits, batch_size):
        return jnp.ones((batch_size,), bool)

    # --- the protocol ----------------------------------------------------
    def edge_start(self, es, batch):
        return {"x": batch["x"]}

    def edge_query(self, es, carry, rng):
        x = carry["x"]
        b = x.shape[0]
        payload, local = self.edge_part(es, x)
        pred = jnp.zeros((b,), jnp.int32) if local is None else jnp.argmax(local, -1).astype(jnp.int32)
        send = self.send_rows(local, b)
        return api.Query(dict(carry, pred=pred), api.Rows(payload, send), send, jnp.ones((b,), bool))

    def cloud_reply(self, cs, cc, up, rng):
        return cc, {"pred": jnp.argmax(self.cloud_part(cs, up.data), -1).astype(jnp.int32)}

    def edge_receive(self, es, carry, inbox, rng):
        return dict(carry, pred=jnp.where(inbox.got, inbox.msg["pred"], carry["pred"]))

    def finalize(self, es, carry):
        return {"pred": carry["pred"]}


def exit_package(view: api.InferView, params) -> dict:
    """The edge part of the exit task's multi-exit network: its stages up to the
    early exit and the exit head (the setup package the cloud sends down)."""
    return vision.stage_params(view.models["edge"], params, "logits")


class EdgeOnly(Offload):
    manifest = api.Manifest(name="edge-only", tracks=("infer",), applies_to=("shapes",),
                            reference="edge-only",
                            description="the task's edge model on the device; nothing sent per image "
                                        "(exit task: exit 1, downloaded once in setup)")

    def cloud_setup(self, uplink, rng):
        cs = dict(self.view.params)
        if self.view.mode == "exit":  # the edge model is part of the cloud's network
            return cs, {"edge": exit_package(self.view, cs["cloud"])}
        return cs, {}

    def edge_install(self, es, package, rng):
        return {**es, **package}

    def edge_part(self, es, x):
        return {"x": x.astype(jnp.uint8)}, self.view.models["edge"].apply(es["edge"], x)

    def cloud_part(self, cs, payload):
        return self.view.models["cloud"].apply(cs["cloud"], payload["x"])

    def send_rows(self, local_logits, batch_size):
        return jnp.zeros((batch_size,), bool)


class CloudOnly(Offload):
    manifest = api.Manifest(name="cloud-only", tracks=("infer",), applies_to=("shapes",),
                            reference="cloud-only",
                            description="raw uint8 pixels up, the cloud model, the class down")

    def edge_setup(self, rng):
        return {}, {}  # the edge holds no model

    def edge_part(self, es, x):
        return {"x": x.astype(jnp.uint8)}, None

    def cloud_part(self, cs, payload):
        return self.view.models["cloud"].apply(cs["cloud"], payload["x"])
