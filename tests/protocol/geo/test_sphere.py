"""The spherical helpers agree with h3's own sphere and with brute force."""

from __future__ import annotations

import itertools
import math
import random

import h3.api.basic_int as h3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hexpsi.protocol.geo import sphere
from hexpsi.protocol.geo.shapes import LatLng

LAT = st.floats(-90, 90)
LNG = st.floats(-180, 180)
POINT = st.tuples(LAT, LNG)
BEARING = st.floats(0, 360)


@settings(max_examples=200, deadline=None)
@given(POINT, POINT)
def test_haversine_is_h3s_great_circle_distance(a, b):
    assert sphere.haversine_m(a, b) == pytest.approx(
        h3.great_circle_distance(a, b, "m"), rel=1e-9, abs=1e-6
    )


@settings(max_examples=200, deadline=None)
@given(st.tuples(st.floats(-89, 89), LNG), BEARING, st.floats(0, 5_000_000))
def test_destination_lands_at_the_distance_and_bearing(start, bearing, distance):
    end = sphere.destination(start, bearing, distance)
    assert -180 <= end[1] <= 180
    assert sphere.haversine_m(start, end) == pytest.approx(distance, abs=1e-6)
    if distance > 1:
        turned = (sphere.initial_bearing_deg(start, end) - bearing + 540) % 360 - 180
        assert abs(turned) < 1e-6


def test_destination_crosses_the_antimeridian_and_the_pole():
    east = sphere.destination((0.0, 179.9), 90.0, 30_000)
    assert -180 < east[1] < -179.6
    over = sphere.destination((89.9, 0.0), 0.0, 30_000)
    assert abs(over[1]) == pytest.approx(180.0)
    assert over[0] < 89.9


@settings(max_examples=100, deadline=None)
@given(POINT, POINT, st.floats(100, 50_000))
def test_densify_stays_on_the_arc_with_short_steps(a, b, step):
    if sphere.haversine_m(a, b) > 2_000_000:
        b = sphere.destination(a, 45.0, 2_000_000)
    points = sphere.densify(a, b, step)
    assert points[0] == a
    assert points[-1] == b
    va, vb = sphere.to_vector(a), sphere.to_vector(b)
    for p, q in itertools.pairwise(points):
        assert sphere.haversine_m(p, q) <= step * (1 + 1e-9) + 1e-6
        assert sphere.point_to_arc_m(sphere.to_vector(p), va, vb) < 1e-3


def _brute_point_to_arc(p: LatLng, a: LatLng, b: LatLng) -> float:
    return min(sphere.haversine_m(p, q) for q in sphere.densify(a, b, 5.0))


@settings(max_examples=60, deadline=None)
@given(
    st.tuples(st.floats(-85, 85), LNG),
    BEARING,
    st.floats(0, 20_000),
    st.floats(-15_000, 15_000),
    st.floats(-8_000, 28_000),
)
def test_point_to_arc_matches_brute_force(a, bearing, length, across, along):
    b = sphere.destination(a, bearing, length)
    p = sphere.destination(sphere.destination(a, bearing, along), bearing + 90, across)
    got = sphere.point_to_arc_m(*(sphere.to_vector(x) for x in (p, a, b)))
    # Brute force samples every 5 m, so it may overshoot by up to 2.5 m.
    assert got <= _brute_point_to_arc(p, a, b) + 1e-6
    assert got >= _brute_point_to_arc(p, a, b) - 2.6


def test_point_to_arc_known_values():
    a, b = sphere.to_vector((0.0, 0.0)), sphere.to_vector((0.0, 1.0))
    one_degree = sphere.EARTH_RADIUS_M * math.radians(1)
    assert sphere.point_to_arc_m(sphere.to_vector((1.0, 0.5)), a, b) == pytest.approx(one_degree)
    assert sphere.point_to_arc_m(sphere.to_vector((0.0, 0.5)), a, b) == pytest.approx(0, abs=1e-6)
    beyond = sphere.point_to_arc_m(sphere.to_vector((0.0, 2.0)), a, b)
    assert beyond == pytest.approx(one_degree)
    assert sphere.point_to_arc_m(sphere.to_vector((3.0, 0.0)), a, a) == pytest.approx(
        3 * one_degree
    )


def test_arcs_cross_and_arc_distances():
    v = sphere.to_vector
    assert sphere.arcs_cross(v((-1, 0)), v((1, 0)), v((0, -1)), v((0, 1)))
    assert not sphere.arcs_cross(v((-1, 0)), v((1, 0)), v((0, 0.5)), v((0, 1)))
    # One great circle: overlapping arcs meet, disjoint ones do not.
    assert sphere.arcs_cross(v((0, 0)), v((0, 2)), v((0, 1)), v((0, 3)))
    assert not sphere.arcs_cross(v((0, 0)), v((0, 1)), v((0, 2)), v((0, 3)))
    # Tiny arcs (a res 15 cell edge is half a metre) still cross.
    tiny = 1e-6
    assert sphere.arcs_cross(v((-tiny, 10)), v((tiny, 10)), v((0, 10 - tiny)), v((0, 10 + tiny)))
    # Same great circles, but the arcs sit on opposite sides of the sphere.
    assert not sphere.arcs_cross(v((-1, 0)), v((1, 0)), v((0, 179)), v((0, -179)))
    one_degree = sphere.EARTH_RADIUS_M * math.radians(1)
    assert sphere.arc_to_arc_m(v((-1, 0)), v((1, 0)), v((0, -1)), v((0, 1))) == 0
    gap = sphere.arc_to_arc_m(v((-1, 0)), v((1, 0)), v((0, 1)), v((0, 2)))
    assert gap == pytest.approx(one_degree)
    assert sphere.arc_to_arc_m(v((-1, 0)), v((1, 0)), v((0, 2)), v((0, 2))) == pytest.approx(
        2 * one_degree
    )


