"""Snapshots: every token's truncated output is in, padding hides the count, the digest commits."""

from __future__ import annotations

import dataclasses
import multiprocessing
import pickle
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import h3.api.basic_int as h3
import pytest

import hexpsi.protocol.padding
import hexpsi.protocol.snapshot.build
from hexpsi.protocol.crypto.keys import epoch_keys
from hexpsi.protocol.crypto.oprf import Mode, evaluate
from hexpsi.protocol.epoch.descriptor import SignedDescriptor, snapshot_params
from hexpsi.protocol.errors import VerificationError
from hexpsi.protocol.geo.tokens import responder_tokens, token_bytes
from hexpsi.protocol.padding import truncation_bits
from hexpsi.protocol.snapshot.build import (
    SNAPSHOT_BUCKET_MINIMUM,
    BuiltSnapshot,
    SnapshotPlan,
    build_snapshot,
    evaluate_chunk,
    truncate_output,
)
from hexpsi.protocol.snapshot.gcs import GcsParams, SnapshotReader, decode_block
from tests.protocol.helpers import DeterministicRng, make_responder, signing_key

RES, RES_MIN = 8, 6
KEYS = epoch_keys(b"m" * 32, bytes(16), res=RES, res_min=RES_MIN)
CENTRE = h3.latlng_to_cell(33.5, 38.6, RES)
PROTECTED = set(h3.grid_disk(CENTRE, 3))


def build(
    cells: Iterable[int], *, seed: bytes = b"pad", mapper: Callable[..., Iterable[Any]] = map
) -> tuple[BuiltSnapshot, list[bytes]]:
    blocks: list[bytes] = []
    built = build_snapshot(
        responder_tokens(cells, res=RES, res_min=RES_MIN),
        KEYS,
        rng=DeterministicRng(seed),
        sink=blocks.append,
        mapper=mapper,
    )
    return built, blocks


def values_of(blocks: list[bytes], params: GcsParams) -> list[int]:
    return [v for index, block in enumerate(blocks) for v in decode_block(block, params, index)]


def test_truncate_output_keeps_the_first_bits() -> None:
    output = bytes([0b10110011, 0b01010101]) + bytes(62)
    assert truncate_output(output, 1) == 1
    assert truncate_output(output, 4) == 0b1011
    assert truncate_output(output, 8) == 0b10110011
    assert truncate_output(output, 12) == 0b101100110101
    assert truncate_output(output, 512) == int.from_bytes(output, "big")


def test_plan_pads_to_a_bucket_and_picks_lambda_for_it() -> None:
    small = SnapshotPlan.for_tokens(10)
    assert small == SnapshotPlan(10, SNAPSHOT_BUCKET_MINIMUM, truncation_bits(1024))
    large = SnapshotPlan.for_tokens(5000, max_query_tokens=1000, false_positive=1e-6)
    assert large.padded_count == 5120
    assert large.bits == truncation_bits(5120, max_query_tokens=1000, false_positive=1e-6)
    # λ bounds the chance of any false match in one maximal check.
    assert 1000 * 5120 / 2**large.bits <= 1e-6


def test_snapshot_holds_every_tokens_truncated_output() -> None:
    built, blocks = build(PROTECTED)
    tokens = responder_tokens(PROTECTED, res=RES, res_min=RES_MIN)
    assert built.real_count == sum(len(group) for group in tokens.values())
    assert built.params.count == SNAPSHOT_BUCKET_MINIMUM
    assert built.total_bytes == sum(len(block) for block in blocks)
    values = values_of(blocks, built.params)
    assert values == sorted(set(values))
    assert len(values) == built.params.count
    expected = {
        truncate_output(output, built.params.bits)
        for r, cells in tokens.items()
        for output in evaluate(KEYS[r], [token_bytes(c) for c in sorted(cells)], Mode.VOPRF)
    }
    assert expected <= set(values)
    # A cell that is not protected (nor an ancestor of one) is not in it.
    far = h3.latlng_to_cell(10.0, 10.0, RES)
    (outside,) = evaluate(KEYS[RES], [token_bytes(far)], Mode.VOPRF)
    assert truncate_output(outside, built.params.bits) not in set(values)


def test_digest_commits_to_the_blocks() -> None:
    built, blocks = build(PROTECTED)
    reader = SnapshotReader(built.params, blocks.__getitem__)
    reader.add_chunk(0, blocks)
    reader.finish(built.digest)
    other, _ = build(PROTECTED, seed=b"other padding")
    assert other.digest != built.digest
    reader = SnapshotReader(built.params, blocks.__getitem__)
    reader.add_chunk(0, blocks)
    with pytest.raises(VerificationError):
        reader.finish(other.digest)


def test_same_inputs_give_the_same_snapshot() -> None:
    first, first_blocks = build(PROTECTED)
    second, second_blocks = build(PROTECTED)
    assert first == second
    assert first_blocks == second_blocks


