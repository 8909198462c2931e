"""The time tree: outward rounding, covers, what a position contributes, padding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.protocol.spacetime.tree import TimeTree, padded_levels

SLOT = 900
ORIGIN = 1_796_000_400.0  # a whole number of 15-minute slots


def tree(slots: int) -> TimeTree:
    return TimeTree(ORIGIN, SLOT, slots)


def test_the_horizon_starts_on_a_whole_slot_and_covers_the_epoch() -> None:
    made = TimeTree.for_horizon(ORIGIN + 100, ORIGIN + 100 + 24 * 3600, SLOT)
    assert made.origin == ORIGIN
    assert made.slots == 97  # 100 s into the first slot: 24 h reach into a 97th
    assert made.levels == 7
    assert made.horizon.start <= ORIGIN + 100
    assert made.horizon.end >= ORIGIN + 100 + 24 * 3600


def test_intervals_round_outward() -> None:
    t = tree(96)
    assert t.slot_range(Interval(ORIGIN + 10, ORIGIN + 20)) == (0, 0)
    assert t.slot_range(Interval(ORIGIN + 899, ORIGIN + 901)) == (0, 1)
    # A closed interval ending on a boundary touches the next slot too.
    assert t.slot_range(Interval(ORIGIN, ORIGIN + 900)) == (0, 1)
    assert t.slot_range(Interval(ORIGIN - 5000, ORIGIN + 10)) == (0, 0)
    assert t.slot_range(Interval(ORIGIN - 5000, ORIGIN - 10)) is None
    assert t.slot_range(Interval(ORIGIN + 96 * 900, ORIGIN + 97 * 900)) is None


def test_a_window_outside_the_horizon_is_refused_with_what_to_do() -> None:
    t = tree(96)
    with pytest.raises(InputError) as caught:
        t.require_slots(Interval(ORIGIN + 95 * 900, ORIGIN + 97 * 900), "the window")
    assert "outside the epoch's horizon" in caught.value.message
    assert caught.value.hint


@st.composite
def ranges(draw: st.DrawFn) -> tuple[TimeTree, tuple[int, int], tuple[int, int]]:
    slots = draw(st.integers(1, 300))
    a = draw(st.integers(0, slots - 1))
    b = draw(st.integers(a, slots - 1))
    c = draw(st.integers(0, slots - 1))
    d = draw(st.integers(c, slots - 1))
    return tree(slots), (a, b), (c, d)


@given(ranges())
def test_a_cover_holds_a_positions_node_exactly_when_they_share_a_slot(
    case: tuple[TimeTree, tuple[int, int], tuple[int, int]],
) -> None:
    t, position, window = case
    contributed = set(t.position_nodes(position))
    assert len(contributed) == t.position_node_count(position)
    cover = t.window_cover(window)
    share = position[0] <= window[1] and window[0] <= position[1]
    assert bool(contributed & set(cover)) == share


@given(ranges())
def test_a_cover_is_exactly_the_window_and_fits_its_padding(
    case: tuple[TimeTree, tuple[int, int], tuple[int, int]],
) -> None:
    t, _, window = case
    cover = t.window_cover(window)
    covered = set()
    for node in cover:
        first, last = t.node_slots(node)
        covered |= set(range(first, last + 1))
    assert covered == set(range(window[0], window[1] + 1))
    padded = padded_levels(t, window)
    for level in {level for level, _ in cover}:
        assert sum(1 for node in cover if node[0] == level) <= padded.get(level, 0)


@given(st.integers(1, 300), st.integers(1, 300), st.data())
def test_the_padding_shape_depends_only_on_the_length_rounded_to_a_power_of_two(
    slots: int, length: int, data: st.DataObject
) -> None:
    length = min(length, slots)
    t = tree(slots)
    first = data.draw(st.integers(0, slots - length))
    other = data.draw(st.integers(0, slots - length))
    whole = length == slots
    shape = padded_levels(t, (first, first + length - 1))
    assert shape == padded_levels(t, (other, other + length - 1))
    if whole:
        assert shape == {0: 1}
    else:
        assert sum(shape.values()) == 2 * (length.bit_length())


def test_node_durations_stop_at_the_horizon() -> None:
    t = tree(96)  # a tree of 128 leaves
    assert t.node_hours((0, 0)) == 24.0
    assert t.node_hours((7, 5)) == 0.25
    assert t.node_interval((1, 1)).start == ORIGIN + 64 * 900
