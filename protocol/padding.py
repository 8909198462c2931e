"""Padded sizes and truncation lengths: what hides a set's size, and how short its values may be.

Every set that crosses the wire (the responder's snapshot, a proposer's query
groups, the mutual sets) is padded to a *size bucket* so a peer learns only the
bucket, never the exact count. Buckets are the integers with at most four
significant bits, floored at a per-use ``minimum``::

    1, 2, ..., 15, 16, 18, 20, ..., 30, 32, 36, ..., 60, 64, 72, ...

that is ``m * 2**e`` with ``m`` in 8..15 once past 15. Consecutive buckets differ
by at most a factor 9/8, so padding never costs more than 12.5 % of the real
count, while any count up to ``minimum`` hides entirely in the smallest bucket.

Snapshot values are OPRF outputs truncated to λ bits; :func:`truncation_bits`
picks the shortest λ that keeps the chance of any false match in one check
under a target, and :func:`pad_values` fills a set up to its bucket with fresh
random λ-bit values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from fractions import Fraction

from hexpsi.protocol.errors import InputError

BUCKET_SIGNIFICANT_BITS = 4
"""Buckets keep this many leading bits: 4 gives the 1/8 granularity (m in 8..15)."""

DEFAULT_MAX_QUERY_TOKENS = 4096
DEFAULT_FALSE_POSITIVE = 1e-9


SNAPSHOT_SIGNIFICANT_BITS = 5
"""Snapshots keep one bit more (1/16 granularity, at most 6.25 % padding): a
snapshot's padding is stored and downloaded once per epoch for every real
token, while the count it hides is already one of tens of thousands."""


def is_bucket(size: int, *, significant_bits: int = BUCKET_SIGNIFICANT_BITS) -> bool:
    """Whether ``size`` is one of the bucket sizes (ignoring any minimum)."""
    if size < 1:
        return False
    drop = max(0, size.bit_length() - significant_bits)
    return (size >> drop) << drop == size


def size_bucket(n: int, *, minimum: int, significant_bits: int = BUCKET_SIGNIFICANT_BITS) -> int:
    """The padded size for ``n`` items: the smallest bucket ≥ n, and never below ``minimum``.

    Buckets are the integers with at most ``significant_bits`` significant bits.
    With the default 4, for ``n > minimum`` the result is below ``n * 9/8`` (at
    most 12.5 % padding); every ``n ≤ minimum`` maps to ``minimum`` itself.
    """
    if n < 0:
        raise InputError(f"cannot pad a negative count ({n})")
    if minimum < 1:
        raise InputError(f"the minimum padded size must be at least 1, got {minimum}")
    if significant_bits < 1:
        raise InputError(f"buckets need at least one significant bit, got {significant_bits}")
    if n <= minimum:
        return minimum
    drop = max(0, n.bit_length() - significant_bits)
    return -(-n >> drop) << drop


def truncation_bits(
    padded_size: int,
    *,
    max_query_tokens: int = DEFAULT_MAX_QUERY_TOKENS,
    false_positive: float = DEFAULT_FALSE_POSITIVE,
) -> int:
    """Smallest λ with ``max_query_tokens * padded_size / 2**λ ≤ false_positive``.

    That is the union bound on any of ``max_query_tokens`` unrelated OPRF outputs
    matching any of ``padded_size`` snapshot values when both are cut to λ bits.
    Computed exactly (the float is read as the exact binary fraction it stores).
    """
    if padded_size < 1:
        raise InputError(f"the padded size must be at least 1, got {padded_size}")
    if max_query_tokens < 1:
        raise InputError(f"max_query_tokens must be at least 1, got {max_query_tokens}")
    if not 0.0 < false_positive < 1.0:
        raise InputError(f"the false-positive target must lie in (0, 1), got {false_positive}")
    pairs = max_query_tokens * padded_size
    target = Fraction(false_positive)
    bits = max(1, math.ceil(pairs / target).bit_length() - 1)
    while pairs > target * (1 << bits):
        bits += 1
    while bits > 1 and pairs <= target * (1 << (bits - 1)):
        bits -= 1
    return bits


def pad_values(
    values: Iterable[int], *, size: int, bits: int, rng: Callable[[int], bytes]
) -> list[int]:
    """The distinct ``values`` plus fresh random λ-bit values, ``size`` in all, sorted.

    Duplicates in ``values`` are merged: a snapshot is a set, and two tokens whose
    truncated outputs collide are indistinguishable to any query anyway. Padding
    values are drawn until they are distinct from everything already present, so
    the result has exactly ``size`` values (what the descriptor announces).
    """
    limit = 1 << bits
    if bits < 1:
        raise InputError(f"values need at least one bit, got {bits}")
    present = set(values)
    for value in present:
        if not 0 <= value < limit:
            raise InputError(f"value {value} does not fit in {bits} bits")
    if len(present) > size:
        raise InputError(f"{len(present)} distinct values do not fit a padded size of {size}")
    if size > limit:
        raise InputError(f"a padded size of {size} exceeds the {limit} distinct {bits}-bit values")
    while len(present) < size:
        present.update(random_values(size - len(present), bits=bits, rng=rng))
    return sorted(present)


def random_values(count: int, *, bits: int, rng: Callable[[int], bytes]) -> list[int]:
    """``count`` uniform λ-bit values from ``rng`` (not necessarily distinct)."""
    width = (bits + 7) // 8
    pool = rng(count * width)
    if len(pool) != count * width:
        raise InputError(f"the random source returned {len(pool)} bytes, not {count * width}")
    mask = (1 << bits) - 1
    return [int.from_bytes(pool[i : i + width], "big") & mask for i in range(0, len(pool), width)]
