"""Theatre bounds: point in polygon, holes, edges, the antimeridian, and swapped strikes."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.parse import read_features
from hexpsi.protocol.geo.shapes import Area, Circle, Feature
from hexpsi.protocol.geo.shapes import Path as Line
from hexpsi.protocol.geo.theatre import Theatre, read_theatre, theatre_from_geojson

GIS = Path(__file__).resolve().parents[2] / "fixtures" / "gis"
SEEDS = Path(__file__).resolve().parents[3] / "seeds"
BOX = [[35.0, 32.0], [43.0, 32.0], [43.0, 38.0], [35.0, 38.0], [35.0, 32.0]]
HOLE = [[38.0, 34.0], [39.0, 34.0], [39.0, 35.0], [38.0, 35.0], [38.0, 34.0]]


def polygon(*rings: list[list[float]]) -> dict[str, object]:
    return {"type": "Polygon", "coordinates": list(rings)}


def syria() -> Theatre:
    return read_theatre((GIS / "qgis_theatre.geojson").read_bytes(), source="theatre")


def test_the_seeds_lie_in_the_theatre_and_the_swapped_strike_does_not() -> None:
    theatre = syria()
    for name in (
        "coalition_protected.geojson",
        "russia_protected.geojson",
        "strike_at_tanf.geojson",
        "strike_far.geojson",
    ):
        theatre.check_features(
            read_features((SEEDS / name).read_bytes(), source=name, default_radius_m=0)
        )
    swapped = read_features(
        (GIS / "qgis_strike_swapped.geojson").read_bytes(), source="s", default_radius_m=0
    )
    with pytest.raises(InputError) as caught:
        theatre.check_features(swapped, hint="the theatre is n/theatre.geojson")
    assert caught.value.explain() == (
        "feature 1 has position [33.52, 38.64] (longitude, latitude) outside the theatre — are "
        "latitude and longitude swapped? (the theatre is n/theatre.geojson)"
    )


def test_every_vertex_counts_but_a_radius_may_reach_past_the_edge() -> None:
    theatre = theatre_from_geojson(polygon(BOX))
    theatre.check_features([Feature("wide", (Circle((32.0, 35.0), 500_000.0),))])
    line = Line(((33.0, 36.0), (34.0, 37.0), (39.0, 37.0)), 10.0)
    with pytest.raises(InputError, match=r"feature 'road' has position \[37, 39\]"):
        theatre.check_features([Feature("road", (line,))])
    hole = ((33.0, 36.0), (33.0, 37.0), (31.9, 36.5))
    area = Area(((33.0, 36.0), (34.0, 36.0), (34.0, 37.0)), (hole,), 0.0)
    with pytest.raises(InputError, match=r"feature 3 has position \[36.5, 31.9\]"):
        theatre.check_features([Feature(3, (area,))])


def test_holes_are_outside_and_edges_and_corners_are_inside() -> None:
    theatre = theatre_from_geojson(polygon(BOX, HOLE))
    assert theatre.contains((33.0, 36.0))
    assert not theatre.contains((34.5, 38.5))  # in the hole
    assert theatre.contains((34.0, 38.5))  # on the hole's edge
    assert theatre.contains((32.0, 35.0))  # a corner
    assert theatre.contains((38.0, 40.0))  # the north edge
    assert not theatre.contains((38.0001, 40.0))
    assert not theatre.contains((33.0, 34.999))


def test_a_concave_ring_against_brute_force() -> None:
    """A star of 400 corners (many latitude bands) against an unbanded even-odd count."""
    rng = random.Random(5)
    corners = []
    for i in range(400):
        angle = 2 * math.pi * i / 400
        reach = 1.0 + 0.8 * (i % 2) + 0.1 * rng.random()
        corners.append([reach * math.cos(angle), reach * math.sin(angle)])
    theatre = theatre_from_geojson(polygon([*corners, corners[0]]))

    def brute(lat: float, lng: float) -> bool:
        inside = False
        for (x1, y1), (x2, y2) in zip(corners, [*corners[1:], corners[0]], strict=True):
            if (y1 > lat) != (y2 > lat) and lng < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
                inside = not inside
        return inside

    for _ in range(3000):
        lat, lng = rng.uniform(-2.2, 2.2), rng.uniform(-2.2, 2.2)
        assert theatre.contains((lat, lng)) == brute(lat, lng), (lat, lng)


def test_a_theatre_may_not_cross_the_antimeridian_but_may_end_on_it() -> None:
    across = polygon(
        [[170.0, -20.0], [-170.0, -20.0], [-170.0, -10.0], [170.0, -10.0], [170.0, -20.0]]
    )
    with pytest.raises(InputError) as caught:
        theatre_from_geojson({"type": "Feature", "properties": {}, "geometry": across})
    assert caught.value.explain() == (
        "feature.geometry.coordinates[0]: an edge from longitude 170 to -170 crosses the "
        "antimeridian (cut the polygon at the antimeridian into a MultiPolygon with one part on "
        "each side, as RFC 7946 (section 3.1.9) asks)"
    )
    cut = {
        "type": "MultiPolygon",
        "coordinates": [
            [[[170.0, -20.0], [180.0, -20.0], [180.0, -10.0], [170.0, -10.0], [170.0, -20.0]]],
            [[[-180.0, -20.0], [-170.0, -20.0], [-170.0, -10.0], [-180.0, -10.0], [-180.0, -20.0]]],
        ],
    }
    theatre = theatre_from_geojson(cut)
    for lng in (175.0, 180.0, -180.0, -175.0):
        assert theatre.contains((-15.0, lng))
    assert not theatre.contains((-15.0, 0.0))
    assert theatre.describe() == (
        "2 polygons (8 corners), latitude -20 to -10, longitude -180 to 180"
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"type": "Point", "coordinates": [1, 2]},
            'geometry: a theatre is made of Polygons and MultiPolygons, got "Point"',
        ),
        (
            {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": None}]},
            "features[0].geometry: a theatre is made of Polygons and MultiPolygons, got null",
        ),
        ({"type": "FeatureCollection", "features": []}, "the FeatureCollection has no features"),
        ({"type": "MultiPolygon", "coordinates": []}, "a MultiPolygon needs at least one polygon"),
        (polygon(BOX[:-1]), "ring is not closed"),
        (
            {**polygon(BOX), "crs": {"type": "name", "properties": {"name": "EPSG:3857"}}},
            "coordinates are in EPSG:3857",
        ),
        ([1, 2], "a theatre must be a GeoJSON object"),
    ],
)
def test_bad_theatres_say_what_to_fix(document: object, message: str) -> None:
    with pytest.raises(InputError) as caught:
        theatre_from_geojson(document)
    assert message in caught.value.explain()


def test_reading_names_the_file() -> None:
    with pytest.raises(InputError, match=r"^t\.geojson: not valid JSON"):
        read_theatre(b"{", source="t.geojson")
    with pytest.raises(InputError, match=r"^t\.geojson: is not UTF-8"):
        read_theatre(b"\xff", source="t.geojson")
    theatre = read_theatre(json.dumps(polygon(BOX, HOLE)).encode(), source="t")
    assert theatre.describe() == (
        "1 polygon (8 corners, 1 hole), latitude 32 to 38, longitude 35 to 43"
    )
