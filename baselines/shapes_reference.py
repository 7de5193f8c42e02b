"""Reference points of the ``shapes`` inference tasks, and the one-round
offload protocol the shapes baselines share.

``Offload`` runs in two turns: ``edge_start`` computes the edge part once
(features to send and, optionally, local logits) and picks the rows to send;
turn 1 sends those rows' features (``api.Rows``: only they are billed), the
cloud finishes the model and answers an int32 class; turn 2 the edge takes the
cloud's answers and every row is done. Subclasses supply ``edge_part``,
``cloud_part`` and ``send_rows``.

- ``EdgeOnly``: the task's edge model (split: the edge CNN; exit: exit 1), 0 bytes.
- ``CloudOnly``: raw uint8 pixels up (3,072 B), the cloud model, the class down.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lsbench import api


class Offload(api.InferMethod):
    """Shared protocol; not registered itself (no manifest)."""

    def prepare(self, calib, rng):
        return self.ctx.params["edge"], self.ctx.params["cloud"]

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
        x = batch["x"]
        b = x.shape[0]
        payload, local = self.edge_part(es, x)
        pred = jnp.zeros((b,), jnp.int32) if local is None else jnp.argmax(local, -1).astype(jnp.int32)
        return {"payload": payload, "pred": pred, "send": self.send_rows(local, b)}

    def downlink_like(self, batch_size):
        return {"pred": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}

    def edge_turn(self, es, carry, inbox, rng):
        pred = jnp.where(inbox.got, inbox.msg["pred"], carry["pred"])
        send = carry["send"] & ~inbox.got
        carry = dict(carry, pred=pred, send=send)
        return carry, api.Rows(carry["payload"], send), send, ~send

    def cloud_turn(self, cs, carry, up, rng):
        logits = self.cloud_part(cs, up.data)
        return carry, {"pred": jnp.argmax(logits, -1).astype(jnp.int32)}

    def finalize(self, es, carry):
        return {"pred": carry["pred"]}


class EdgeOnly(Offload):
    manifest = api.Manifest(name="edge-only", tracks=("infer",), reference="edge-only",
                            description="the task's edge model on the device; nothing sent")

    def edge_part(self, es, x):
        return jnp.zeros((x.shape[0], 1), jnp.uint8), self.ctx.models["edge"].apply(es, x)

    def cloud_part(self, cs, payload):
        return jnp.zeros((payload.shape[0], self.ctx.num_classes))

    def send_rows(self, local_logits, batch_size):
        return jnp.zeros((batch_size,), bool)


class CloudOnly(Offload):
    manifest = api.Manifest(name="cloud-only", tracks=("infer",), reference="cloud-only",
                            description="raw uint8 pixels up, the cloud model, the class down")

    def edge_part(self, es, x):
        return {"x": x.astype(jnp.uint8)}, None

    def cloud_part(self, cs, payload):
        return self.ctx.models["cloud"].apply(cs, payload["x"])