def test_evaluation_runs_through_the_mapper_in_order() -> None:
    calls: list[tuple[str, Any]] = []

    def recording_map(function: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterable[Any]:
        for job in jobs:
            calls.append((function.__name__, job))
            yield function(job)

    expected, expected_blocks = build(PROTECTED)
    built, blocks = build(PROTECTED, mapper=recording_map)
    evaluations = [job for name, job in calls if name == "evaluate_into_parts"]
    encodings = [job for name, job in calls if name == "encode_part"]
    assert sum(len(job[1]) for job in evaluations) == expected.real_count
    assert len(evaluations) == RES - RES_MIN + 1
    assert [(first, end) for _, first, end, _ in encodings] == [(0, built.params.block_count)]
    assert len(calls) == len(evaluations) + len(encodings)
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded, threaded_blocks = build(PROTECTED, mapper=pool.map)
    assert built == expected == threaded
    assert blocks == expected_blocks == threaded_blocks


def expected_values(cells: Iterable[int], bits: int) -> set[int]:
    tokens = responder_tokens(cells, res=RES, res_min=RES_MIN)
    return {
        truncate_output(output, bits)
        for r, group in tokens.items()
        for output in evaluate(KEYS[r], [token_bytes(c) for c in sorted(group)], Mode.VOPRF)
    }


WIDE = set(h3.grid_disk(CENTRE, 20))
"""1,261 res-8 cells and their ancestors: 1,536 padded values, so small parts split it."""


def test_a_snapshot_encoded_in_parts_is_the_one_encoded_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whole, whole_blocks = build(WIDE)
    assert whole.params.count == 1536
    monkeypatch.setattr(hexpsi.protocol.snapshot.build, "ENCODING_PART_VALUES", 300)
    calls: list[str] = []

    def recording_map(function: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterable[Any]:
        for job in jobs:
            calls.append(function.__name__)
            yield function(job)

    parted, parted_blocks = build(WIDE, mapper=recording_map)
    assert calls.count("encode_part") == 6  # ceil(1536 / 300)
    assert parted == whole
    assert parted_blocks == whole_blocks
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        pooled, pooled_blocks = build(WIDE, mapper=pool.map)
    assert (pooled, pooled_blocks) == (whole, whole_blocks)


def test_a_repeated_value_falls_back_to_careful_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Padding that repeats a real value, or itself, must not shrink the published set."""
    reference, _ = build(WIDE)
    real = sorted(expected_values(WIDE, reference.params.bits))
    monkeypatch.setattr(hexpsi.protocol.snapshot.build, "ENCODING_PART_VALUES", 300)
    honest = hexpsi.protocol.padding.random_values

    def colliding(count: int, *, bits: int, rng: Callable[[int], bytes]) -> list[int]:
        drawn = honest(count, bits=bits, rng=rng)
        return [real[0], drawn[1], drawn[1], *drawn[3:]]

    monkeypatch.setattr(hexpsi.protocol.snapshot.build, "random_values", colliding)
    built, blocks = build(WIDE)
    values = values_of(blocks, built.params)
    assert built.params == reference.params
    assert len(values) == built.params.count
    assert values == sorted(set(values))
    assert set(real) <= set(values)
    reader = SnapshotReader(built.params, blocks.__getitem__)
    reader.add_chunk(0, blocks)
    reader.finish(built.digest)


def test_evaluate_chunk_is_picklable_for_process_pools() -> None:
    job = (KEYS[RES].secret, [CENTRE], 40)
    restored = pickle.loads(pickle.dumps(evaluate_chunk))
    assert restored(job) == evaluate_chunk(job)


def test_two_maps_within_one_bucket_have_the_same_padded_count() -> None:
    small, _ = build({CENTRE})
    large, _ = build(set(h3.grid_disk(CENTRE, 8)))
    assert small.real_count < large.real_count <= SNAPSHOT_BUCKET_MINIMUM
    assert small.params == large.params
    assert small.params.encode() == large.params.encode()


def test_an_empty_map_still_publishes_a_full_bucket() -> None:
    built, blocks = build(())
    assert built.real_count == 0
    assert built.params.count == SNAPSHOT_BUCKET_MINIMUM
    assert len(values_of(blocks, built.params)) == SNAPSHOT_BUCKET_MINIMUM


def test_bad_snapshot_parameters_in_a_descriptor_are_verification_errors() -> None:
    node = make_responder(PROTECTED, res=RES, res_min=RES_MIN)
    assert snapshot_params(node.descriptor.descriptor) == node.epoch.snapshot.params
    descriptor = node.descriptor.descriptor
    broken = dataclasses.replace(
        descriptor, snapshot_params=b"\x02" + descriptor.snapshot_params[1:]
    )
    signed = SignedDescriptor.sign(broken, signing_key("coalition"))
    with pytest.raises(VerificationError, match="snapshot parameters"):
        snapshot_params(signed.descriptor)
