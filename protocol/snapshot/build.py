"""From protected cells to a committed snapshot, and back to membership tests.

The responder holds the key, so it evaluates every token directly (RFC 9497
Evaluate), cuts each 64-byte output to λ bits, pads the set with random values
up to a size bucket and encodes it as a Golomb-coded set under a Merkle
commitment (``hexpsi.protocol.snapshot.gcs``). Evaluation is the expensive part and is
embarrassingly parallel: it runs through a ``map``-like callable, so the server
can hand it to threads, processes or a cluster engine.

The encoding runs through the same callable. The value space is cut into
parts of consecutive blocks (about :data:`ENCODING_PART_VALUES` values each)
before anything is evaluated, every evaluation job hands back its values
already split by part, and each part is then sorted and encoded on its own;
blocks stand alone, so the parts put back in order are exactly the snapshot
a single sorted pass would give. Sorting and encoding a million values takes
about 4 s on one core, which would otherwise run after the parallel part with
the other cores idle.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from hexpsi.protocol.crypto.oprf import KeyPair, Mode, evaluate
from hexpsi.protocol.geo.tokens import token_bytes
from hexpsi.protocol.padding import (
    DEFAULT_FALSE_POSITIVE,
    DEFAULT_MAX_QUERY_TOKENS,
    SNAPSHOT_SIGNIFICANT_BITS,
    pad_values,
    random_values,
    size_bucket,
    truncation_bits,
)
from hexpsi.protocol.parallel import Mapper
from hexpsi.protocol.randomness import RandomBytes
from hexpsi.protocol.snapshot.gcs import (
    GcsParams,
    encode_block_range,
    encode_blocks,
    snapshot_digest,
)
from hexpsi.protocol.snapshot.merkle import MerkleBuilder
from hexpsi.protocol.spacetime.tokens import TimedGroup, packed_token_bytes

SNAPSHOT_BUCKET_MINIMUM = 1024
EVALUATION_CHUNK = 4096
ENCODING_PART_VALUES = 1 << 17
"""Values per encoding job: large enough that handing a part to a worker costs
little next to sorting and encoding it, small enough to spread over the cores."""
MODE = Mode.VOPRF


def truncate_output(output: bytes, bits: int) -> int:
    """The first λ bits of an OPRF output, as an integer."""
    size = (bits + 7) // 8
    return int.from_bytes(output[:size], "big") >> (8 * size - bits)


def token_inputs(level: int | None, items: Sequence[int]) -> list[bytes]:
    """The OPRF inputs of one group's tokens: cells (standing, ``level`` None) or
    packed (cell, node index) pairs at time level ``level``."""
    if level is None:
        return [token_bytes(cell) for cell in items]
    return [packed_token_bytes(level, packed) for packed in items]


def evaluate_chunk(job: tuple[bytes, Sequence[int], int]) -> list[int]:
    """Truncated OPRF outputs of one chunk of same-resolution cells under one key.

    Module-level and built from plain values so a process pool can pickle it.
    """
    secret, cells, bits = job
    return _evaluate(secret, token_inputs(None, cells), bits)


def _evaluate(secret: bytes, inputs: list[bytes], bits: int) -> list[int]:
    return [truncate_output(output, bits) for output in evaluate(secret, inputs, MODE)]


EvaluationJob = tuple[bytes, Sequence[int], int, Sequence[int], int | None]
"""(key secret, tokens, λ, the parts' lower bounds, time level or None for standing)."""


def evaluate_into_parts(job: EvaluationJob) -> list[list[int]]:
    """One chunk of one group's tokens evaluated and truncated, split by encoding part.

    The parts' lower bounds after the first (ascending) say where a value goes:
    to the last part whose bound it reaches.
    """
    secret, items, bits, bounds, level = job
    parts: list[list[int]] = [[] for _ in range(len(bounds) + 1)]
    for value in _evaluate(secret, token_inputs(level, items), bits):
        parts[bisect.bisect_right(bounds, value)].append(value)
    return parts


def encode_part(job: tuple[GcsParams, int, int, list[int]]) -> list[bytes] | None:
    """Sort one part's values and encode its blocks; None if two values are equal.

    Module-level and built from plain values so a process pool can pickle it.
    A repeated value (two outputs, or an output and a padding value, that agree
    on all λ bits) is rare but possible; the caller then pads the slow way.
    """
    params, first, end, values = job
    ordered = sorted(values)
    if any(map(operator.ge, ordered, itertools.islice(ordered, 1, None))):
        return None
    return list(encode_block_range(ordered, params, first, end))


def _jobs(
    tokens: Mapping[int, Iterable[int]],
    keys: Mapping[int, KeyPair],
    bits: int,
    bounds: Sequence[int],
    timed: TimedSource | None,
) -> Iterator[EvaluationJob]:
    for resolution in sorted(tokens):
        # Any order will do (the values are sorted per part later); sorting a
        # million cells here would hold back the first job by most of a second.
        cells = list(tokens[resolution])
        secret = keys[resolution].secret
        for start in range(0, len(cells), EVALUATION_CHUNK):
            yield secret, cells[start : start + EVALUATION_CHUNK], bits, bounds, None
    if timed is None:
        return
    for (resolution, level), packed in timed.groups():
        secret = timed.keys[resolution, level].secret
        for start in range(0, len(packed), EVALUATION_CHUNK):
            yield secret, packed[start : start + EVALUATION_CHUNK], bits, bounds, level


@dataclass(frozen=True, slots=True)
class TimedSource:
    """An epoch's timed tokens: regenerated group by group when asked, never all held."""

    groups: Callable[[], Iterator[tuple[TimedGroup, list[int]]]]
    keys: Mapping[TimedGroup, KeyPair]
    count: int


def _encoding_parts(params: GcsParams) -> list[tuple[int, int]]:
    """Consecutive block ranges ``[first, end)`` of about ENCODING_PART_VALUES values each."""
    parts = min(params.block_count, max(1, -(-params.count // ENCODING_PART_VALUES)))
    edges = [params.block_count * i // parts for i in range(parts + 1)]
    return list(itertools.pairwise(edges))


@dataclass(frozen=True, slots=True)
class SnapshotPlan:
    """Sizes decided before any evaluation: the padded count and λ."""

    real_count: int
    padded_count: int
    bits: int

    @classmethod
    def for_tokens(
        cls,
        token_count: int,
        *,
        max_query_tokens: int = DEFAULT_MAX_QUERY_TOKENS,
        false_positive: float = DEFAULT_FALSE_POSITIVE,
    ) -> SnapshotPlan:
        padded = size_bucket(
            token_count,
            minimum=SNAPSHOT_BUCKET_MINIMUM,
            significant_bits=SNAPSHOT_SIGNIFICANT_BITS,
        )
        bits = truncation_bits(
            padded, max_query_tokens=max_query_tokens, false_positive=false_positive
        )
        return cls(token_count, padded, bits)


@dataclass(frozen=True, slots=True)
class BuiltSnapshot:
    """The encoded snapshot's public facts, for the descriptor."""

    params: GcsParams
    digest: bytes
    total_bytes: int
    real_count: int


def build_snapshot(
    tokens: Mapping[int, Iterable[int]],
    keys: Mapping[int, KeyPair],
    *,
    timed: TimedSource | None = None,
    rng: RandomBytes,
    sink: Callable[[bytes], None],
    max_query_tokens: int = DEFAULT_MAX_QUERY_TOKENS,
    false_positive: float = DEFAULT_FALSE_POSITIVE,
    mapper: Mapper = map,
) -> BuiltSnapshot:
    """Evaluate, truncate, pad, encode and commit; every block goes to ``sink`` in order.

    Memory holds the values (split by encoding part) and then the encoded
    blocks, about 45 and 6 bytes a value; the blocks reach ``sink`` once every
    part has encoded cleanly. ``timed`` adds the epoch's space-time tokens,
    evaluated under their own keys into the same snapshot.
    """
    unique = {resolution: set(cells) for resolution, cells in tokens.items()}
    count = sum(len(cells) for cells in unique.values()) + (timed.count if timed else 0)
    plan = SnapshotPlan.for_tokens(
        count, max_query_tokens=max_query_tokens, false_positive=false_positive
    )
    params = GcsParams.choose(count=plan.padded_count, bits=plan.bits)
    ranges = _encoding_parts(params)
    bounds = [params.block_range(first)[0] for first, _ in ranges[1:]]
    values_by_part: list[list[int]] = [[] for _ in ranges]
    for chunk in mapper(evaluate_into_parts, _jobs(unique, keys, plan.bits, bounds, timed)):
        for part, values in zip(values_by_part, chunk, strict=True):
            part.extend(values)
    for value in random_values(plan.padded_count - count, bits=plan.bits, rng=rng):
        values_by_part[bisect.bisect_right(bounds, value)].append(value)
    jobs = [
        (params, first, end, values)
        for (first, end), values in zip(ranges, values_by_part, strict=True)
    ]
    encoded = list(mapper(encode_part, jobs))
    blocks: Iterable[bytes] = (block for part in encoded if part is not None for block in part)
    if any(part is None for part in encoded):
        # A repeated value: merge repeats and top the set up again, the careful way.
        padded = pad_values(
            itertools.chain(*values_by_part), size=plan.padded_count, bits=plan.bits, rng=rng
        )
        blocks = encode_blocks(padded, params)
    del jobs, values_by_part
    builder = MerkleBuilder()
    total = 0
    for block in blocks:
        builder.add_block(block)
        total += len(block)
        sink(block)
    return BuiltSnapshot(params, snapshot_digest(params, builder.root()), total, count)
