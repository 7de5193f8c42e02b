"""Hostile inference plugins, route 2: one side stashes a value on a shared
object (a class attribute, a module global) and the other side reads it.

Sealed, each side's function is traced alone, so a stashed traced value is a
leaked tracer, and a stashed concrete asset is a constant the reading side may
not hold.
"""
import jax.numpy as jnp

from baselines.routing import Cascade, RouterLearned
from lsbench import api

STASH = {}


class StashReplyOnClass(Cascade):
    """cloud_reply keeps its answers on the class; edge_receive answers every row with them."""
    manifest = api.Manifest(name="stash-reply-on-class", tracks=("infer",), applies_to=("arith",))
    answers = None

    def cloud_reply(self, cs, cc, up, rng):
        cc, reply = super().cloud_reply(cs, cc, up, rng)
        type(self).answers = reply["pred"]
        return cc, reply

    def edge_receive(self, es, carry, inbox, rng):
        carry = super().edge_receive(es, carry, inbox, rng)
        if type(self).answers is not None:
            carry = dict(carry, pred=type(self).answers)
        return carry


class StashUplinkGlobal(Cascade):
    """cloud_reply keeps the delivered queries in a module global; finalize reads them."""
    manifest = api.Manifest(name="stash-uplink-global", tracks=("infer",), applies_to=("arith",))

    def cloud_reply(self, cs, cc, up, rng):
        STASH["x"] = up["x"]
        return super().cloud_reply(cs, cc, up, rng)

    def finalize(self, es, carry):
        out = super().finalize(es, carry)
        if "x" in STASH:
            out = {"pred": out["pred"] + 0 * STASH["x"][:, 0]}
        return out


class StashCloudParams(Cascade):
    """The cloud object puts its params on the class; the edge answers with the cloud model."""
    manifest = api.Manifest(name="stash-cloud-params", tracks=("infer",), applies_to=("arith",))
    params = None

    def __init__(self, view, hp):
        super().__init__(view, hp)
        if view.side == "cloud":
            type(self).params = view.params["cloud"]

    def edge_query(self, es, carry, rng):
        logits = self.view.models["cloud"].apply(type(self).params, carry["x"])[:, -1, :self._k()]
        pred = jnp.argmax(logits, -1).astype(jnp.int32)
        send = jnp.zeros(pred.shape, bool)
        return api.Query(dict(carry, pred=pred), {"x": carry["x"]}, send, ~send)


class RouterFreeUplink(RouterLearned):
    """Fits the router on the edge's params without sending them: the edge object puts
    them on the class, cloud_setup reads them there."""
    manifest = api.Manifest(name="router-free-uplink", tracks=("infer",), applies_to=("arith",))
    edge_params = None

    def __init__(self, view, hp):
        super().__init__(view, hp)
        if view.side == "edge":
            type(self).edge_params = view.params["edge"]

    def edge_setup(self, rng):
        return dict(self.view.params), {}

    def cloud_setup(self, uplink, rng):
        return super().cloud_setup({"edge": type(self).edge_params}, rng)
