"""The seeds scenario says what the June 2016 story says, measured with haversine.

Gaps are edge to edge: the great-circle distance between two shapes' cores
(points, line and ring vertices, edges sampled every 50 m) minus the radius or
buffer of each. A gap below zero means the zones overlap.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable
from pathlib import Path

import pytest

from hexpsi.protocol.geo.cover import feature_to_cover
from hexpsi.protocol.geo.parse import read_features
from hexpsi.protocol.geo.shapes import Area, Circle, Feature, LatLng, Shape

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
EARTH_RADIUS_KM = 6371.0088
SAMPLE_STEP_KM = 0.05
CLAIMED_KM = 300.0


def haversine_km(a: LatLng, b: LatLng) -> float:
    lat1, lng1, lat2, lng2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def core_points(shape: Shape) -> list[LatLng]:
    """The shape's centre, or its vertices plus its edges sampled every 50 m."""
    if isinstance(shape, Circle):
        return [shape.center]
    if isinstance(shape, Area):
        chains = [(*ring, ring[0]) for ring in (shape.exterior, *shape.holes)]
    else:
        chains = [shape.points]
    points: list[LatLng] = []
    for chain in chains:
        for a, b in itertools.pairwise(chain):
            steps = max(1, math.ceil(haversine_km(a, b) / SAMPLE_STEP_KM))
            points += [
                (a[0] + (b[0] - a[0]) * i / steps, a[1] + (b[1] - a[1]) * i / steps)
                for i in range(steps)
            ]
        points.append(chain[-1])
    return points


def grows_by_km(shape: Shape) -> float:
    return (shape.radius_m if isinstance(shape, Circle) else shape.buffer_m) / 1000


def inside(point: LatLng, area: Area) -> bool:
    """Even-odd ray casting in lat/lng; fine for the small polygons used here."""
    crossings = 0
    for ring in (area.exterior, *area.holes):
        for (lat1, lng1), (lat2, lng2) in zip(ring, (*ring[1:], ring[0]), strict=True):
            if (lat1 > point[0]) != (lat2 > point[0]):
                lng_at = lng1 + (point[0] - lat1) * (lng2 - lng1) / (lat2 - lat1)
                crossings += lng_at > point[1]
    return crossings % 2 == 1


def shape_gap_km(a: Shape, b: Shape) -> float:
    for one, other in ((a, b), (b, a)):
        if isinstance(one, Area) and any(inside(p, one) for p in core_points(other)):
            return -grows_by_km(a) - grows_by_km(b)
    core = min(haversine_km(p, q) for p in core_points(a) for q in core_points(b))
    return core - grows_by_km(a) - grows_by_km(b)


def gap_km(a: Feature, b: Feature) -> float:
    return min(shape_gap_km(s, t) for s in a.shapes for t in b.shapes)


def load(name: str) -> dict[str | int, Feature]:
    path = SEEDS / name
    features = read_features(path.read_bytes(), source=str(path), default_radius_m=0)
    return {feature.id: feature for feature in features}


@pytest.fixture(scope="module")
def coalition() -> dict[str | int, Feature]:
    return load("coalition_protected.geojson")


@pytest.fixture(scope="module")
def russia() -> dict[str | int, Feature]:
    return load("russia_protected.geojson")


@pytest.fixture(scope="module")
def strike_at_tanf() -> Feature:
    return load("strike_at_tanf.geojson")["strike-at-tanf"]


@pytest.fixture(scope="module")
def strike_far() -> Feature:
    return load("strike_far.geojson")["strike-far"]


EXPECTED_IDS = {
    "coalition_protected.geojson": [
        "at-tanf-garrison",
        "idlib-designated-area",
        "marea-designated-position",
        "azaz-designated-position",
    ],
    "russia_protected.geojson": ["hmeimim-air-base", "tartus-naval-facility"],
    "strike_at_tanf.geojson": ["strike-at-tanf"],
    "strike_far.geojson": ["strike-far"],
    "coalition_convoy.geojson": ["aid-convoy-route"],
    "strike_convoy_road.geojson": ["strike-convoy-road"],
}


@pytest.mark.parametrize(("name", "ids"), EXPECTED_IDS.items())
def test_seed_files_have_stable_ids_and_names(name: str, ids: list[str]) -> None:
    document = json.loads((SEEDS / name).read_text())
    assert document["type"] == "FeatureCollection"
    assert [f["id"] for f in document["features"]] == ids
    assert all(f["properties"]["name"].strip() for f in document["features"])
    assert list(load(name)) == ids


def test_named_places_sit_where_the_story_puts_them(
    coalition: dict[str | int, Feature], russia: dict[str | int, Feature]
) -> None:
    places = {
        "at-tanf-garrison": (coalition, (33.506, 38.618)),
        "hmeimim-air-base": (russia, (35.412, 35.945)),
        "tartus-naval-facility": (russia, (34.89, 35.87)),
    }
    for fid, (side, where) in places.items():
        [shape] = side[fid].shapes
        assert isinstance(shape, Circle)
        assert haversine_km(shape.center, where) < 1.0
        assert shape.radius_m > 0
    [idlib] = coalition["idlib-designated-area"].shapes
    assert isinstance(idlib, Area)
    assert inside((35.93, 36.63), idlib)
    assert idlib.buffer_m > 0


