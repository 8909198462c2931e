"""The guarantee hexpsi sells, checked against exact haversine distance.

* Two points within r_strike + r_protect of each other: their covers share a cell.
* Two points farther apart than the stretched radii plus ``SLACK_EDGES`` cell edges:
  their covers never share one (the bounded false-alarm slack).
* Every point of a disk, of a line's corridor and of a buffered polygon has its
  cell in the cover.

At resolutions 5..12, anywhere on Earth, with extra weight near the poles,
across the antimeridian and at each resolution's 12 pentagons. Every property
runs twice: a bounded default run, and a ``slow`` profile with many more
examples (``.venv/bin/pytest -m slow tests/protocol/geo/test_cover_properties.py``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import h3.api.basic_int as h3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hexpsi.protocol.geo import cover, sphere
from hexpsi.protocol.geo.shapes import Area, Circle, LatLng, Path

RESOLUTIONS = st.integers(5, 12)
SLACK_EDGES = 2.3
"""Asserted false-alarm slack in average edge lengths; the largest measured is about 2.06.

Two cells meet only if some cell touches both drawn shapes, and no H3 cell is wider
than 2 x 1.0998 average edges; drawn polygons stick out 0.05 edges at most each.
"""
MAX_STRETCH = sphere.wgs84_stretch(0.0)
PENTAGONS = {res: [h3.cell_to_latlng(p) for p in h3.get_pentagons(res)] for res in range(5, 13)}
SLOW_ONLY = pytest.mark.skipif(
    "'slow' not in (config.getoption('markexpr') or '')",
    reason="opt-in profile: pytest -m slow",
)


def _edge(res: int) -> float:
    return float(h3.average_hexagon_edge_length(res, "m"))


@st.composite
def places(draw: st.DrawFn, res: int) -> LatLng:
    """A point anywhere, near a pole, on the antimeridian or next to a pentagon."""
    kind = draw(st.sampled_from(["anywhere", "pole", "antimeridian", "pentagon"]))
    if kind == "anywhere":
        return (math.degrees(math.asin(draw(st.floats(-1, 1)))), draw(st.floats(-180, 180)))
    if kind == "pole":
        return (
            draw(st.sampled_from([-1, 1])) * draw(st.floats(83, 90)),
            draw(st.floats(-180, 180)),
        )
    if kind == "antimeridian":
        spread = math.degrees(4 * _edge(res) / sphere.EARTH_RADIUS_M)
        lng = sphere.normalize_lng(180.0 + draw(st.floats(-spread, spread)))
        return (draw(st.floats(-80, 80)), lng)
    pentagon = draw(st.sampled_from(PENTAGONS[res]))
    return sphere.destination(pentagon, draw(st.floats(0, 360)), draw(st.floats(0, 4 * _edge(res))))


def _radius(data: st.DataObject, res: int, edges: float) -> float:
    return data.draw(st.sampled_from([0.0, 1.0])) * data.draw(st.floats(0, edges)) * _edge(res)


def _cell(point: LatLng, res: int) -> int:
    return int(h3.latlng_to_cell(point[0], point[1], res))


# --- the properties ---------------------------------------------------------------------


def _near_points_share_a_cell(data: st.DataObject) -> None:
    res = data.draw(RESOLUTIONS)
    strike = data.draw(places(res))
    r_strike, r_protect = _radius(data, res, 8), _radius(data, res, 8)
    fraction = data.draw(st.one_of(st.just(1.0), st.floats(0.9, 1.0), st.floats(0, 1)))
    protect = sphere.destination(
        strike, data.draw(st.floats(0, 360)), fraction * (r_strike + r_protect)
    )
    assert sphere.haversine_m(strike, protect) <= (r_strike + r_protect) * (1 + 1e-12) + 1e-6
    strike_cells = cover.shape_to_cover(Circle(strike, r_strike), res)
    protect_cells = cover.shape_to_cover(Circle(protect, r_protect), res)
    assert strike_cells & protect_cells


def _far_points_never_share_a_cell(data: st.DataObject) -> None:
    res = data.draw(RESOLUTIONS)
    strike = data.draw(places(res))
    r_strike, r_protect = _radius(data, res, 8), _radius(data, res, 8)
    beyond = MAX_STRETCH * (r_strike + r_protect) + (
        SLACK_EDGES + data.draw(st.floats(0, 2))
    ) * _edge(res)
    protect = sphere.destination(strike, data.draw(st.floats(0, 360)), beyond)
    strike_cells = cover.shape_to_cover(Circle(strike, r_strike), res)
    protect_cells = cover.shape_to_cover(Circle(protect, r_protect), res)
    assert not strike_cells & protect_cells


def _disk_points_are_covered(data: st.DataObject) -> None:
    res = data.draw(RESOLUTIONS)
    center = data.draw(places(res))
    radius = _radius(data, res, 12)
    cells = cover.shape_to_cover(Circle(center, radius), res)
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    for _ in range(40):
        # Most samples hug the rim, where cells get missed.
        point = sphere.destination(center, rng.uniform(0, 360), radius * (1 - rng.random() ** 4))
        assert _cell(point, res) in cells


def _near_arc(rng: random.Random, a: LatLng, b: LatLng, buffer_m: float) -> LatLng:
    """A point within ``buffer_m`` of the arc a-b: off a point of it, often at right angles."""
    skeleton = sphere.densify(a, b, max(1.0, sphere.haversine_m(a, b) / 40))
    i = rng.randrange(len(skeleton))
    offset = buffer_m * (1 - rng.random() ** 3)
    if rng.random() < 0.3:
        return sphere.destination(skeleton[i], rng.uniform(0, 360), offset)
    if i < len(skeleton) - 1:
        bearing = sphere.initial_bearing_deg(skeleton[i], b)
    else:
        bearing = sphere.initial_bearing_deg(b, a) + 180
    return sphere.destination(skeleton[i], bearing + rng.choice([-90, 90]), offset)


def _line_corridor_is_covered(data: st.DataObject) -> None:
    res = data.draw(RESOLUTIONS)
    points = [data.draw(places(res))]
    for _ in range(data.draw(st.integers(1, 3))):
        step = data.draw(st.floats(0, 15)) * _edge(res)
        points.append(sphere.destination(points[-1], data.draw(st.floats(0, 360)), step))
    buffer_m = _radius(data, res, 4)
    cells = cover.shape_to_cover(Path(tuple(points), buffer_m), res)
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    for _ in range(60):
        i = rng.randrange(len(points) - 1)
        assert _cell(_near_arc(rng, points[i], points[i + 1], buffer_m), res) in cells


def _inside(point: LatLng, exterior: list[sphere.Vec], holes: list[list[sphere.Vec]]) -> bool:
    v = sphere.to_vector(point)
    return sphere.winding_number(v, exterior) != 0 and not any(
        sphere.winding_number(v, hole) for hole in holes
    )


def _buffered_area_is_covered(data: st.DataObject) -> None:
    res = data.draw(RESOLUTIONS)
    center = data.draw(places(res))
    size = data.draw(st.floats(2, 12)) * _edge(res)
    count = data.draw(st.integers(3, 9))
    exterior = tuple(
        sphere.destination(
            center,
            360 * i / count + data.draw(st.floats(0, 300 / count)),
            size * data.draw(st.floats(0.3, 1)),
        )
        for i in range(count)
    )
    holes: tuple[tuple[LatLng, ...], ...] = ()
    if data.draw(st.booleans()):
        holes = (tuple(sphere.destination(center, -90.0 * i, 0.2 * size) for i in range(4)),)
    buffer_m = _radius(data, res, 3)
    cells = cover.shape_to_cover(Area(exterior, holes, buffer_m), res)
    rings = [exterior, *holes]
    ext_v = [sphere.to_vector(p) for p in exterior]
    holes_v = [[sphere.to_vector(p) for p in hole] for hole in holes]
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    for _ in range(80):
        if rng.random() < 0.4:
            point = sphere.destination(center, rng.uniform(0, 360), rng.uniform(0, size))
            if not _inside(point, ext_v, holes_v):
                continue
        else:
            ring = rng.choice(rings)
            i = rng.randrange(len(ring))
            point = _near_arc(rng, ring[i], ring[(i + 1) % len(ring)], buffer_m)
        assert _cell(point, res) in cells


# --- default and slow profiles ------------------------------------------------------------

Check = Callable[[st.DataObject], None]


def _profiles(check: Check, default: int, slow: int) -> tuple[Check, Check]:
    fast_test = settings(max_examples=default, deadline=None)(given(st.data())(check))
    slow_test = SLOW_ONLY(
        pytest.mark.slow(settings(max_examples=slow, deadline=None)(given(st.data())(check)))
    )
    return fast_test, slow_test


test_near_points_share_a_cell, test_near_points_share_a_cell_slow = _profiles(
    _near_points_share_a_cell, 400, 20_000
)
test_far_points_never_share_a_cell, test_far_points_never_share_a_cell_slow = _profiles(
    _far_points_never_share_a_cell, 300, 10_000
)
test_disk_points_are_covered, test_disk_points_are_covered_slow = _profiles(
    _disk_points_are_covered, 300, 10_000
)
test_line_corridor_is_covered, test_line_corridor_is_covered_slow = _profiles(
    _line_corridor_is_covered, 150, 5_000
)
test_buffered_area_is_covered, test_buffered_area_is_covered_slow = _profiles(
    _buffered_area_is_covered, 150, 5_000
)
