"""The signed epoch descriptor: round trips, and every tampered, stale or foreign one is refused."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from hexpsi.protocol.crypto.keys import epoch_keys
from hexpsi.protocol.epoch.descriptor import Descriptor, SignedDescriptor
from hexpsi.protocol.errors import (
    InputError,
    LocalProtocolError,
    RemoteProtocolError,
    StaleError,
    VerificationError,
)
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS
from hexpsi.protocol.snapshot.gcs import GcsParams
from tests.protocol.helpers import NOW, signing_key

EPOCH_ID = bytes(range(16))
KEY = signing_key("coalition")


@functools.cache
def public_keys(res: int, res_min: int) -> dict[int, bytes]:
    keys = epoch_keys(b"k" * 32, EPOCH_ID, res=res, res_min=res_min)
    return {r: key.public for r, key in keys.items()}


def make(**changes: Any) -> Descriptor:
    fields: dict[str, Any] = {
        "node": "coalition",
        "epoch_id": EPOCH_ID,
        "sequence": 3,
        "created_at": NOW,
        "valid_until": NOW + 3600.0,
        "res": 9,
        "res_min": 7,
        "public_keys": public_keys(9, 7),
        "snapshot_params": GcsParams.choose(count=1024, bits=52).encode(),
        "snapshot_root": b"r" * 32,
        "snapshot_bytes": 5571,
        "max_query_tokens": 4096,
        "output_policy": "cells",
    }
    fields.update(changes)
    return Descriptor(**fields)


SIGNED = SignedDescriptor.sign(make(), KEY)


def verify(
    encoded: bytes = SIGNED.encoded,
    signature: bytes = SIGNED.signature,
    *,
    now: float = NOW,
    max_skew: float = CLOCK_SKEW_SECONDS,
    key: SigningKey = KEY,
    **options: Any,
) -> SignedDescriptor:
    return SignedDescriptor.verify(
        encoded, signature, key.verify_key, now=now, max_skew=max_skew, **options
    )


@st.composite
def descriptors(draw: st.DrawFn) -> Descriptor:
    res = draw(st.integers(min_value=7, max_value=9))
    res_min = draw(st.integers(min_value=res - 2, max_value=res))
    created = draw(st.floats(min_value=0, max_value=4e9))
    return make(
        node=draw(st.text(min_size=1, max_size=15)),
        epoch_id=draw(st.binary(min_size=16, max_size=16)),
        sequence=draw(st.integers(min_value=0, max_value=(1 << 64) - 1)),
        created_at=created,
        valid_until=created + draw(st.floats(min_value=1, max_value=1e7)),
        res=res,
        res_min=res_min,
        public_keys=public_keys(res, res_min),
        snapshot_root=draw(st.binary(min_size=32, max_size=32)),
        snapshot_bytes=draw(st.integers(min_value=0, max_value=(1 << 64) - 1)),
        max_query_tokens=draw(st.integers(min_value=1, max_value=(1 << 32) - 1)),
        output_policy=draw(st.sampled_from(["cells", "count"])),
    )


@settings(max_examples=30, deadline=None)
@given(descriptors())
def test_encode_decode_round_trip(descriptor: Descriptor) -> None:
    encoded = descriptor.encode()
    assert Descriptor.decode(encoded) == descriptor
    assert Descriptor.decode(encoded).encode() == encoded


def test_sign_verify_round_trip() -> None:
    verified = verify()
    assert verified == SIGNED
    assert verified.descriptor == make()
    assert verified.digest == SIGNED.digest
    assert len(SIGNED.signature) == 64


def test_digest_binds_the_encoding() -> None:
    other = SignedDescriptor.sign(make(sequence=4), KEY)
    assert other.digest != SIGNED.digest
    resigned = SignedDescriptor.sign(make(), SigningKey(b"\1" * 32))
    assert resigned.digest == SIGNED.digest  # the digest is of the signed bytes, not the key


def test_tampering_any_byte_of_the_encoding_is_caught() -> None:
    for index in range(len(SIGNED.encoded)):
        tampered = bytearray(SIGNED.encoded)
        tampered[index] ^= 0x01
        with pytest.raises(VerificationError):
            verify(bytes(tampered))


def test_tampering_any_byte_of_the_signature_is_caught() -> None:
    for index in range(len(SIGNED.signature)):
        for flip in (0x01, 0x80):
            tampered = bytearray(SIGNED.signature)
            tampered[index] ^= flip
            with pytest.raises(VerificationError):
                verify(signature=bytes(tampered))


@pytest.mark.parametrize(
    ("encoded", "signature"),
    [
        (SIGNED.encoded[:-1], SIGNED.signature),
        (SIGNED.encoded + b"\0", SIGNED.signature),
        (SIGNED.encoded, SIGNED.signature[:-1]),
        (SIGNED.encoded, SIGNED.signature + b"\0"),
        (SIGNED.encoded, b""),
        (b"", SIGNED.signature),
    ],
    ids=["short body", "long body", "short signature", "long signature", "no signature", "empty"],
)
def test_wrong_lengths_are_verification_errors(encoded: bytes, signature: bytes) -> None:
    with pytest.raises(VerificationError):
        verify(encoded, signature)


def test_another_nodes_key_is_refused() -> None:
    with pytest.raises(VerificationError):
        verify(key=signing_key("somebody else"))


def test_descriptor_for_another_node_is_refused() -> None:
    assert verify(expected_node="coalition") == SIGNED
    with pytest.raises(VerificationError, match="expected 'russia'"):
        verify(expected_node="russia")


def test_expired_descriptor_is_stale() -> None:
    until = SIGNED.descriptor.valid_until
    assert verify(now=until) == SIGNED
    with pytest.raises(StaleError, match="expired"):
        verify(now=until + 0.001)


def test_future_dated_descriptor_is_stale_beyond_the_clock_skew() -> None:
    created = SIGNED.descriptor.created_at
    assert verify(now=created - CLOCK_SKEW_SECONDS) == SIGNED
    with pytest.raises(StaleError, match="future"):
        verify(now=created - CLOCK_SKEW_SECONDS - 1)


def test_the_skew_allowed_is_the_callers() -> None:
    created = SIGNED.descriptor.created_at
    assert verify(now=created - 3600, max_skew=3600) == SIGNED
    with pytest.raises(StaleError, match="future"):
        verify(now=created - 61, max_skew=60)


def test_older_sequence_is_a_replay() -> None:
    assert verify(newer_than=2) == SIGNED
    assert verify(newer_than=3) == SIGNED  # the one already accepted, fetched again
    with pytest.raises(StaleError, match="replay"):
        verify(newer_than=4)


def test_freshness_is_skipped_only_by_name() -> None:
    """Evidence and kept descriptors are judged without a clock, by a call that says so."""
    long_after = SIGNED.descriptor.valid_until + 10 * 86400
    with pytest.raises(StaleError):
        verify(now=long_after)
    again = SignedDescriptor.verify_without_freshness(
        SIGNED.encoded, SIGNED.signature, KEY.verify_key, expected_node="coalition"
    )
    assert again == SIGNED
    with pytest.raises(VerificationError):
        SignedDescriptor.verify_without_freshness(
            SIGNED.encoded, SIGNED.signature, signing_key("somebody else").verify_key
        )
    with pytest.raises(VerificationError, match="expected 'russia'"):
        SignedDescriptor.verify_without_freshness(
            SIGNED.encoded, SIGNED.signature, KEY.verify_key, expected_node="russia"
        )


def test_a_signed_but_malformed_descriptor_is_a_verification_error() -> None:
    body = bytearray(make().encode())
    # created_at follows label, node, epoch id and sequence; valid_until follows it.
    # Copy created_at over valid_until: a descriptor valid for no time at all.
    start = len(b"hexpsi/v1/descriptor") + 4 + len("coalition") + 16 + 8
    body[start + 8 : start + 16] = body[start : start + 8]
    signature = KEY.sign(bytes(body)).signature
    with pytest.raises(VerificationError, match="malformed"):
        verify(bytes(body), signature)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"epoch_id": bytes(15)}, LocalProtocolError),
        ({"public_keys": public_keys(9, 8)}, LocalProtocolError),
        ({"res_min": 6}, LocalProtocolError),
        ({"output_policy": "everything"}, LocalProtocolError),
        ({"valid_until": NOW}, LocalProtocolError),
        ({"snapshot_root": b"r" * 31}, LocalProtocolError),
        ({"node": "n" * 64}, LocalProtocolError),
        ({"node": "é" * 32}, LocalProtocolError),
        ({"sequence": -1}, LocalProtocolError),
        ({"snapshot_bytes": 1 << 64}, LocalProtocolError),
        ({"max_query_tokens": 1 << 32}, LocalProtocolError),
        ({"valid_until": float("inf")}, LocalProtocolError),
        ({"snapshot_params": bytes(1025)}, LocalProtocolError),
        ({"res": 16}, InputError),
        ({"res_min": 10}, InputError),
    ],
)
def test_inconsistent_descriptors_cannot_be_built(
    changes: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        make(**changes)


def test_longest_node_name_round_trips() -> None:
    descriptor = make(node="n" * 63)
    assert Descriptor.decode(descriptor.encode()) == descriptor


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_decoding_random_bytes_raises_only_protocol_errors(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        Descriptor.decode(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_decoding_mutated_encodings_raises_only_protocol_errors(data: st.DataObject) -> None:
    encoded = bytearray(SIGNED.encoded)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = data.draw(st.integers(min_value=0, max_value=len(encoded)))
        if kind == "flip" and at < len(encoded):
            encoded[at] = data.draw(st.integers(min_value=0, max_value=255))
        elif kind == "cut":
            del encoded[at:]
        elif kind == "insert":
            encoded[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif at < len(encoded):
            del encoded[at]
    try:
        decoded = Descriptor.decode(bytes(encoded))
    except RemoteProtocolError:
        return
    assert decoded.encode() == bytes(encoded)


def test_descriptor_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SIGNED.descriptor.sequence = 9  # type: ignore[misc]