def test_strike_at_tanf_hits_the_garrison_zone(
    coalition: dict[str | int, Feature], strike_at_tanf: Feature
) -> None:
    assert gap_km(strike_at_tanf, coalition["at-tanf-garrison"]) < -1.0


def test_strike_at_tanf_is_over_300_km_from_every_other_designated_position(
    coalition: dict[str | int, Feature], strike_at_tanf: Feature
) -> None:
    """Both sides' statements hold at once: only a shared check would have caught it."""
    others = [f for fid, f in coalition.items() if fid != "at-tanf-garrison"]
    assert others
    assert min(gap_km(strike_at_tanf, f) for f in others) > CLAIMED_KM


def test_far_strike_is_over_300_km_from_every_coalition_position(
    coalition: dict[str | int, Feature], strike_far: Feature
) -> None:
    # Edge sampling can overstate a distance by half a step; take that off first.
    nearest = min(gap_km(strike_far, f) for f in coalition.values())
    assert nearest - SAMPLE_STEP_KM / 2 > CLAIMED_KM


@pytest.mark.parametrize("strike_name", ["strike_at_tanf", "strike_far"])
def test_strikes_stay_clear_of_the_russian_positions(
    russia: dict[str | int, Feature], strike_name: str, request: pytest.FixtureRequest
) -> None:
    strike: Feature = request.getfixturevalue(strike_name)
    assert min(gap_km(strike, f) for f in russia.values()) > 100.0


def test_the_road_strike_meets_the_convoy_route_and_nothing_standing(
    coalition: dict[str | int, Feature], russia: dict[str | int, Feature]
) -> None:
    """Only time can clear the road strike: it lies on the convoy's route, and more than
    25 km from every position either side protects all the time."""
    strike = load("strike_convoy_road.geojson")["strike-convoy-road"]
    route = load("coalition_convoy.geojson")["aid-convoy-route"]
    assert gap_km(strike, route) < -0.5
    standing = [*coalition.values(), *russia.values()]
    assert min(gap_km(strike, f) for f in standing) > 25.0


def test_the_convoy_schedule_has_one_time_per_vertex() -> None:
    document = json.loads((SEEDS / "coalition_convoy.geojson").read_text())
    (feature,) = document["features"]
    hours = feature["properties"]["schedule_hours"]
    assert len(hours) == len(feature["geometry"]["coordinates"])
    assert hours == sorted(hours)


def test_the_two_sides_protect_nothing_near_each_other(
    coalition: dict[str | int, Feature], russia: dict[str | int, Feature]
) -> None:
    assert min(gap_km(c, r) for c in coalition.values() for r in russia.values()) > 50.0


# --- what hexpsi's covers make of it (res 9 is the deployment default, 5 the
# coarsest token resolution) ------------------------------------------------------


def cover(features: Iterable[Feature], res: int) -> set[int]:
    return set().union(*(feature_to_cover(f, res) for f in features))


@pytest.mark.parametrize("res", [5, 7, 9])
def test_covers_catch_the_at_tanf_strike_and_only_the_garrison(
    coalition: dict[str | int, Feature], strike_at_tanf: Feature, res: int
) -> None:
    strike = feature_to_cover(strike_at_tanf, res)
    hits = {fid for fid, f in coalition.items() if strike & feature_to_cover(f, res)}
    assert hits == {"at-tanf-garrison"}


@pytest.mark.parametrize("res", [5, 7, 9])
def test_covers_clear_the_far_strike(
    coalition: dict[str | int, Feature],
    russia: dict[str | int, Feature],
    strike_far: Feature,
    res: int,
) -> None:
    strike = feature_to_cover(strike_far, res)
    assert strike
    assert not strike & cover(coalition.values(), res)
    assert not strike & cover(russia.values(), res)


@pytest.mark.parametrize("res", [5, 9])
def test_covers_of_the_two_sides_share_no_cell(
    coalition: dict[str | int, Feature], russia: dict[str | int, Feature], res: int
) -> None:
    assert not cover(coalition.values(), res) & cover(russia.values(), res)


def test_gap_measure_sees_overlap_and_containment() -> None:
    """The ruler used above: touching circles, a point inside a polygon."""
    one_km_apart = (Circle((0.0, 0.0), 600.0), Circle((0.0, 1 / 111.195), 600.0))
    assert shape_gap_km(*one_km_apart) == pytest.approx(-0.2, abs=0.01)
    square = Area(((0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0)), (), 0.0)
    assert shape_gap_km(square, Circle((0.5, 0.5), 0.0)) <= 0
    assert shape_gap_km(square, Circle((0.5, 2.0), 0.0)) == pytest.approx(111.2, abs=0.5)
