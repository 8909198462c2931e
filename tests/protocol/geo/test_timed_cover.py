"""Covers of timed features: every place a moving unit can be is covered at the time it is there."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime

import h3.api.basic_int as h3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hexpsi.protocol.errors import InputError, LocalProtocolError
from hexpsi.protocol.geo import sphere
from hexpsi.protocol.geo.cover import shape_to_cover
from hexpsi.protocol.geo.shapes import Circle, Feature, LatLng
from hexpsi.protocol.geo.timed_cover import merge_intervals, split_timed, timed_cover
from hexpsi.protocol.geo.timing import route_legs
from hexpsi.protocol.spacetime.interval import Interval

T0 = datetime(2026, 12, 5, 6, tzinfo=UTC).timestamp()
HOUR = 3600.0
RES = 9
LIMIT = 1_000_000


def interval(start_h: float, end_h: float) -> Interval:
    return Interval(T0 + start_h * HOUR, T0 + end_h * HOUR)


def slerp(a: LatLng, b: LatLng, fraction: float) -> LatLng:
    """The point ``fraction`` of the way along the great-circle arc from ``a`` to ``b``."""
    va, vb = sphere.to_vector(a), sphere.to_vector(b)
    omega = sphere.angle_between(va, vb)
    if omega < 1e-12:
        return a
    wa = math.sin((1 - fraction) * omega) / math.sin(omega)
    wb = math.sin(fraction * omega) / math.sin(omega)
    return sphere.to_latlng(tuple(wa * x + wb * y for x, y in zip(va, vb, strict=True)))  # type: ignore[arg-type]


# --- merging --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_h", "merged_h"),
    [
        ([(0, 1), (1, 2)], [(0, 2)]),
        ([(2, 3), (0, 1)], [(0, 1), (2, 3)]),
        ([(0, 4), (1, 2)], [(0, 4)]),
        ([(0, 2), (1, 3), (5, 5), (5, 6)], [(0, 3), (5, 6)]),
        ([(3, 3)], [(3, 3)]),
        ([], []),
    ],
)
def test_overlapping_and_touching_intervals_merge_and_others_stay_apart(
    given_h: list[tuple[float, float]], merged_h: list[tuple[float, float]]
) -> None:
    assert merge_intervals(interval(*i) for i in given_h) == [interval(*i) for i in merged_h]


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 20)), max_size=20), st.data())
def test_merging_keeps_exactly_the_moments_it_was_given(
    spans: list[tuple[int, int]], data: st.DataObject
) -> None:
    intervals = [Interval(float(s), float(s + d)) for s, d in spans]
    merged = merge_intervals(intervals)
    assert all(a.end < b.start for a, b in itertools.pairwise(merged))
    moment = data.draw(st.floats(-5, 130))
    assert any(i.start <= moment <= i.end for i in intervals) == any(
        m.start <= moment <= m.end for m in merged
    )


# --- covers ---------------------------------------------------------------------------------


def test_each_cell_is_paired_with_its_shapes_interval_sorted_by_cell_then_start() -> None:
    here, there = (33.5, 38.6), (33.9, 38.9)
    morning = Feature("m", (Circle(here, 300.0), Circle(there, 300.0)), (interval(0, 1),) * 2)
    evening = Feature("e", (Circle(here, 300.0),), (interval(8, 9),))
    cover = timed_cover([morning, evening], RES, LIMIT)
    assert cover == sorted(cover, key=lambda pair: (pair[0], pair[1].start))
    near = shape_to_cover(Circle(here, 300.0), RES)
    far = shape_to_cover(Circle(there, 300.0), RES)
    assert {cell for cell, _ in cover} == near | far
    for cell in near:
        assert [span for c, span in cover if c == cell] == [interval(0, 1), interval(8, 9)]
    for cell in far:
        assert [span for c, span in cover if c == cell] == [interval(0, 1)]


def test_consecutive_legs_through_one_cell_hold_it_from_the_first_start_to_the_last_end() -> None:
    points = [(33.5, 38.6), (33.5, 38.601), (33.5, 38.602)]
    legs, when = route_legs(points, [T0, T0 + 60, T0 + 120], 10.0)
    cover = timed_cover([Feature("convoy", legs, when)], RES, LIMIT)
    shared = h3.latlng_to_cell(*points[1], RES)
    assert [span for cell, span in cover if cell == shared] == [Interval(T0, T0 + 120)]
    assert len(cover) == len({cell for cell, _ in cover})


def test_standing_features_are_not_covered_with_a_time_and_size_is_bounded() -> None:
    standing = Feature("s", (Circle((33.5, 38.6), 10.0),))
    with pytest.raises(LocalProtocolError, match="feature 's' is standing"):
        timed_cover([standing], RES, LIMIT)
    huge = Feature("h", (Circle((33.5, 38.6), 50_000.0),), (interval(0, 1),))
    with pytest.raises(InputError, match="would cover more than 1,000 cells at resolution 9"):
        timed_cover([huge], RES, 1000)


def test_split_timed_keeps_the_order_of_each_kind() -> None:
    a = Feature("a", (Circle((0, 0), 1.0),))
    b = Feature("b", (Circle((0, 0), 1.0),), (interval(0, 1),))
    c = Feature("c", (Circle((0, 0), 1.0),))
    assert split_timed([a, b, c]) == ([a, c], [b])


@st.composite
def routes(draw: st.DrawFn) -> tuple[list[LatLng], list[float], float]:
    """A route of 2-4 vertices anywhere off the poles, legs up to 15 km, times increasing."""
    start = (draw(st.floats(-75, 75)), draw(st.floats(-175, 175)))
    points = [start]
    for _ in range(draw(st.integers(1, 3))):
        bearing = draw(st.floats(0, 360))
        points.append(sphere.destination(points[-1], bearing, draw(st.floats(0, 15_000))))
    times = [T0 + draw(st.floats(-86_400, 86_400))]
    for _ in points[1:]:
        times.append(times[-1] + draw(st.floats(0, 4 * HOUR)))
    return points, times, draw(st.floats(0, 1500))


@settings(max_examples=60, deadline=None)
@given(routes(), st.data())
def test_every_place_a_moving_unit_can_be_is_covered_at_that_time(
    route: tuple[list[LatLng], list[float], float], data: st.DataObject
) -> None:
    """Linear interpolation along each leg's great-circle arc at a time in the leg's
    interval, and any point within the buffer of it, lies in a cell the cover pairs with
    an interval holding that time."""
    points, times, buffer_m = route
    legs, when = route_legs(points, times, buffer_m)
    cover = timed_cover([Feature("unit", legs, when)], RES, LIMIT)
    held: dict[int, list[Interval]] = {}
    for cell, span in cover:
        held.setdefault(cell, []).append(span)
    leg = data.draw(st.integers(0, len(legs) - 1))
    fraction = data.draw(st.floats(0, 1))
    moment = when[leg].start + fraction * (when[leg].end - when[leg].start)
    moment = min(max(moment, when[leg].start), when[leg].end)
    unit = slerp(points[leg], points[leg + 1], fraction)
    reach = data.draw(st.floats(0, 0.999)) * buffer_m
    place = sphere.destination(unit, data.draw(st.floats(0, 360)), reach)
    cell = h3.latlng_to_cell(*place, RES)
    assert any(span.start <= moment <= span.end for span in held.get(cell, [])), (cell, moment)
