"""Size buckets hide counts at ≤ 12.5 % cost; λ keeps a check's false-match chance under target."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.padding import (
    SNAPSHOT_SIGNIFICANT_BITS,
    is_bucket,
    pad_values,
    size_bucket,
    truncation_bits,
)

counts = st.integers(min_value=0, max_value=10**12)
minimums = st.integers(min_value=1, max_value=5000)


def test_bucket_sequence_starts_as_documented() -> None:
    buckets = sorted({size_bucket(n, minimum=1) for n in range(1, 80)})
    assert buckets == [*range(1, 16), *range(16, 32, 2), *range(32, 64, 4), 64, 72, 80]


def test_every_octave_has_eight_buckets() -> None:
    for exponent in range(4, 30):
        low, high = 1 << exponent, 1 << (exponent + 1)
        inside = {size_bucket(n, minimum=1) for n in range(low, high, max(1, low // 64))}
        assert inside == {m << (exponent - 3) for m in range(8, 17)}


@settings(max_examples=300)
@given(counts, minimums)
def test_bucket_covers_count_with_at_most_one_eighth_padding(n: int, minimum: int) -> None:
    bucket = size_bucket(n, minimum=minimum)
    assert bucket >= n
    assert bucket >= minimum
    if n > minimum:
        assert is_bucket(bucket)
        assert 8 * bucket <= 9 * n
        assert 8 * (bucket - n) <= n
    else:
        assert bucket == minimum


@settings(max_examples=300)
@given(counts, counts, minimums)
def test_bucket_is_monotone_and_idempotent(a: int, b: int, minimum: int) -> None:
    low, high = sorted((a, b))
    assert size_bucket(low, minimum=minimum) <= size_bucket(high, minimum=minimum)
    bucket = size_bucket(high, minimum=minimum)
    assert size_bucket(bucket, minimum=minimum) == bucket


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=10**6), minimums)
def test_bucket_is_the_smallest_bucket_at_or_above_the_count(n: int, minimum: int) -> None:
    """Hiding: every count between two buckets is padded to the same, upper one."""
    bucket = size_bucket(n, minimum=minimum)
    skipped = range(max(n, minimum + 1), bucket)
    assert not any(is_bucket(size) for size in skipped)


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(InputError):
        size_bucket(-1, minimum=8)
    with pytest.raises(InputError):
        size_bucket(5, minimum=0)


def test_truncation_bits_for_the_reference_sizes() -> None:
    one_million = size_bucket(1_000_000, minimum=1024)
    assert one_million == 1 << 20
    assert truncation_bits(one_million, max_query_tokens=1000) == 60
    ten_million = size_bucket(10_000_000, minimum=1024)
    assert ten_million == 10 << 20
    assert truncation_bits(ten_million) == 66  # beyond 64 bits: values are Python ints


@settings(max_examples=300)
@given(
    st.integers(min_value=1, max_value=10**9),
    st.integers(min_value=1, max_value=10**6),
    st.floats(min_value=1e-30, max_value=0.5),
)
def test_truncation_bits_is_the_smallest_that_meets_the_bound(
    size: int, queries: int, false_positive: float
) -> None:
    bits = truncation_bits(size, max_query_tokens=queries, false_positive=false_positive)
    target = Fraction(false_positive)
    assert Fraction(queries * size, 1 << bits) <= target
    if bits > 1:
        assert Fraction(queries * size, 1 << (bits - 1)) > target


@settings(max_examples=200)
@given(st.integers(1, 10**9), st.integers(1, 10**9), st.integers(1, 10**5))
def test_truncation_bits_grows_with_size_and_queries(a: int, b: int, queries: int) -> None:
    low, high = sorted((a, b))
    assert truncation_bits(low, max_query_tokens=queries) <= truncation_bits(
        high, max_query_tokens=queries
    )
    assert truncation_bits(low, max_query_tokens=queries) <= truncation_bits(
        low, max_query_tokens=queries + 1
    )
    assert truncation_bits(low, false_positive=1e-6) <= truncation_bits(low, false_positive=1e-9)


@pytest.mark.parametrize(
    ("size", "queries", "false_positive"), [(0, 1, 1e-9), (1, 0, 1e-9), (1, 1, 0.0), (1, 1, 1.0)]
)
def test_truncation_bits_rejects_nonsense(size: int, queries: int, false_positive: float) -> None:
    with pytest.raises(InputError):
        truncation_bits(size, max_query_tokens=queries, false_positive=false_positive)


def counter_rng(start: int = 0) -> Callable[[int], bytes]:
    counter = itertools.count(start)

    def rng(n: int) -> bytes:
        return bytes(next(counter) % 256 for _ in range(n))

    return rng


def test_pad_values_fills_to_size_with_distinct_sorted_values() -> None:
    real = [5, 77, 5, 1000, 77]
    padded = pad_values(real, size=40, bits=12, rng=counter_rng())
    assert len(padded) == 40
    assert padded == sorted(set(padded))
    assert {5, 77, 1000} <= set(padded)
    assert all(0 <= value < 1 << 12 for value in padded)


def test_pad_values_redraws_collisions_at_small_lambda() -> None:
    """Draws that hit taken values are redrawn, so the padded set never comes up short."""
    script = [bytes([3, 3, 4]), bytes([4, 9]), bytes([200])]
    requests: list[int] = []

    def rng(n: int) -> bytes:
        requests.append(n)
        return script[len(requests) - 1]

    assert pad_values([3], size=4, bits=8, rng=rng) == [3, 4, 9, 200]
    assert requests == [3, 2, 1]


def test_pad_values_exactly_fills_a_tiny_space() -> None:
    padded = pad_values([0, 1], size=16, bits=4, rng=counter_rng(7))
    assert padded == list(range(16))


def test_pad_values_refuses_what_cannot_fit() -> None:
    rng = counter_rng()
    with pytest.raises(InputError):
        pad_values(range(10), size=9, bits=8, rng=rng)
    with pytest.raises(InputError):
        pad_values([], size=17, bits=4, rng=rng)
    with pytest.raises(InputError):
        pad_values([16], size=4, bits=4, rng=rng)
    with pytest.raises(InputError):
        pad_values([1], size=4, bits=4, rng=lambda n: b"")


@given(st.integers(min_value=1025, max_value=1 << 26))
def test_snapshot_buckets_pad_at_most_a_sixteenth(n: int) -> None:
    padded = size_bucket(n, minimum=1024, significant_bits=SNAPSHOT_SIGNIFICANT_BITS)
    assert n <= padded < n * 17 / 16
    assert is_bucket(padded, significant_bits=SNAPSHOT_SIGNIFICANT_BITS)
    assert size_bucket(padded, minimum=1024, significant_bits=SNAPSHOT_SIGNIFICANT_BITS) == padded
