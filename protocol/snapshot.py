"""From protected cells to a committed snapshot, and back to membership tests.

The responder holds the key, so it evaluates every token directly (RFC 9497
Evaluate), cuts each 64-byte output to λ bits, pads the set with random values
up to a size bucket and encodes it as a Golomb-coded set under a Merkle
commitment (``protocol.gcs``). Evaluation is the expensive part and is
embarrassingly parallel: it runs through a ``map``-like callable, so the server
can hand it to threads, processes or a cluster engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from protocol.descriptor import Descriptor
from protocol.errors import RemoteProtocolError, VerificationError
from protocol.gcs import GcsParams, encode_blocks, snapshot_digest
from protocol.merkle import MerkleBuilder
from protocol.oprf import KeyPair, Mode, evaluate
from protocol.padding import (
    DEFAULT_FALSE_POSITIVE,
    DEFAULT_MAX_QUERY_TOKENS,
    SNAPSHOT_SIGNIFICANT_BITS,
    pad_values,
    size_bucket,
    truncation_bits,
)
from protocol.randomness import RandomBytes
from protocol.tokens import token_bytes

SNAPSHOT_BUCKET_MINIMUM = 1024
EVALUATION_CHUNK = 4096
MODE = Mode.VOPRF

Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]
"""Anything shaped like the builtin ``map``: ``executor.map`` of a thread or process
pool, or an adapter to Ray/Dask. It must preserve order."""


def truncate_output(output: bytes, bits: int) -> int:
    """The first λ bits of an OPRF output, as an integer."""
    size = (bits + 7) // 8
    return int.from_bytes(output[:size], "big") >> (8 * size - bits)


def snapshot_params(descriptor: Descriptor) -> GcsParams:
    """The set-encoding parameters a descriptor commits to."""
    try:
        return GcsParams.decode(descriptor.snapshot_params)
    except RemoteProtocolError as error:
        raise VerificationError(f"descriptor holds bad snapshot parameters: {error}") from None


def evaluate_chunk(job: tuple[bytes, Sequence[int], int]) -> list[int]:
    """Truncated OPRF outputs of one chunk of same-resolution cells under one key.

    Module-level and built from plain values so a process pool can pickle it.
    """
    secret, cells, bits = job
    outputs = evaluate(secret, [token_bytes(cell) for cell in cells], MODE)
    return [truncate_output(output, bits) for output in outputs]


def _jobs(
    tokens: Mapping[int, Iterable[int]], keys: Mapping[int, KeyPair], bits: int
) -> Iterator[tuple[bytes, list[int], int]]:
    for resolution in sorted(tokens):
        cells = sorted(tokens[resolution])
        secret = keys[resolution].secret
        for start in range(0, len(cells), EVALUATION_CHUNK):
            yield secret, cells[start : start + EVALUATION_CHUNK], bits


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
    rng: RandomBytes,
    sink: Callable[[bytes], None],
    max_query_tokens: int = DEFAULT_MAX_QUERY_TOKENS,
    false_positive: float = DEFAULT_FALSE_POSITIVE,
    mapper: Mapper = map,
) -> BuiltSnapshot:
    """Evaluate, truncate, pad, encode and commit; every block goes to ``sink`` in order.

    Only the sorted values sit in memory; blocks stream out one at a time.
    """
    count = sum(len(set(cells)) for cells in tokens.values())
    plan = SnapshotPlan.for_tokens(
        count, max_query_tokens=max_query_tokens, false_positive=false_positive
    )
    values: list[int] = []
    for chunk in mapper(evaluate_chunk, _jobs(tokens, keys, plan.bits)):
        values.extend(chunk)
    padded = pad_values(values, size=plan.padded_count, bits=plan.bits, rng=rng)
    del values
    params = GcsParams.choose(count=plan.padded_count, bits=plan.bits)
    builder = MerkleBuilder()
    total = 0
    for block in encode_blocks(padded, params):
        builder.add_block(block)
        total += len(block)
        sink(block)
    return BuiltSnapshot(params, snapshot_digest(params, builder.root()), total, count)
