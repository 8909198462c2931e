"""Uniform choices from injected bytes: rejection, not reduction, so no draw is biased."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hexpsi.protocol.randomness import shuffle_in_place, uniform_below
from tests.protocol.helpers import DeterministicRng


class ScriptedRng:
    """Returns the given bytes in order and records how many were asked for."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.requests: list[int] = []

    def __call__(self, n: int) -> bytes:
        self.requests.append(n)
        chunk, self.data = self.data[:n], self.data[n:]
        assert len(chunk) == n, "the script ran out of bytes"
        return chunk


def test_values_at_or_above_the_bound_are_rejected_not_reduced() -> None:
    rng = ScriptedRng(bytes([7, 6, 5, 4]))
    assert uniform_below(rng, 5) == 4
    assert rng.requests == [1, 1, 1, 1]


def test_high_bits_are_masked_away() -> None:
    assert uniform_below(ScriptedRng(bytes([0xFC])), 5) == 4
    assert uniform_below(ScriptedRng(bytes([0xFF, 0x03])), 1000) == 0x303
    assert uniform_below(ScriptedRng(bytes([0x80, 0x00])), 1 << 15) == 0


def test_draws_are_as_wide_as_the_bound_needs() -> None:
    rng = ScriptedRng(bytes(3))
    assert uniform_below(rng, 1 << 16) == 0
    assert uniform_below(rng, 256) == 0
    assert rng.requests == [2, 1]


def test_bound_one_needs_no_randomness_and_bad_bounds_are_refused() -> None:
    rng = ScriptedRng(b"")
    assert uniform_below(rng, 1) == 0
    assert rng.requests == []
    for bound in (0, -3):
        with pytest.raises(ValueError, match="positive"):
            uniform_below(rng, bound)


@settings(max_examples=100)
@given(st.integers(min_value=1, max_value=1 << 70), st.binary(min_size=1, max_size=8))
def test_results_lie_below_the_bound(bound: int, seed: bytes) -> None:
    assert 0 <= uniform_below(DeterministicRng(seed), bound) < bound


def test_every_value_is_about_equally_likely() -> None:
    rng = DeterministicRng(b"uniform")
    counts = Counter(uniform_below(rng, 6) for _ in range(6000))
    assert sorted(counts) == list(range(6))
    assert all(850 <= count <= 1150 for count in counts.values()), counts


@settings(max_examples=50)
@given(st.lists(st.integers(), max_size=30), st.binary(min_size=1, max_size=8))
def test_shuffle_is_a_permutation(items: list[int], seed: bytes) -> None:
    shuffled = list(items)
    shuffle_in_place(shuffled, DeterministicRng(seed))
    assert sorted(shuffled) == sorted(items)


def test_shuffle_reaches_every_order_about_equally_often() -> None:
    rng = DeterministicRng(b"shuffle")
    counts: Counter[tuple[int, ...]] = Counter()
    for _ in range(2400):
        items = [0, 1, 2, 3]
        shuffle_in_place(items, rng)
        counts[tuple(items)] += 1
    assert set(counts) == set(itertools.permutations(range(4)))
    assert all(60 <= count <= 140 for count in counts.values()), counts


def test_shuffle_of_fewer_than_two_items_draws_nothing() -> None:
    rng = ScriptedRng(b"")
    for items in ([], [1]):
        shuffle_in_place(items, rng)
    assert rng.requests == []
