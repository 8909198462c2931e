"""The Golomb-coded snapshot: exact round trips, strict decoding, membership and openings."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hexpsi.protocol.errors import (
    InputError,
    LocalProtocolError,
    RemoteProtocolError,
    VerificationError,
)
from hexpsi.protocol.padding import size_bucket, truncation_bits
from hexpsi.protocol.snapshot.gcs import (
    DEFAULT_BLOCK_SIZE,
    GcsParams,
    Opening,
    SnapshotReader,
    decode_block,
    encode_blocks,
    optimal_golomb,
    snapshot_digest,
    verify_opening,
)
from hexpsi.protocol.snapshot.merkle import MerkleBuilder


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


def random_values(count: int, bits: int, seed: int) -> list[int]:
    """Distinct uniform λ-bit values, sorted: the shape of a real snapshot."""
    rnd = random.Random(seed)
    if bits <= 24:
        return sorted(rnd.sample(range(1 << bits), count))
    values: set[int] = set()
    while len(values) < count:
        values.add(rnd.getrandbits(bits))
    return sorted(values)


def built(count: int, bits: int, *, seed: int) -> tuple[list[int], GcsParams, list[bytes], bytes]:
    """``count`` random λ-bit values, their parameters, blocks and digest."""
    values = random_values(count, bits, seed)
    params = GcsParams.choose(count=count, bits=bits)
    blocks, root = build(values, params)
    return values, params, blocks, root


def single_block(values: list[int], bits: int, golomb: int | None = None) -> GcsParams:
    """Parameters that put every value in one block (block 0)."""
    return GcsParams(bits, len(values), 1, golomb or optimal_golomb(len(values), bits))


@st.composite
def value_sets(draw: st.DrawFn, max_size: int = 400) -> tuple[list[int], GcsParams]:
    """Arbitrary sorted distinct λ-bit sets, λ in 8..80 (clustered ones included), with
    block counts and Golomb parameters around the optimum (powers of two among them,
    so Rice coding is covered too)."""
    bits = draw(st.integers(min_value=8, max_value=80))
    values = sorted(
        draw(st.sets(st.integers(0, (1 << bits) - 1), max_size=min(max_size, 1 << bits)))
    )
    blocks = draw(st.sampled_from([1, 2, 3, 8, max(1, len(values) // 31), max(1, len(values))]))
    optimal = optimal_golomb(len(values), bits)
    golomb = draw(
        st.sampled_from(
            [optimal, optimal * 3, max(1, optimal // 5), 1 << max(0, optimal.bit_length() - 1)]
        )
    )
    return values, GcsParams(bits, len(values), blocks, min(golomb, max(1, (1 << bits) - 1)))


@st.composite
def snapshots(draw: st.DrawFn) -> tuple[list[int], GcsParams]:
    """Uniformly random sets, as padded OPRF outputs are, with a few values a block."""
    bits = draw(st.integers(min_value=8, max_value=80))
    count = draw(st.integers(min_value=0, max_value=min(300, 1 << bits)))
    values = random_values(count, bits, draw(st.integers(0, 2**32)))
    block_size = draw(st.sampled_from([1, 4, 16, 64, 256]))
    return values, GcsParams.choose(count=count, bits=bits, block_size=block_size)


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
        (2, 40, 10, 1, 5),  # unknown version
        (1, 0, 0, 1, 1),  # λ = 0
        (1, 129, 10, 1, 5),  # λ beyond 128
        (1, 8, 257, 1, 5),  # more values than 8-bit integers
        (1, 40, 10, 0, 5),  # no blocks
        (1, 8, 10, 257, 5),  # more blocks than 8-bit integers
        (1, 40, 10, 1, 0),  # Golomb parameter 0
        (1, 8, 10, 1, 256),  # Golomb parameter ≥ 2**λ
    ],
)
def test_params_decode_refuses_bad_fields(fields: tuple[int, int, int, int, int]) -> None:
    version, bits, count, blocks, golomb = fields
    data = struct.pack(">BBQI16s", version, bits, count, blocks, golomb.to_bytes(16, "big"))
    with pytest.raises(RemoteProtocolError):
        GcsParams.decode(data)


def test_params_decode_refuses_wrong_length() -> None:
    data = GcsParams.choose(count=10, bits=40).encode()
    for bad in (data[:-1], data + b"\x00", b""):
        with pytest.raises(RemoteProtocolError):
            GcsParams.decode(bad)


@settings(max_examples=200)
@given(
    st.integers(min_value=1, max_value=100),
    st.integers(min_value=1, max_value=5000),
    st.data(),
)
def test_block_ranges_tile_the_value_space(bits: int, blocks: int, data: st.DataObject) -> None:
    params = GcsParams(bits, 0, min(blocks, 1 << bits), 1)
    index = data.draw(st.integers(0, params.block_count - 1))
    start, end = params.block_range(index)
    assert start < end
    assert params.block_of(start) == index
    assert params.block_of(end - 1) == index
    if index + 1 < params.block_count:
        assert params.block_range(index + 1)[0] == end
    else:
        assert end == 1 << bits
    value = data.draw(st.integers(0, (1 << bits) - 1))
    low, high = params.block_range(params.block_of(value))
    assert low <= value < high


def test_choose_aims_at_the_block_size_with_the_optimal_parameter() -> None:
    params = GcsParams.choose(count=1_000_000, bits=60)
    assert params.block_count == math.ceil(1_000_000 / DEFAULT_BLOCK_SIZE)
    assert params.golomb == optimal_golomb(1_000_000, 60)
    assert GcsParams.choose(count=0, bits=60).block_count == 1


def test_optimal_golomb_beats_its_neighbours_and_rice() -> None:
    count, bits = 20_000, 40
    values = random_values(count, bits, seed=1)
    optimal = optimal_golomb(count, bits)
    rice = 1 << round(math.log2((1 << bits) / count * math.log(2)))

    def size(golomb: int) -> int:
        params = GcsParams(bits, count, 79, golomb)
        return sum(map(len, encode_blocks(values, params)))

    best = size(optimal)
    assert best < size(rice)
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
        part = decode_block(block, params, index)
        start, end = params.block_range(index)
        assert all(start <= value < end for value in part)
        decoded += part
    assert decoded == values
    assert sum(map(len, blocks)) <= params.max_snapshot_bytes()


def test_block_format_known_answers() -> None:
    """gamma(count + 1), then Golomb-coded gaps from the range start, zero padding."""
    unary = GcsParams(bits=8, count=3, block_count=1, golomb=1)
    # '00100' (3 + 1), '000001' (5 - 0), '1' (6 - 5 - 1), '01' (8 - 6 - 1), '00' padding
    assert list(encode_blocks([5, 6, 8], unary)) == [bytes([0b00100000, 0b00110100])]
    # M=3, truncated binary remainders 0 -> '0', 1 -> '10', 2 -> '11':
    # '00101' (4 + 1), '1'+'10' (1), '1'+'0' (0), '01'+'0' (3), '01'+'0' (3)
    golomb3 = GcsParams(bits=8, count=4, block_count=1, golomb=3)
    assert list(encode_blocks([1, 2, 6, 10], golomb3)) == [bytes([0b00101110, 0b10010010])]
    assert decode_block(bytes([0b00101110, 0b10010010]), golomb3, 0) == [1, 2, 6, 10]
    # Two ranges [0, 128) and [128, 256); M=64 is Rice with 6 remainder bits.
    two = GcsParams(bits=8, count=2, block_count=2, golomb=64)
    assert list(encode_blocks([5, 200], two)) == [
        bytes([0b01010001, 0b01000000]),  # '010' (1 + 1), '1'+'000101' (5 - 0)
        bytes([0b01001001, 0b00000000]),  # '010', '01'+'001000' (200 - 128 = 64 + 8)
    ]
    assert list(encode_blocks([], GcsParams(8, 0, 1, 1))) == [b"\x80"]  # gamma(1) = '1'


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (bytes([0b00100000]), "truncated"),
        (bytes([0b00100000, 0b00110100, 0]), "overlong"),
        (bytes([0b00100000, 0b00110101]), "nonzero padding"),
        (bytes([0b00100000, 0b00000000]), "unary run never ends"),
        (bytes([0b00101111, 0b10000000]), "4 values [0, 1, 2, 3], above the announced 3"),
        (bytes([0b00000000]), "gamma never ends"),
        (b"", "empty"),
    ],
)
def test_malformed_blocks_are_refused(data: bytes, why: str) -> None:
    unary = GcsParams(bits=8, count=3, block_count=1, golomb=1)
    with pytest.raises(RemoteProtocolError):
        decode_block(data, unary, 0)


def test_values_outside_the_block_range_are_refused() -> None:
    two = GcsParams(bits=8, count=2, block_count=2, golomb=64)
    # '010' (one value), '001'+'000000' (128 - 0): 128 belongs to block 1, not block 0.
    with pytest.raises(RemoteProtocolError, match="outside its range"):
        decode_block(bytes([0b01000100, 0b00000000]), two, 0)


def test_oversized_blocks_are_refused_unread() -> None:
    params = GcsParams(bits=8, count=2, block_count=1, golomb=1)
    limit = params.max_block_bytes(0)
    with pytest.raises(RemoteProtocolError, match="larger"):
        decode_block(bytes([0b01000000]) + b"\x00" * limit, params, 0)


def assert_canonical(blob: bytes, params: GcsParams) -> bool:
    """Bytes either fail to decode or are exactly the encoding of what they decode to."""
    try:
        values = decode_block(blob, params, 0)
    except RemoteProtocolError:
        return False
    assert values == sorted(set(values))
    assert all(0 <= value < 1 << params.bits for value in values)
    padded = GcsParams(params.bits, len(values), 1, params.golomb)
    assert list(encode_blocks(values, padded)) == [blob]
    return True


@settings(max_examples=200)
@given(st.integers(min_value=8, max_value=40), st.integers(min_value=0, max_value=12), st.data())
def test_arbitrary_bytes_decode_canonically_or_not_at_all(
    bits: int, count: int, data: st.DataObject
) -> None:
    params = GcsParams(bits, count, 1, optimal_golomb(count, bits))
    assert_canonical(data.draw(st.binary(max_size=params.max_block_bytes(0))), params)


@settings(max_examples=200)
@given(value_sets(max_size=40), st.data())
def test_bit_flips_never_decode_to_the_same_values(
    case: tuple[list[int], GcsParams], data: st.DataObject
) -> None:
    values, params = case
    single = single_block(values, params.bits, params.golomb)
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
    values = random_values(10_000, 40, seed=2)
    params = GcsParams.choose(count=10_000, bits=40)
    consumed = 0

    def source() -> Iterator[int]:
        nonlocal consumed
        for value in values:
            consumed += 1
            yield value

    stream = encode_blocks(source(), params)
    first = next(stream)
    in_first = decode_block(first, params, 0)
    assert consumed == len(in_first) + 1  # the value that opened block 1 ended block 0
    assert in_first == [v for v in values if params.block_of(v) == 0]


# --- reading, membership, openings ----------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(snapshots(), st.data())
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


def refused(root: bytes, params: GcsParams, value: int, opening: Opening) -> bool:
    try:
        verify_opening(root, params, value, opening)
    except VerificationError:
        return True
    return False


def tampered(opening: Opening, blocks: list[bytes]) -> dict[str, Opening]:
    """Every way of bending an opening that must make it fail."""
    block = bytearray(opening.block)
    block[len(block) // 2] ^= 0x10
    path = list(opening.path)
    path[0] = bytes([path[0][0] ^ 1]) + path[0][1:]
    neighbour = opening.index + 1
    return {
        "changed block byte": Opening(opening.index, bytes(block), opening.path),
        "appended byte": Opening(opening.index, opening.block + b"\x00", opening.path),
        "wrong index": Opening(neighbour, opening.block, opening.path),
        "neighbour block": Opening(opening.index, blocks[neighbour], opening.path),
        "wrong path": Opening(opening.index, opening.block, tuple(path)),
        "short path": Opening(opening.index, opening.block, opening.path[1:]),
        "long path": Opening(opening.index, opening.block, (*opening.path, opening.path[0])),
    }


@pytest.mark.parametrize("kind", ["member", "absent"])
def test_tampered_openings_are_refused(
    snapshot: tuple[list[int], GcsParams, list[bytes], bytes], kind: str
) -> None:
    values, params, blocks, root = snapshot
    reader = read(blocks, params, root)
    value = values[100] if kind == "member" else values[100] + 1
    assert (value in values) == (kind == "member")
    opening = reader.open(value)
    assert verify_opening(root, params, value, opening) == (kind == "member")
    for why, bad in tampered(opening, blocks).items():
        assert refused(root, params, value, bad), why
    assert refused(bytes(32), params, value, opening), "wrong root"
    other_params = GcsParams(24, 2000, params.block_count, params.golomb + 1)
    assert refused(root, other_params, value, opening), "other parameters"


def test_an_opening_settles_only_values_in_its_block(
    snapshot: tuple[list[int], GcsParams, list[bytes], bytes],
) -> None:
    values, params, blocks, root = snapshot
    reader = read(blocks, params, root)
    opening = reader.open(values[10])
    start, end = params.block_range(opening.index)
    assert verify_opening(root, params, start, opening) == (start in values)
    assert verify_opening(root, params, end - 1, opening) == (end - 1 in values)
    for outside in (end, values[1500], start - 1 if start else end + 1):
        with pytest.raises(VerificationError):
            verify_opening(root, params, outside, opening)
    with pytest.raises(InputError):
        verify_opening(root, params, 1 << 24, opening)


def test_malformed_opening_bytes_are_refused(
    snapshot: tuple[list[int], GcsParams, list[bytes], bytes],
) -> None:
    values, params, blocks, root = snapshot
    data = read(blocks, params, root).open(values[63] + 1).encode()
    for bad in (data[:-1], data + b"\x00", b"\x02" + data[1:], data[:5] + b"\xff" + data[6:], b""):
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

    # Blocks are coded relative to their range, so a swapped pair still decodes
    # (as other values); the digest is what catches it.
    swapped = SnapshotReader(params, blocks.__getitem__)
    swapped.add_chunk(0, [blocks[1], blocks[0], *blocks[2:]])
    with pytest.raises(VerificationError):
        swapped.finish(root)


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


def test_reader_refuses_blocks_that_miscount_the_snapshot(
    snapshot: tuple[list[int], GcsParams, list[bytes], bytes],
) -> None:
    values, params, _, _ = snapshot
    fewer = values[:5] + values[6:]
    fewer_blocks, _ = build(fewer, GcsParams(24, len(fewer), params.block_count, params.golomb))
    reader = SnapshotReader(params, fewer_blocks.__getitem__)
    reader.add_chunk(0, fewer_blocks)
    with pytest.raises(RemoteProtocolError, match="holds 1999 values"):
        reader.finish(snapshot_digest(params, b"\x00" * 32))


def test_reader_refuses_values_piled_into_one_block() -> None:
    """Clustered values would make every lookup decode the whole snapshot."""
    params = GcsParams.choose(count=1000, bits=40, block_size=100)
    crowded = list(range(1000))  # all in block 0, whose mean is 100
    blocks, _ = build(crowded, params)
    reader = SnapshotReader(params, blocks.__getitem__)
    with pytest.raises(RemoteProtocolError):
        reader.add_block(0, blocks[0])
    assert decode_block(blocks[0], params, 0) == crowded  # the codec itself has no quota


def test_reader_refuses_a_damaged_block_store(
    snapshot: tuple[list[int], GcsParams, list[bytes], bytes],
) -> None:
    values, params, blocks, root = snapshot
    store = list(blocks)
    reader = SnapshotReader(params, store.__getitem__)
    reader.add_chunk(0, blocks)
    reader.finish(root)
    victim = params.block_of(values[300])
    store[victim] = blocks[victim + 1]
    with pytest.raises(VerificationError):
        reader.open(values[300])
    # Lookups answer from the values verified on arrival, so the swap cannot mislead them.
    assert reader.contains(values[300])
    with pytest.raises(InputError):
        reader.contains(1 << 24)
    unindexed = SnapshotReader.restore(params, store.__getitem__, reader.leaf_hashes, root)
    with pytest.raises(VerificationError):
        unindexed.contains(values[300])


def test_the_value_index_answers_exactly_like_decoding_blocks() -> None:
    values, params, blocks, root = built(5000, 44, seed=21)
    indexed = read(blocks, params, root)
    assert indexed.index is not None
    assert list(indexed.index) == values
    unindexed = SnapshotReader.restore(params, blocks.__getitem__, indexed.leaf_hashes, root)
    assert unindexed.index is None
    rng = random.Random(22)
    probes = (
        values[::13] + [v + 1 for v in values[::17]] + [rng.getrandbits(44) for _ in range(500)]
    )
    probes += [0, (1 << 44) - 1, values[0], values[-1]]
    assert [indexed.contains(v) for v in probes] == [unindexed.contains(v) for v in probes]
    assert [indexed.contains(v) for v in probes] == [v in set(values) for v in probes]
    again = SnapshotReader.restore(
        params, blocks.__getitem__, indexed.leaf_hashes, root, indexed.index
    )
    assert [again.contains(v) for v in probes] == [indexed.contains(v) for v in probes]


def test_restoring_refuses_an_index_that_does_not_fit() -> None:
    _, params, blocks, root = built(1000, 40, seed=23)
    reader = read(blocks, params, root)
    assert reader.index is not None
    short = reader.index[:-1]
    with pytest.raises(VerificationError, match="value index"):
        SnapshotReader.restore(params, blocks.__getitem__, reader.leaf_hashes, root, short)


def test_values_wider_than_64_bits_are_looked_up_in_their_blocks() -> None:
    values, params, blocks, root = built(600, 80, seed=24)
    reader = read(blocks, params, root)
    assert reader.index is None
    assert all(reader.contains(v) for v in values[::7])
    assert not reader.contains(values[3] + 1)


def test_an_unverified_reader_offers_no_index() -> None:
    values = random_values(500, 40, seed=25)
    params = GcsParams.choose(count=len(values), bits=40)
    blocks, _ = build(values, params)
    reader = SnapshotReader(params, blocks.__getitem__)
    reader.add_chunk(0, blocks)
    assert reader.index is None
    with pytest.raises(VerificationError):
        reader.finish(bytes(32))
    assert reader.index is None


def test_empty_snapshot() -> None:
    params = GcsParams.choose(count=0, bits=30)
    blocks, root = build([], params)
    assert blocks == [b"\x80"]
    reader = read(blocks, params, root)
    assert not reader.contains(12345)
    opening = reader.open(12345)
    assert verify_opening(root, params, 12345, opening) is False
    with pytest.raises(VerificationError):
        verify_opening(bytes(32), params, 12345, opening)
    one = GcsParams.choose(count=1, bits=30)
    one_blocks, one_root = build([12345], one)
    stray = read(one_blocks, one, one_root).open(12345)
    assert verify_opening(one_root, one, 12345, stray) is True
    with pytest.raises(VerificationError):
        verify_opening(root, params, 12345, stray)


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
    n = len(values)
    bits_per_value = 8 * size / n
    entropy = (n * bits - math.lgamma(n + 1) / math.log(2)) / n  # log2 C(2**λ, n) / n
    assert entropy < bits_per_value <= entropy + 2
    assert size / n <= 1.05 * OPENMINED_GCS_BYTES_PER_ITEM


def test_a_reader_restored_from_its_leaves_answers_like_the_original() -> None:
    values = random_values(3000, 40, seed=7)
    params = GcsParams.choose(count=len(values), bits=40)
    blocks, root = build(values, params)
    original = read(blocks, params, root)
    restored = SnapshotReader.restore(params, blocks.__getitem__, original.leaf_hashes, root)
    probes = values[::37] + random_values(200, 40, seed=8)
    assert [restored.contains(v) for v in probes] == [original.contains(v) for v in probes]
    assert restored.open(values[5]) == original.open(values[5])
    restored.finish(root)  # finishing a verified reader again only compares the digest
    with pytest.raises(VerificationError):
        restored.finish(bytes(32))


def test_restoring_refuses_leaves_that_do_not_match_the_digest() -> None:
    values = random_values(2000, 36, seed=9)
    params = GcsParams.choose(count=len(values), bits=36)
    blocks, root = build(values, params)
    leaves = list(read(blocks, params, root).leaf_hashes)
    with pytest.raises(VerificationError):
        SnapshotReader.restore(params, blocks.__getitem__, leaves[:-1], root)
    swapped = [leaves[1], leaves[0], *leaves[2:]]
    with pytest.raises(VerificationError):
        SnapshotReader.restore(params, blocks.__getitem__, swapped, root)
    damaged = [bytes(blocks[0][:-1]) + bytes([blocks[0][-1] ^ 1]), *blocks[1:]]
    restored = SnapshotReader.restore(params, damaged.__getitem__, leaves, root)
    with pytest.raises(VerificationError):
        restored.contains(values[0])
