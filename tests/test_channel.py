"""The channel bills exactly the encoded payload, per direction and codec."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsbench.api import Rows
from lsbench.metering.channel import Channel, static_bytes
from lsbench.metering.codecs import CodecError, get_codec

X = jnp.asarray(np.random.default_rng(0).normal(size=(5, 7)), jnp.float32)  # 35 floats


def hand_bytes(codec, n):
    """Hand-computed wire size of n float32 values under each codec."""
    if codec in ("raw", "fp32"):
        return 4 * n
    if codec in ("fp16", "bf16"):
        return 2 * n
    if codec == "int8":
        return n + 8
    if codec == "int4":
        return math.ceil(n / 2) + 8
    frac = float(codec.split(":")[1])
    k = max(1, math.ceil(frac * n))
    return 8 * k


CODECS = ["raw", "fp32", "fp16", "bf16", "int8", "int4", "topk:0.1", "topk:0.5"]


@pytest.mark.parametrize("codec", CODECS)
def test_whole_message_bytes(codec):
    msg = {"w": X, "step": jnp.int32(3), "flag": jnp.zeros((4,), bool)}
    _, nbytes = jax.jit(lambda m: Channel(codec).transmit(m, True))(msg)
    assert int(nbytes) == hand_bytes(codec, 35) + 4 + 4  # int and bool leaves travel raw


@pytest.mark.parametrize("codec", CODECS)
def test_rows_billed_per_sent_row(codec):
    mask = jnp.array([True, False, True, True, False])
    delivered, per_row = Channel(codec).transmit_rows(Rows({"a": X}, mask))
    assert per_row.tolist() == [hand_bytes(codec, 7) if m else 0 for m in mask.tolist()]
    assert np.all(np.asarray(delivered.data["a"])[~np.asarray(mask)] == 0)  # unsent rows never arrive


def test_send_gate_and_static_bytes():
    ch = Channel("int8")
    _, off = ch.transmit({"w": X}, False)
    assert int(off) == 0
    assert static_bytes({"w": X}, "int8") == 35 + 8
    assert static_bytes(Rows({"a": X}, jnp.zeros(5, bool)), "fp16") == 5 * 7 * 2


@pytest.mark.parametrize("codec,tol", [("fp16", 1e-2), ("bf16", 5e-2), ("int8", 0.02), ("int4", 0.35)])
def test_decoded_error_is_real_but_bounded(codec, tol):
    got, _ = Channel(codec).transmit({"w": X}, True)
    err = float(jnp.abs(got["w"] - X).max())
    span = float(X.max() - X.min())
    assert err <= tol * span
    if codec.startswith("int"):
        assert err > 0  # quantisation is applied, not skipped


def test_topk_keeps_largest():
    got, _ = Channel("topk:0.2").transmit({"w": X}, True)
    kept = np.flatnonzero(np.asarray(got["w"]).ravel())
    k = math.ceil(0.2 * 35)
    assert len(kept) == k
    top = np.argsort(-np.abs(np.asarray(X).ravel()))[:k]
    assert set(kept) == set(top)


def test_bad_codec_names():
    for bad in ("int3", "topk:x", "topk:1.5"):
        with pytest.raises(CodecError):
            get_codec(bad)
