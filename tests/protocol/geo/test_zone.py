"""The strike zone's canonical JSON reads back to the very same shapes and times, and nothing
else reads."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.cover import feature_to_cover
from hexpsi.protocol.geo.parse import features_from_geojson
from hexpsi.protocol.geo.shapes import Area, Circle, Path
from hexpsi.protocol.geo.zone import StrikeZone
from hexpsi.protocol.spacetime.interval import Interval

SQUARE = [[38.60, 33.52], [38.63, 33.52], [38.63, 33.49], [38.60, 33.49], [38.60, 33.52]]
HOLE = [[38.61, 33.51], [38.62, 33.51], [38.62, 33.50], [38.61, 33.50], [38.61, 33.51]]
GEOJSON = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "garrison",
            "properties": {"radius_m": 400},
            "geometry": {"type": "MultiPoint", "coordinates": [[38.618, 33.506], [38.62, 33.5]]},
        },
        {
            "type": "Feature",
            "properties": {"buffer_m": 150.5},
            "geometry": {"type": "LineString", "coordinates": [[38.5, 33.4], [38.55, 33.45]]},
        },
        {
            "type": "Feature",
            "id": 7,
            "properties": {},
            "geometry": {"type": "Polygon", "coordinates": [SQUARE, HOLE]},
        },
    ],
}
DEFAULT_RADIUS_M = 25.0


def read_zone() -> StrikeZone:
    features = features_from_geojson(GEOJSON, default_radius_m=DEFAULT_RADIUS_M)
    return StrikeZone(tuple(features), DEFAULT_RADIUS_M)


def test_the_json_form_reads_back_to_the_same_zone() -> None:
    zone = read_zone()
    text = json.dumps(zone.to_json())
    assert StrikeZone.from_json(json.loads(text)) == zone
    assert json.dumps(StrikeZone.from_json(json.loads(text)).to_json()) == text


def test_every_distance_is_written_out_with_the_default_applied() -> None:
    written = read_zone().to_json()
    assert written["default_radius_m"] == DEFAULT_RADIUS_M
    assert written["window"] is None
    garrison, road, area = written["features"]
    assert garrison["id"] == "garrison"
    assert [s["radius_m"] for s in garrison["shapes"]] == [400.0, 400.0]
    assert garrison["shapes"][0] == {
        "type": "Point",
        "coordinates": [38.618, 33.506],
        "radius_m": 400.0,
    }
    assert road["id"] == 1
    assert road["shapes"] == [
        {"type": "LineString", "coordinates": [[38.5, 33.4], [38.55, 33.45]], "buffer_m": 150.5}
    ]
    assert area["id"] == 7
    assert area["shapes"] == [
        {"type": "Polygon", "coordinates": [SQUARE, HOLE], "buffer_m": DEFAULT_RADIUS_M}
    ]


def test_the_shapes_read_back_are_those_the_file_gave() -> None:
    zone = StrikeZone.from_json(read_zone().to_json())
    garrison, road, area = zone.features
    assert garrison.shapes[1] == Circle((33.5, 38.62), 400.0)
    assert road.shapes == (Path(((33.4, 38.5), (33.45, 38.55)), 150.5),)
    (polygon,) = area.shapes
    assert isinstance(polygon, Area)
    assert polygon.exterior == tuple((lat, lng) for lng, lat in SQUARE[:-1])
    assert polygon.holes == (tuple((lat, lng) for lng, lat in HOLE[:-1]),)


def test_the_cover_is_the_union_of_the_features_covers() -> None:
    zone = read_zone()
    expected = set().union(*(feature_to_cover(f, 9) for f in zone.features))
    assert zone.cover(9) == expected
    assert StrikeZone.from_json(zone.to_json()).cover(9) == expected


def test_a_zone_too_large_to_cover_is_refused_before_it_is_built() -> None:
    zone = StrikeZone((read_zone().features[0],), 0.0)
    with pytest.raises(InputError, match="would cover more than 10 cells"):
        zone.cover(9, max_cells=10)


def edit(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    document = copy.deepcopy(read_zone().to_json())
    change(document)
    return document


def shape(document: dict[str, Any], feature: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = document["features"][feature]["shapes"][0]
    return found


BAD: dict[str, Callable[[dict[str, Any]], object]] = {
    "a window": lambda d: d.update(window="2016-06-16T04:00Z/PT2H"),
    "no window member": lambda d: d.pop("window"),
    "an unknown member": lambda d: d.update(colour="red"),
    "no features": lambda d: d.update(features=[]),
    "features not a list": lambda d: d.update(features={}),
    "a feature without shapes": lambda d: d["features"][0].update(shapes=[]),
    "a feature with a name instead of an id": lambda d: d["features"][0].update(name="x"),
    "an empty id": lambda d: d["features"][0].update(id=""),
    "a boolean id": lambda d: d["features"][0].update(id=True),
    "a fractional id": lambda d: d["features"][0].update(id=1.5),
    "a negative radius": lambda d: shape(d).update(radius_m=-1),
    "a radius as text": lambda d: shape(d).update(radius_m="400"),
    "an infinite radius": lambda d: shape(d).update(radius_m=float("inf")),
    "a point without radius": lambda d: shape(d).pop("radius_m"),
    "a point with a buffer": lambda d: shape(d).update(buffer_m=1.0),
    "a line without buffer": lambda d: shape(d, 1).pop("buffer_m"),
    "a latitude out of range": lambda d: shape(d).update(coordinates=[38.6, 91.0]),
    "a NaN longitude": lambda d: shape(d).update(coordinates=[float("nan"), 33.5]),
    "an altitude": lambda d: shape(d).update(coordinates=[38.6, 33.5, 100.0]),
    "a one-point line": lambda d: shape(d, 1).update(coordinates=[[38.5, 33.4]]),
    "an open ring": lambda d: shape(d, 2).update(coordinates=[SQUARE[:-1]]),
    "no rings": lambda d: shape(d, 2).update(coordinates=[]),
    "a multipoint": lambda d: shape(d).update(type="MultiPoint"),
    "a shape that is a list": lambda d: d["features"][0].update(shapes=[[38.6, 33.5]]),
    "a negative default": lambda d: d.update(default_radius_m=-5),
    "a null when": lambda d: d["features"][0].update(when=None),
    "a when per feature, not per shape": lambda d: d["features"][0].update(when=[[0.0, 1.0]]),
    "a when as text": lambda d: d["features"][1].update(when=["2026-12-05T06:00Z/PT2H"]),
    "a when pair of three": lambda d: d["features"][1].update(when=[[0.0, 1.0, 2.0]]),
    "a when ending before it starts": lambda d: d["features"][1].update(when=[[2.0, 1.0]]),
    "a when of infinity": lambda d: d["features"][1].update(when=[[0.0, float("inf")]]),
    "a when of booleans": lambda d: d["features"][1].update(when=[[False, True]]),
    "a zone-level window with timed features": lambda d: (
        d["features"][1].update(when=[[0.0, 1.0]]),
        d.update(window=[0.0, 1.0]),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_anything_but_the_canonical_form_is_an_input_error_saying_where(case: str) -> None:
    with pytest.raises(InputError) as caught:
        StrikeZone.from_json(edit(BAD[case]))
    assert "zone" in caught.value.message


def timed_zone() -> StrikeZone:
    """The zone with a window on the garrison (both points) and an instant on the road."""
    garrison, road, area = read_zone().features
    window = Interval(1_796_450_400.0, 1_796_457_600.123456)
    return StrikeZone(
        (
            dataclasses.replace(garrison, when=(window, window)),
            dataclasses.replace(road, when=(Interval(0.1, 0.1),)),
            area,
        ),
        DEFAULT_RADIUS_M,
    )


def test_a_timed_zone_reads_back_to_the_same_floats() -> None:
    zone = timed_zone()
    written = zone.to_json()
    garrison, road, area = written["features"]
    assert garrison["when"] == [[1_796_450_400.0, 1_796_457_600.123456]] * 2
    assert road["when"] == [[0.1, 0.1]]
    assert "when" not in area
    assert written["window"] is None
    text = json.dumps(written)
    again = StrikeZone.from_json(json.loads(text))
    assert again == zone
    assert [f.when for f in again.features] == [f.when for f in zone.features]
    assert json.dumps(again.to_json()) == text


def test_a_zone_without_time_writes_no_when_at_all() -> None:
    for feature in read_zone().to_json()["features"]:
        assert sorted(feature) == ["id", "shapes"]


def test_integral_seconds_read_as_the_same_interval() -> None:
    document = read_zone().to_json()
    document["features"][1]["when"] = [[1_796_450_400, 1_796_450_460]]
    road = StrikeZone.from_json(document).features[1]
    assert road.when == (Interval(1_796_450_400.0, 1_796_450_460.0),)


def test_a_zone_that_is_not_an_object_is_an_input_error() -> None:
    values: tuple[object, ...] = (None, [], "zone", 3)
    for value in values:
        with pytest.raises(InputError):
            StrikeZone.from_json(value)
