"""Messages: canonical round trips, malformed bytes are refused, receipts and transcripts bind."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hexpsi.protocol.check.messages import (
    ElementGroup,
    EvaluatedGroup,
    Query,
    Receipt,
    Response,
    transcript_hash,
)
from hexpsi.protocol.errors import RemoteProtocolError, VerificationError
from tests.protocol.helpers import signing_key

KEY = signing_key("coalition")
elements = st.binary(min_size=32, max_size=32).map(lambda e: e[:31] + bytes([e[31] & 0x7F]))
session_ids = st.binary(min_size=16, max_size=16)
digests = st.binary(min_size=32, max_size=32)


@st.composite
def resolution_sets(draw: st.DrawFn) -> list[int]:
    return sorted(draw(st.sets(st.integers(min_value=0, max_value=15), max_size=4)))


@st.composite
def queries(draw: st.DrawFn) -> Query:
    groups = tuple(
        ElementGroup(r, tuple(draw(st.lists(elements, max_size=4))))
        for r in draw(resolution_sets())
    )
    return Query(draw(session_ids), draw(digests), groups)


@st.composite
def receipts(draw: st.DrawFn) -> Receipt:
    return Receipt(
        responder=draw(st.text(max_size=10)),
        proposer=draw(st.text(max_size=10)),
        epoch_id=draw(st.binary(min_size=16, max_size=16)),
        session_id=draw(session_ids),
        issued_at=draw(st.floats(allow_nan=False, allow_infinity=False)),
        area_km2=draw(st.floats(min_value=0, max_value=1e6)),
        transcript_hash=draw(digests),
    ).signed(KEY)


@st.composite
def responses(draw: st.DrawFn) -> Response:
    groups = tuple(
        EvaluatedGroup(
            r,
            tuple(draw(st.lists(elements, max_size=4))),
            draw(st.binary(min_size=64, max_size=64)),
        )
        for r in draw(resolution_sets())
    )
    receipt = draw(receipts())
    return Response(receipt.session_id, groups, receipt)


@settings(max_examples=60)
@given(queries())
def test_query_round_trip(query: Query) -> None:
    encoded = query.encode()
    assert Query.decode(encoded) == query
    header = 4 + len(b"hexpsi/v1/query") + 16 + 32 + 1
    assert len(encoded) == header + sum(1 + 4 + 32 * len(g.elements) for g in query.groups)
    assert query.element_count == sum(len(g.elements) for g in query.groups)
    assert query.group_sizes() == {g.resolution: len(g.elements) for g in query.groups}


@settings(max_examples=60, deadline=None)
@given(responses())
def test_response_and_receipt_round_trip(response: Response) -> None:
    assert Response.decode(response.encode()) == response
    assert Receipt.decode(response.receipt.encode()) == response.receipt


DECODERS: dict[str, Callable[[bytes], object]] = {
    "query": Query.decode,
    "response": Response.decode,
    "receipt": Receipt.decode,
}


@settings(max_examples=200)
@given(st.sampled_from(sorted(DECODERS)), st.binary(max_size=300))
def test_random_bytes_raise_only_remote_protocol_errors(kind: str, data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        DECODERS[kind](data)


def encodings(data: st.DataObject, kind: str) -> bytes:
    if kind == "query":
        return data.draw(queries()).encode()
    if kind == "response":
        return data.draw(responses()).encode()
    return data.draw(receipts()).encode()


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(DECODERS)), st.data())
def test_truncated_encodings_raise_remote_protocol_errors(kind: str, data: st.DataObject) -> None:
    encoded = encodings(data, kind)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    with pytest.raises(RemoteProtocolError):
        DECODERS[kind](encoded[:cut])
    with pytest.raises(RemoteProtocolError):
        DECODERS[kind](encoded + b"\0")


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(DECODERS)), st.data())
def test_mutated_encodings_decode_canonically_or_raise(kind: str, data: st.DataObject) -> None:
    encoded = bytearray(encodings(data, kind))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        at = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
        encoded[at] = data.draw(st.integers(min_value=0, max_value=255))
    try:
        decoded = DECODERS[kind](bytes(encoded))
    except RemoteProtocolError:
        return
    assert decoded.encode() == bytes(encoded)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "build",
    [
        lambda: ElementGroup(16, ()),
        lambda: ElementGroup(-1, ()),
        lambda: ElementGroup(9, (bytes(31),)),
        lambda: ElementGroup(9, (bytes(32), bytes(33))),
        lambda: ElementGroup.from_joined(9, bytes(65)),
        lambda: EvaluatedGroup(9, (bytes(32),), bytes(63)),
        lambda: Query(bytes(15), bytes(32), ()),
        lambda: Query(bytes(16), bytes(31), ()),
        lambda: Query(bytes(16), bytes(32), (ElementGroup(9, ()), ElementGroup(8, ()))),
        lambda: Query(bytes(16), bytes(32), (ElementGroup(9, ()), ElementGroup(9, ()))),
    ],
    ids=[
        "resolution 16",
        "resolution -1",
        "short element",
        "long element",
        "ragged join",
        "short proof",
        "short session id",
        "short digest",
        "descending groups",
        "repeated group",
    ],
)
def test_malformed_messages_cannot_be_built(build: Callable[[], object]) -> None:
    with pytest.raises(RemoteProtocolError):
        build()


def test_response_groups_must_ascend() -> None:
    receipt = Receipt("a", "b", bytes(16), bytes(16), 1.0, 1.0, bytes(32)).signed(KEY)
    group = EvaluatedGroup(9, (), bytes(64))
    with pytest.raises(RemoteProtocolError):
        Response(bytes(16), (group, group), receipt)
    with pytest.raises(RemoteProtocolError):
        Response(bytes(15), (group,), receipt)


def test_encoded_query_rejects_an_unknown_label() -> None:
    encoded = Query(bytes(16), bytes(32), ()).encode()
    with pytest.raises(RemoteProtocolError, match="not a hexpsi v1 or v2 query"):
        Query.decode(encoded.replace(b"hexpsi/v1/query", b"hexpsi/v9/query"))
    # A v2 label on a query without timed groups is refused, not read as v1.
    with pytest.raises(RemoteProtocolError):
        Query.decode(encoded.replace(b"hexpsi/v1/query", b"hexpsi/v2/query"))


RECEIPT = Receipt(
    responder="coalition",
    proposer="russia",
    epoch_id=bytes(range(16)),
    session_id=bytes(range(16, 32)),
    issued_at=1_750_000_000.5,
    area_km2=12.25,
    transcript_hash=bytes(range(32, 64)),
).signed(KEY)


def test_receipt_signature_verifies_with_the_responders_key_only() -> None:
    RECEIPT.verify(KEY.verify_key)
    assert len(RECEIPT.signature) == 64
    with pytest.raises(VerificationError):
        RECEIPT.verify(signing_key("russia").verify_key)
    with pytest.raises(VerificationError):
        dataclasses.replace(RECEIPT, signature=b"").verify(KEY.verify_key)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("responder", "coalitio"),
        ("proposer", "russian"),
        ("epoch_id", bytes(16)),
        ("session_id", bytes(16)),
        ("issued_at", 1_750_000_000.25),
        ("area_km2", 12.5),
        ("transcript_hash", bytes(32)),
    ],
)
def test_changing_any_receipt_field_breaks_its_signature(field: str, value: Any) -> None:
    changed = dataclasses.replace(RECEIPT, **{field: value})
    assert changed.receipt_id != RECEIPT.receipt_id
    with pytest.raises(VerificationError):
        changed.verify(KEY.verify_key)
    with pytest.raises(VerificationError):
        Receipt.decode(changed.encode()).verify(KEY.verify_key)


def test_flipping_any_bit_of_an_encoded_receipt_is_caught() -> None:
    encoded = RECEIPT.encode()
    for index in range(len(encoded)):
        tampered = bytearray(encoded)
        tampered[index] ^= 0x04
        with pytest.raises(RemoteProtocolError):
            Receipt.decode(bytes(tampered)).verify(KEY.verify_key)


def test_receipt_id_is_stable_and_short() -> None:
    assert RECEIPT.receipt_id == Receipt.decode(RECEIPT.encode()).receipt_id
    assert len(RECEIPT.receipt_id) == 32
    assert int(RECEIPT.receipt_id, 16) >= 0


def element(seed: int) -> bytes:
    return bytes([seed]) * 32


QUERY = Query(
    bytes(range(16)),
    bytes(range(32)),
    (ElementGroup(7, (element(1), element(2))), ElementGroup(9, (element(3),))),
)
GROUPS = (
    EvaluatedGroup(7, (element(4), element(5)), bytes([6]) * 64),
    EvaluatedGroup(9, (element(7),), bytes([8]) * 64),
)


def transcript(**changes: Any) -> bytes:
    arguments: dict[str, Any] = {
        "descriptor_digest": bytes(range(32)),
        "proposer": "russia",
        "query": QUERY,
        "groups": GROUPS,
    }
    arguments.update(changes)
    return transcript_hash(**arguments)


def replace_element(group: Any, index: int, value: bytes) -> Any:
    items = list(group.elements)
    items[index] = value
    return dataclasses.replace(group, elements=tuple(items))


def test_transcript_changes_when_any_element_changes() -> None:
    base = transcript()
    assert base == transcript()
    variants = {
        "descriptor": transcript(descriptor_digest=bytes(32)),
        "proposer": transcript(proposer="russia2"),
        "session": transcript(query=dataclasses.replace(QUERY, session_id=bytes(16))),
        "query digest": transcript(query=dataclasses.replace(QUERY, descriptor_digest=bytes(32))),
        "evaluated proof": transcript(
            groups=(dataclasses.replace(GROUPS[0], proof=bytes(64)), GROUPS[1])
        ),
        "evaluated resolution": transcript(
            groups=(GROUPS[0], dataclasses.replace(GROUPS[1], resolution=8))
        ),
        "evaluated dropped": transcript(groups=GROUPS[:1]),
        "query resolution": transcript(
            query=dataclasses.replace(
                QUERY, groups=(QUERY.groups[0], dataclasses.replace(QUERY.groups[1], resolution=8))
            )
        ),
    }
    for g, group in enumerate(QUERY.groups):
        for i in range(len(group.elements)):
            groups = list(QUERY.groups)
            groups[g] = replace_element(group, i, element(99))
            variants[f"query element {g}/{i}"] = transcript(
                query=dataclasses.replace(QUERY, groups=tuple(groups))
            )
    for g, evaluated in enumerate(GROUPS):
        for i in range(len(evaluated.elements)):
            changed = list(GROUPS)
            changed[g] = replace_element(evaluated, i, element(99))
            variants[f"evaluated element {g}/{i}"] = transcript(groups=tuple(changed))
    for name, value in variants.items():
        assert value != base, name
    assert len(set(variants.values())) == len(variants)
