"""The Golomb-coded snapshot: exact round trips, strict decoding, membership and openings."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import InputError, LocalProtocolError, RemoteProtocolError, VerificationError
from protocol.gcs import (
    GcsParams,
    OpenedBlock,
    Opening,
    SnapshotReader,
    decode_block,
    encode_blocks,
    optimal_golomb,
    snapshot_digest,
    verify_opening,
)
from protocol.merkle import MerkleBuilder
from protocol.padding import size_bucket, truncation_bits


def build(values: list[int], params: GcsParams) -> tuple[list[bytes], bytes]:
    """The responder's side: stream the blocks into the tree, publish the digest."""
    blocks = []
    builder = MerkleBuilder()
    for block in encode_blocks(values, params):
        builder.add_block(block)
        blocks.append(block)
    return blocks, snapshot_digest(params, builder.root())


def read(blocks: list[bytes], params: GcsParams, root: bytes) -> SnapshotReader:
    reader = SnapshotReader(params, blocks.__getitem__)
    reader.add_chunk(0, blocks)
    reader.finish(root)
    return reader


@st.composite
def value_sets(draw: st.DrawFn, max_size: int = 400) -> tuple[list[int], GcsParams]:
    """Sorted distinct λ-bit sets, λ in 8..80, with block sizes and Golomb parameters
    around the optimum (powers of two among them, so Rice coding is covered too)."""
    bits = draw(st.integers(min_value=8, max_value=80))
    values = sorted(
        draw(st.sets(st.integers(0, (1 << bits) - 1), max_size=min(max_size, 1 << bits)))
    )
    block_size = draw(st.sampled_from([1, 2, 3, 8, 31, 64, 256]))
    optimal = optimal_golomb(len(values), bits)
    golomb = draw(
        st.sampled_from(
            [optimal, optimal * 3, max(1, optimal // 5), 1 << max(0, optimal.bit_length() - 1)]
        )
    )
    return values, GcsParams(bits, len(values), block_size, min(golomb, max(1, (1 << bits) - 1)))


def random_values(count: int, bits: int, seed: int) -> list[int]:
    rnd = random.Random(seed)
    return (
        sorted(rnd.sample(range(1 << bits), count))
        if bits <= 24
        else sorted({rnd.getrandbits(bits) for _ in range(count)})
    )


# --- parameters -----------------------------------------------------------------------


@settings(max_examples=100)
@given(value_sets(max_size=50))
def test_params_round_trip_through_canonical_bytes(case: tuple[list[int], GcsParams]) -> None:
    _, params = case
    data = params.encode()
    assert len(data) == 30
    assert GcsParams.decode(data) == params


@pytest.mark.parametrize(
    "fields",
    [
        (2, 40, 10, 256, 5),  # unknown version
        (1, 0, 0, 256, 1),  # λ = 0
        (1, 129, 10, 256, 5),  # λ beyond 128
        (1, 8, 257, 256, 5),  # more values than 8-bit integers
        (1, 40, 10, 0, 5),  # empty blocks
        (1, 40, 10, 256, 0),  # Golomb parameter 0
        (1, 8, 10, 256, 256),  # Golomb parameter ≥ 2**λ
    ],
)
def test_params_decode_refuses_bad_fields(fields: tuple[int, int, int, int, int]) -> None:
    version, bits, count, block_size, golomb = fields
    data = struct.pack(">BBQI16s", version, bits, count, block_size, golomb.to_bytes(16, "big"))
    with pytest.raises(RemoteProtocolError):
        GcsParams.decode(data)


def test_params_decode_refuses_wrong_length() -> None:
    data = GcsParams.choose(count=10, bits=40).encode()
    for bad in (data[:-1], data + b"\x00", b""):
        with pytest.raises(RemoteProtocolError):
            GcsParams.decode(bad)


def test_optimal_golomb_beats_its_neighbours_and_rice() -> None:
    count, bits = 20_000, 40
    values = random_values(count, bits, seed=1)
    optimal = optimal_golomb(count, bits)
    rice = 1 << round(math.log2((1 << bits) / count * math.log(2)))

    def size(golomb: int) -> int:
        params = GcsParams(bits, count, 256, golomb)
        return sum(map(len, encode_blocks(values, params)))

    best = size(optimal)
    assert best <= size(rice)
    assert best <= size(optimal * 2)
    assert best <= size(optimal // 2)


# --- block coding ---------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(value_sets())
def test_blocks_round_trip_exactly(case: tuple[list[int], GcsParams]) -> None:
    values, params = case
    blocks = list(encode_blocks(values, params))
    assert len(blocks) == params.block_count
    decoded: list[int] = []
    for index, block in enumerate(blocks):
        assert len(block) <= params.max_block_bytes(index)
        decoded += decode_block(block, params, index)
    assert decoded == values
    assert sum(map(len, blocks)) <= params.max_snapshot_bytes()


def test_block_format_known_answers() -> None:
    """λ=8, M=1 (pure unary): 5 in 8 bits, gaps-1 of 0 and 1 as '1' and '01', zero padding."""
    unary = GcsParams(bits=8, count=3, block_size=256, golomb=1)
    assert list(encode_blocks([5, 6, 8], unary)) == [bytes([0b00000101, 0b10100000])]
    # M=3 truncated binary: remainder 0 -> '0', 1 -> '10', 2 -> '11'; gaps-1 are 0, 3, 3.
    golomb3 = GcsParams(bits=8, count=4, block_size=256, golomb=3)
    assert list(encode_blocks([1, 2, 6, 10], golomb3)) == [bytes([0b00000001, 0b10010010])]
    assert decode_block(bytes([0b00000001, 0b10010010]), golomb3, 0) == [1, 2, 6, 10]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (bytes([0b00000101]), "truncated"),
        (bytes([0b00000101, 0b10100000, 0]), "overlong"),
        (bytes([0b00000101, 0b10100001]), "nonzero padding"),
        (bytes([0b00000101, 0b00000000]), "unary run never ends"),
        (b"", "empty"),
    ],
)
def test_malformed_blocks_are_refused(data: bytes, why: str) -> None:
    unary = GcsParams(bits=8, count=3, block_size=256, golomb=1)
    with pytest.raises(RemoteProtocolError):
        decode_block(data, unary, 0)


def test_values_past_lambda_bits_are_refused() -> None:
    params = GcsParams(bits=8, count=2, block_size=256, golomb=1)
    with pytest.raises(RemoteProtocolError):
        decode_block(bytes([0xFF, 0x80]), params, 0)  # 255, then 256


def test_oversized_blocks_are_refused_unread() -> None:
    params = GcsParams(bits=8, count=2, block_size=256, golomb=1)
    limit = params.max_block_bytes(0)
    with pytest.raises(RemoteProtocolError, match="larger"):
        decode_block(bytes([1]) + b"\x00" * limit, params, 0)


def assert_canonical(blob: bytes, params: GcsParams) -> bool:
    """Bytes either fail to decode or are exactly the encoding of what they decode to."""
    try:
        values = decode_block(blob, params, 0)
    except RemoteProtocolError:
        return False
    assert values == sorted(set(values))
    assert all(0 <= value < 1 << params.bits for value in values)
    assert list(encode_blocks(values, params)) == [blob]
    return True


@settings(max_examples=200)
@given(st.integers(min_value=8, max_value=40), st.integers(min_value=1, max_value=12), st.data())
def test_arbitrary_bytes_decode_canonically_or_not_at_all(
    bits: int, count: int, data: st.DataObject
) -> None:
    params = GcsParams.choose(count=count, bits=bits, block_size=count)
    assert_canonical(data.draw(st.binary(max_size=params.max_block_bytes(0))), params)


@settings(max_examples=200)
@given(value_sets(max_size=40), st.data())
def test_bit_flips_never_decode_to_the_same_values(
    case: tuple[list[int], GcsParams], data: st.DataObject
) -> None:
    values, params = case
    single = GcsParams(params.bits, len(values), max(1, len(values)), params.golomb)
    if not values:
        return
    [block] = encode_blocks(values, single)
    bit = data.draw(st.integers(0, 8 * len(block) - 1))
    flipped = bytearray(block)
    flipped[bit // 8] ^= 0x80 >> (bit % 8)
    if assert_canonical(bytes(flipped), single):
        assert decode_block(bytes(flipped), single, 0) != values


@pytest.mark.parametrize(
    "values",
    [[3, 2], [2, 2], [-1, 4], [1 << 16], [1, 2], [1, 2, 3, 4]],
)
def test_encoder_refuses_unsorted_duplicate_out_of_range_or_miscounted(values: list[int]) -> None:
    params = GcsParams.choose(count=3, bits=16)
    with pytest.raises(InputError):
        list(encode_blocks(values, params))


def test_encoder_streams_one_block_at_a_time() -> None:
    params = GcsParams.choose(count=10_000, bits=40, block_size=256)
    consumed = 0

    def source() -> Iterator[int]:
        nonlocal consumed
        for value in random_values(10_000, 40, seed=2):
            consumed += 1
            yield value

    stream = encode_blocks(source(), params)
    first = next(stream)
    assert consumed <= params.block_size + 1
    assert decode_block(first, params, 0) == random_values(10_000, 40, seed=2)[:256]


# --- reading, membership, openings ----------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(value_sets(max_size=300), st.data())
def test_membership_and_openings_agree_with_a_python_set(
    case: tuple[list[int], GcsParams], data: st.DataObject
) -> None:
    values, params = case
    blocks, root = build(values, params)
    reader = read(blocks, params, root)
    members = set(values)
    probes = values[:: max(1, len(values) // 10)] + data.draw(
        st.lists(st.integers(0, (1 << params.bits) - 1), max_size=10)
    )
    for value in probes:
        assert reader.contains(value) == (value in members)
        opening = reader.open(value)
        assert verify_opening(root, params, value, opening) == (value in members)
        assert Opening.decode(opening.encode()) == opening


@pytest.fixture(scope="module")
def snapshot() -> tuple[list[int], GcsParams, list[bytes], bytes]:
    values = random_values(2000, 24, seed=3)
    params = GcsParams.choose(count=len(values), bits=24, block_size=64)
    blocks, root = build(values, params)
    return values, params, blocks, root


def non_members_worth_opening(values: list[int], params: GcsParams) -> dict[str, int]:
    """A value below everything, one inside a block, one between blocks, one past the end."""
    size = params.block_size
    inside = next(v + 1 for v in values[1:size] if v + 1 not in values[:size])
    return {
        "below": values[0] - 1,
        "inside": inside,
        "between": values[size - 1] + 1,
        "above": values[-1] + 1,
    }


def test_each_kind_of_opening_has_the_expected_shape(
    snapshot: tuple[list[int], GcsParams, list[bytes], bytes],
) -> None:
    values, params, blocks, root = snapshot
    reader = read(blocks, params, root)
    shapes = {
        name: [entry.index for entry in reader.open(value).blocks]
        for name, value in non_members_worth_opening(values, params).items()
    }
    last = params.block_count - 1
    assert shapes == {"below": [0], "inside": [0], "between": [0, 1], "above": [last]}
    assert [e.index for e in reader.open(values[700]).blocks] == [700 // 64]


def tampered(opening: Opening) -> dict[str, Opening]:
    """Every way of bending an opening that must make it fail."""
    first = opening.blocks[0]
    block = bytearray(first.block)
    block[len(block) // 2] ^= 0x10
    path = list(first.path)
    path[0] = bytes([path[0][0] ^ 1]) + path[0][1:]
    rest = opening.blocks[1:]
    variants = {
        "changed block byte": Opening((OpenedBlock(first.index, bytes(block), first.path), *rest)),
        "wrong index": Opening((OpenedBlock(first.index + 1, first.block, first.path), *rest)),
        "wrong path": Opening((OpenedBlock(first.index, first.block, tuple(path)), *rest)),
        "short path": Opening((OpenedBlock(first.index, first.block, first.path[1:]), *rest)),
    }
    if len(opening.blocks) == 2:
        variants["swapped blocks"] = Opening(opening.blocks[::-1])
        variants["neighbour dropped"] = Opening(opening.blocks[:1])
    return variants


@pytest.mark.parametrize("kind", ["member", "below", "inside", "between", "above"])
def test_tampered_openings_are_refused(
    snapshot: tuple[list[int], GcsParams, list[bytes], bytes], kind: str
) -> None:
    values, params, blocks, root = snapshot
    reader = read(blocks, params, root)
    value = values[100] if kind == "member" else non_members_worth_opening(values, params)[kind]
    opening = reader.open(value)
    assert verify_opening(root, params, value, opening) == (kind == "member")
    for why, bad in tampered(opening).items():
        assert refused(root, params, value, bad), why
    assert refused(bytes(32), params, value, opening), "wrong root"
    other_params = GcsParams(24, 2000, 64, params.golomb + 1)
    assert refused(root, other_params, value, opening), "other parameters"


def refused(root: bytes, params: GcsParams, value: int, opening: Opening) -> bool:
    try:
        verify_opening(root, params, value, opening)
    except VerificationError:
        return True
    return False


def test_an_opening_proves_nothing_about_values_it_does_not_decide(
    snapshot: tuple[list[int], GcsParams, list[bytes], bytes],
) -> None:
    values, params, blocks, root = snapshot
    reader = read(blocks, params, root)
    opening = reader.open(values[10])
    with pytest.raises(VerificationError):
        verify_opening(root, params, values[1500], opening)  # lies in another block
    with pytest.raises(VerificationError):
        verify_opening(root, params, values[63] + 1, opening)  # needs block 1's first value
    later = reader.open(values[5 * 64 + 3])
    with pytest.raises(VerificationError):
        verify_opening(root, params, values[5 * 64] - 1, later)  # precedes the opened block
    padded = Opening((*opening.blocks, reader.open(values[64]).blocks[0]))
    with pytest.raises(VerificationError):
        verify_opening(root, params, values[10], padded)  # superfluous neighbour
    with pytest.raises(VerificationError):
        verify_opening(root, params, values[10], Opening(()))


def test_malformed_opening_bytes_are_refused(
    snapshot: tuple[list[int], GcsParams, list[bytes], bytes],
) -> None:
    values, params, blocks, root = snapshot
    data = read(blocks, params, root).open(values[63] + 1).encode()
    for bad in (data[:-1], data + b"\x00", b"\x02" + data[1:], data[:1] + b"\x03" + data[2:], b""):
        with pytest.raises(VerificationError):
            Opening.decode(bad)


def test_reader_resumes_by_block_index_and_refuses_disorder(
    snapshot: tuple[list[int], GcsParams, list[bytes], bytes],
) -> None:
    values, params, blocks, root = snapshot
    reader = SnapshotReader(params, blocks.__getitem__)
    reader.add_chunk(0, blocks[:5])
    assert reader.next_index == 5
    with pytest.raises(RemoteProtocolError):
        reader.add_block(7, blocks[7])  # a gap
    with pytest.raises(RemoteProtocolError):
        reader.add_block(4, blocks[4])  # a repeat
    with pytest.raises(RemoteProtocolError):
        reader.finish(root)  # incomplete
    reader.add_chunk(5, blocks[5:])
    assert reader.complete
    with pytest.raises(RemoteProtocolError):
        reader.add_block(len(blocks), blocks[-1])  # past the end
    reader.finish(root)
    assert reader.verified
    assert reader.contains(values[1234])
    with pytest.raises(LocalProtocolError):
        reader.add_block(len(blocks), blocks[-1])

    swapped = SnapshotReader(params, blocks.__getitem__)
    swapped.add_block(0, blocks[1])
    with pytest.raises(RemoteProtocolError):
        swapped.add_block(1, blocks[0])  # decodes, but breaks the global order


def test_reader_refuses_a_snapshot_that_does_not_match_its_digest(
    snapshot: tuple[list[int], GcsParams, list[bytes], bytes],
) -> None:
    values, params, _, root = snapshot
    other_blocks, _ = build(sorted(set(values) - {values[5]} | {values[5] + 1}), params)
    reader = SnapshotReader(params, other_blocks.__getitem__)
    reader.add_chunk(0, other_blocks)
    with pytest.raises(VerificationError):
        reader.finish(root)
    with pytest.raises(LocalProtocolError):
        reader.contains(values[0])


def test_reader_refuses_a_damaged_block_store(
    snapshot: tuple[list[int], GcsParams, list[bytes], bytes],
) -> None:
    values, params, blocks, root = snapshot
    store = list(blocks)
    reader = SnapshotReader(params, store.__getitem__)
    reader.add_chunk(0, blocks)
    reader.finish(root)
    store[3] = blocks[4]
    with pytest.raises(VerificationError):
        reader.contains(values[3 * 64 + 1])
    with pytest.raises(InputError):
        reader.contains(1 << 24)


def test_empty_snapshot() -> None:
    params = GcsParams.choose(count=0, bits=30)
    blocks, root = build([], params)
    assert blocks == []
    reader = read(blocks, params, root)
    assert not reader.contains(12345)
    opening = reader.open(12345)
    assert opening == Opening(())
    assert verify_opening(root, params, 12345, opening) is False
    with pytest.raises(VerificationError):
        verify_opening(bytes(32), params, 12345, opening)
    one = GcsParams.choose(count=1, bits=30)
    one_blocks, one_root = build([7], one)
    stray = read(one_blocks, one, one_root).open(7)
    with pytest.raises(VerificationError):
        verify_opening(root, params, 7, stray)


# --- size -----------------------------------------------------------------------------

OPENMINED_GCS_BYTES_PER_ITEM = 5.17
"""OpenMined PSI's Golomb-coded set, 1M server items, fpr 1e-9 over 1,000 client items."""


def test_one_million_values_cost_near_the_entropy_bound() -> None:
    count = 1_000_000
    bits = truncation_bits(size_bucket(count, minimum=1024), max_query_tokens=1000)
    assert bits == 60
    raw = random.Random(4).randbytes(8 * count)
    values = sorted({v >> 4 for v in struct.unpack(f">{count}Q", raw)})
    params = GcsParams.choose(count=len(values), bits=bits)
    size = sum(map(len, encode_blocks(values, params)))
    bits_per_value = 8 * size / len(values)
    n = len(values)
    entropy = (n * bits - math.lgamma(n + 1) / math.log(2)) / n  # log2 C(2**λ, n) / n
    assert entropy < bits_per_value <= entropy + 2
    assert size / n <= 1.05 * OPENMINED_GCS_BYTES_PER_ITEM