@settings(max_examples=60, deadline=None)
@given(st.tuples(st.floats(-80, 80), LNG), st.integers(0, 2**32))
def test_arc_to_arc_matches_brute_force(center, seed):
    rng = random.Random(seed)
    ends = [sphere.destination(center, rng.uniform(0, 360), rng.uniform(0, 3_000)) for _ in "abcd"]
    a, b, c, d = ends
    got = sphere.arc_to_arc_m(*(sphere.to_vector(p) for p in ends))
    brute = min(
        sphere.point_to_arc_m(sphere.to_vector(p), sphere.to_vector(c), sphere.to_vector(d))
        for p in sphere.densify(a, b, 2.0)
    )
    assert got <= brute + 1e-6
    assert got >= brute - 1.1


def test_winding_number_inside_outside_and_around_a_pole():
    v = sphere.to_vector
    square = [v(p) for p in ((0, 0), (0, 1), (1, 1), (1, 0))]
    assert sphere.winding_number(v((0.5, 0.5)), square) != 0
    assert sphere.winding_number(v((0.5, 1.5)), square) == 0
    assert sphere.winding_number(v((-0.5, -0.5)), square) == 0
    cap = [v((85.0, lng)) for lng in range(-180, 180, 30)]
    assert sphere.winding_number(sphere.NORTH_POLE, cap) != 0
    assert sphere.winding_number(v((87.0, 123.0)), cap) != 0
    assert sphere.winding_number(v((84.0, 10.0)), cap) == 0
    # The ring also separates the south pole from its antipode: only rings that
    # enclose less than a hemisphere read as plain inside/outside.
    assert sphere.winding_number(sphere.SOUTH_POLE, cap) != 0


def test_wgs84_stretch_is_the_worst_local_ratio():
    equator = sphere.EARTH_RADIUS_M / (sphere.WGS84_A_M * (1 - sphere.WGS84_E2))
    assert sphere.wgs84_stretch(0.0) == pytest.approx(equator)
    assert 1.0056 < equator < 1.0057
    assert sphere.wgs84_stretch(60.0) == 1.0
    lats = [0.5 * i for i in range(181)]
    stretches = [sphere.wgs84_stretch(lat) for lat in lats]
    assert all(x >= y for x, y in itertools.pairwise(stretches))
    rng = random.Random(7)
    for _ in range(2000):
        lat = rng.uniform(-89.9, 89.9)
        dlat, dlng = rng.uniform(-1, 1), rng.uniform(-1, 1)
        phi = math.radians(lat)
        s2 = math.sin(phi) ** 2
        meridional = sphere.meridional_radius_m(lat)
        normal = sphere.WGS84_A_M / math.sqrt(1 - sphere.WGS84_E2 * s2)
        on_ellipsoid = math.hypot(meridional * dlat, normal * math.cos(phi) * dlng)
        on_sphere = sphere.EARTH_RADIUS_M * math.hypot(dlat, math.cos(phi) * dlng)
        assert on_sphere <= sphere.wgs84_stretch(lat) * on_ellipsoid * (1 + 1e-12)


@pytest.mark.parametrize("lat", [0.0, 30.0, 60.0, 80.0, 85.0, 88.0])
@pytest.mark.parametrize("length", [1_000.0, 30_000.0])
def test_flat_bow_bounds_the_straight_lat_lng_segment(lat, length):
    """A straight (lat, lng) segment strays from the great-circle arc by less than the bow."""
    rng = random.Random(int(lat * 1000 + length))
    for _ in range(60):
        a = (lat + rng.uniform(-0.2, 0.2), rng.uniform(-179, 179))
        b = sphere.destination(a, rng.uniform(0, 360), length)
        if abs(b[1] - a[1]) > 180:
            continue
        va, vb = sphere.to_vector(a), sphere.to_vector(b)
        stray = max(
            sphere.point_to_arc_m(
                sphere.to_vector((a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))), va, vb
            )
            for t in (i / 16 for i in range(1, 16))
        )
        assert stray <= sphere.flat_bow_m(length, max(abs(a[0]), abs(b[0])))


def test_latitude_extremes():
    points = [(10.0, 0.0), (-3.0, 5.0), (40.0, 1.0)]
    assert sphere.max_abs_lat_deg(points) == 40.0
    assert sphere.min_abs_lat_deg(points) == 0.0
    assert sphere.min_abs_lat_deg([(10.0, 0.0), (40.0, 1.0)]) == 10.0
    assert sphere.normalize_lng(190.0) == pytest.approx(-170.0)
    assert sphere.normalize_lng(-180.0) == -180.0
