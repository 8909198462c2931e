"""The canonical encoding: exact round trips, and every malformation is the peer's fault."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hexpsi.protocol.encoding import Reader, Writer, tagged_hash
from hexpsi.protocol.errors import RemoteProtocolError

FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "u8": st.integers(min_value=0, max_value=(1 << 8) - 1),
    "u16": st.integers(min_value=0, max_value=(1 << 16) - 1),
    "u32": st.integers(min_value=0, max_value=(1 << 32) - 1),
    "u64": st.integers(min_value=0, max_value=(1 << 64) - 1),
    "f64": st.floats(allow_nan=False, allow_infinity=False),
    "blob": st.binary(max_size=40),
    "text": st.text(max_size=20),
    "fixed": st.binary(min_size=5, max_size=5),
}
records = st.lists(
    st.sampled_from(sorted(FIELDS)).flatmap(lambda kind: st.tuples(st.just(kind), FIELDS[kind])),
    max_size=12,
)


def write(record: list[tuple[str, Any]]) -> bytes:
    writer = Writer()
    for kind, value in record:
        if kind == "fixed":
            writer.fixed(value, 5)
        else:
            getattr(writer, kind)(value)
    return writer.getvalue()


def read(data: bytes, kinds: list[str]) -> list[Any]:
    reader = Reader(data, what="record")
    values = [reader.fixed(5) if kind == "fixed" else getattr(reader, kind)() for kind in kinds]
    reader.end()
    return values


@settings(max_examples=100)
@given(records)
def test_round_trip_is_exact(record: list[tuple[str, Any]]) -> None:
    data = write(record)
    kinds = [kind for kind, _ in record]
    assert read(data, kinds) == [value for _, value in record]
    assert write(list(zip(kinds, read(data, kinds), strict=True))) == data


@settings(max_examples=100)
@given(records, st.data())
def test_truncated_or_extended_encodings_raise_remote_protocol_error(
    record: list[tuple[str, Any]], data: st.DataObject
) -> None:
    encoded = write(record)
    kinds = [kind for kind, _ in record]
    if encoded:
        cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
        with pytest.raises(RemoteProtocolError):
            read(encoded[:cut], kinds)
    extra = data.draw(st.binary(min_size=1, max_size=8))
    with pytest.raises(RemoteProtocolError):
        read(encoded + extra, kinds)


@settings(max_examples=200)
@given(st.binary(max_size=64), st.lists(st.sampled_from(sorted(FIELDS)), max_size=8))
def test_random_bytes_decode_or_raise_remote_protocol_error(data: bytes, kinds: list[str]) -> None:
    try:
        values = read(data, kinds)
    except RemoteProtocolError:
        return
    assert write(list(zip(kinds, values, strict=True))) == data


def test_integers_are_big_endian_and_fixed_width() -> None:
    data = Writer().u8(1).u16(2).u32(3).u64(4).getvalue()
    assert data == bytes([1, 0, 2, 0, 0, 0, 3]) + (4).to_bytes(8, "big")
    assert Writer().f64(1.5).getvalue() == struct.pack(">d", 1.5)
    assert Writer().blob(b"ab").text("é").getvalue() == b"\0\0\0\2ab\0\0\0\2\xc3\xa9"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_neither_encode_nor_decode(value: float) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        Writer().f64(value)
    with pytest.raises(RemoteProtocolError):
        Reader(struct.pack(">d", value), what="x").f64()


def test_wrong_fixed_sizes_are_caller_errors() -> None:
    with pytest.raises(ValueError, match="expected 4 bytes"):
        Writer().fixed(b"abc", 4)


def test_oversized_blob_is_refused_before_reading_it() -> None:
    data = Writer().blob(b"x" * 10).getvalue()
    with pytest.raises(RemoteProtocolError, match="max 9"):
        Reader(data, what="x").blob(max_size=9)
    assert Reader(data, what="x").blob(max_size=10) == b"x" * 10
    claims_a_lot = (1 << 32) - 1
    with pytest.raises(RemoteProtocolError):
        Reader(claims_a_lot.to_bytes(4, "big"), what="x").blob()


def test_text_must_be_utf8() -> None:
    with pytest.raises(RemoteProtocolError, match="UTF-8"):
        Reader(Writer().blob(b"\xff\xfe").getvalue(), what="x").text()


def test_expect_checks_the_literal() -> None:
    Reader(b"hexpsi", what="x").expect(b"hexpsi")
    with pytest.raises(RemoteProtocolError):
        Reader(b"hexpsy", what="x").expect(b"hexpsi")
    with pytest.raises(RemoteProtocolError):
        Reader(b"hex", what="x").expect(b"hexpsi")


def test_errors_name_what_was_read() -> None:
    with pytest.raises(RemoteProtocolError, match="receipt is truncated"):
        Reader(b"", what="receipt").u8()
    with pytest.raises(RemoteProtocolError, match="query has 1 extra bytes"):
        Reader(b"\0", what="query").end()


def test_tagged_hash_separates_labels_and_part_boundaries() -> None:
    base = tagged_hash(b"hexpsi/v1/a", b"xy", b"z")
    assert len(base) == 32
    assert base == tagged_hash(b"hexpsi/v1/a", b"xy", b"z")
    assert base != tagged_hash(b"hexpsi/v1/b", b"xy", b"z")
    assert base != tagged_hash(b"hexpsi/v1/a", b"x", b"yz")
    assert base != tagged_hash(b"hexpsi/v1/a", b"xyz")
    assert base != tagged_hash(b"hexpsi/v1/axy", b"z")
    assert tagged_hash(b"l") != tagged_hash(b"l", b"")
