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
    send = jnp.array([True, True, True, False, False])
    delivered, per_row = Channel(codec).transmit_rows(Rows({"a": X}, mask), send)
    # a sent row carries its payload where its mask is set, else one flag byte; an unsent row is free
    assert per_row.tolist() == [hand_bytes(codec, 7), 1, hand_bytes(codec, 7), 0, 0]
    arrived = np.asarray(mask & send)
    assert np.all(np.asarray(delivered.data["a"])[~arrived] == 0)  # rows not carried never arrive
    assert np.array_equal(np.asarray(delivered.mask), arrived)


def test_send_gate_and_static_bytes():
    ch = Channel("int8")
    _, off = ch.transmit({"w": X}, False)
    assert int(off) == 0
    assert static_bytes({"w": X}, "int8") == 35 + 8
    # every row sent, plus the mask: min(ceil(5 / 8) = 1 byte of bitmap, 5 row ids x 2 bytes)
    assert static_bytes(Rows({"a": X}, jnp.zeros(5, bool)), "fp16") == 5 * 7 * 2 + 1


@pytest.mark.parametrize("k,want", [(4096, 512), (300, 512), (256, 512), (255, 510), (10, 20), (0, 0)])
def test_rows_mask_is_billed(k, want):
    """A Rows mask tells the receiver which rows came: it is billed as a bitmap
    (ceil(n / 8) bytes) or a list of 2-byte row ids, whichever is smaller."""
    bits = jnp.zeros(4096, bool).at[:k].set(True)
    got, nbytes = jax.jit(lambda b: Channel("raw").transmit(Rows({}, b), True))(bits)
    assert int(nbytes) == want == min(4096 // 8, 2 * k)
    assert np.array_equal(np.asarray(got.mask), np.asarray(bits))   # the mask is what arrives
    # with a payload: each carried row's bytes plus the mask
    data = jnp.ones((4096, 3), jnp.float32)
    _, nbytes = Channel("raw").transmit(Rows({"v": data}, bits), True)
    assert int(nbytes) == k * 3 * 4 + want
    # nothing sent: nothing billed
    assert int(Channel("raw").transmit(Rows({}, bits), False)[1]) == 0


def test_mask_bytes_row_ids_widen_past_65536_rows():
    from lsbench.metering.channel import mask_bytes
    assert int(mask_bytes(65_536, 3)) == 6 and int(mask_bytes(65_537, 3)) == 12
    assert int(mask_bytes(100_000, 10**5)) == 12_500


def test_per_row_transport_bills_flags_not_masks():
    """Inference: each sent row is its own message; a sent row with a Rows leaf whose
    mask is off for it pays ceil(L / 8) flag bytes (L = its Rows leaves)."""
    send = jnp.array([True, True, False, True])
    msg = {"a": Rows(jnp.ones((4, 2), jnp.float32), jnp.array([True, False, True, False])),
           "b": jnp.ones((4,), jnp.int32)}
    got, per_row = Channel("raw").transmit_rows_tree(msg, send)
    assert per_row.tolist() == [8 + 4, 4 + 1, 0, 4 + 1]
    assert np.asarray(got["a"].data)[1].sum() == 0 and np.asarray(got["b"])[2] == 0


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
