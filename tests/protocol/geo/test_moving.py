"""OGC Moving Features JSON (19-045r3) moving points: Linear, Step and Discrete, and refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.crs import GREGORIAN_TRS
from hexpsi.protocol.geo.parse import read_source
from hexpsi.protocol.geo.shapes import Circle, Path
from hexpsi.protocol.geo.timing import Role, TimeKind, TimeRules
from hexpsi.protocol.spacetime.interval import Interval

T0 = datetime(2026, 12, 5, 6, tzinfo=UTC).timestamp()
COORDINATES = [[38.60, 33.50, 420.0], [38.61, 33.50, 425.0], [38.63, 33.52, 430.0]]
DATETIMES = ["2026-12-05T06:00:00Z", "2026-12-05T06:20:00Z", "2026-12-05T07:00:00Z"]
MOMENTS = [T0, T0 + 1200, T0 + 3600]
POINTS = [(lat, lng) for lng, lat, _ in COORDINATES]


def moving_point(**members: object) -> dict[str, Any]:
    return {"type": "MovingPoint", "coordinates": COORDINATES, "datetimes": DATETIMES, **members}


def moving_feature(temporal: object, **members: object) -> dict[str, Any]:
    """A Feature as MF-JSON writes one: the trajectory also drawn as its geometry."""
    return {
        "type": "Feature",
        "id": "patrol",
        "geometry": {"type": "LineString", "coordinates": COORDINATES},
        "temporalGeometry": temporal,
        "properties": {"radius_m": 80},
        **members,
    }


def read(document: object, role: Role = Role.POSITIONS) -> Any:
    return read_source(
        json.dumps(document).encode(),
        source="track.json",
        default_radius_m=None,
        timing=TimeRules(role),
    )


def refusal(document: object, role: Role = Role.POSITIONS) -> str:
    with pytest.raises(InputError) as caught:
        read(document, role)
    message = caught.value.explain()
    assert "\n" not in message
    return message


def test_linear_is_the_default_and_moves_along_each_leg() -> None:
    for temporal in (moving_point(), moving_point(interpolation="Linear")):
        source = read(moving_feature(temporal))
        [f] = source.features
        assert source.kinds == (TimeKind.MOVING_POINT,)
        assert f.shapes == (Path((POINTS[0], POINTS[1]), 80.0), Path((POINTS[1], POINTS[2]), 80.0))
        assert f.when == (Interval(MOMENTS[0], MOMENTS[1]), Interval(MOMENTS[1], MOMENTS[2]))


def test_step_stays_at_each_position_until_the_next_time() -> None:
    [f] = read(moving_feature(moving_point(interpolation="Step"))).features
    assert f.shapes == tuple(Circle(p, 80.0) for p in POINTS)
    assert f.when == (
        Interval(MOMENTS[0], MOMENTS[1]),
        Interval(MOMENTS[1], MOMENTS[2]),
        Interval(MOMENTS[2], MOMENTS[2]),
    )


def test_discrete_is_each_position_at_its_instant_only() -> None:
    [f] = read(moving_feature(moving_point(interpolation="Discrete"))).features
    assert f.shapes == tuple(Circle(p, 80.0) for p in POINTS)
    assert f.when == tuple(Interval(m, m) for m in MOMENTS)
    one = moving_point(
        interpolation="Discrete", coordinates=COORDINATES[:1], datetimes=DATETIMES[:1]
    )
    [g] = read(moving_feature(one)).features
    assert g.when == (Interval(T0, T0),)


def test_geometry_may_be_null_or_absent_and_times_may_be_milliseconds() -> None:
    millis = [int(m * 1000) for m in MOMENTS]
    absent = moving_feature(moving_point(datetimes=millis))
    del absent["geometry"]
    null = {**moving_feature(moving_point()), "geometry": None}
    [a] = read(absent).features
    [n] = read(null).features
    assert a == n
    assert a.when == (Interval(MOMENTS[0], MOMENTS[1]), Interval(MOMENTS[1], MOMENTS[2]))


def test_a_feature_collection_of_moving_features_with_utc_reference_systems() -> None:
    link = {"type": "Link", "properties": {"type": "OGCDEF", "href": GREGORIAN_TRS}}
    named = {"type": "Name", "properties": {"name": "urn:ogc:data:time:iso8601"}}
    crs = {"type": "Name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    document = {
        "type": "FeatureCollection",
        "trs": link,
        "crs": crs,
        "features": [
            {**moving_feature(moving_point(trs=named)), "id": "a", "trs": None},
            {
                **moving_feature(moving_point()),
                "id": "b",
                "trs": {"type": "Name", "properties": {"name": GREGORIAN_TRS}},
            },
        ],
    }
    source = read(document)
    assert [f.id for f in source.features] == ["a", "b"]
    assert source.kinds == (TimeKind.MOVING_POINT, TimeKind.MOVING_POINT)


def test_a_collection_of_moving_points_is_all_of_them() -> None:
    temporal = {
        "type": "MovingGeometryCollection",
        "prisms": [moving_point(), moving_point(interpolation="Discrete")],
    }
    [f] = read(moving_feature(temporal)).features
    assert len(f.shapes) == len(f.when) == 2 + 3
    assert f.when[2:] == tuple(Interval(m, m) for m in MOMENTS)


def test_the_point_radius_is_the_one_every_point_takes() -> None:
    document = moving_feature(moving_point())
    document["properties"] = {}
    assert "a point needs a radius in metres" in refusal(document)
    [f] = read_source(
        json.dumps(document).encode(), source="t.json", default_radius_m=30.0
    ).features
    assert {shape.buffer_m for shape in f.shapes if isinstance(shape, Path)} == {30.0}


@pytest.mark.parametrize(
    ("temporal", "says"),
    [
        (
            moving_point(interpolation="Cubic"),
            'temporalGeometry.interpolation: interpolation "Cubic" is not read; hexpsi reads '
            "Linear, Step, Discrete",
        ),
        (moving_point(interpolation="Quadratic"), 'interpolation "Quadratic" is not read'),
        (moving_point(interpolation="linear"), 'interpolation "linear" is not read'),
        (
            moving_point(interpolation="http://example.org/motioncurve"),
            'interpolation "http://example.org/motioncurve" is not read',
        ),
        (moving_point(interpolations="Linear"), "'interpolations' is the 2017 draft's member"),
        (
            moving_point(datetimes=DATETIMES[:2]),
            "temporalGeometry.datetimes: has 2 times but coordinates has 3 positions",
        ),
        (
            moving_point(datetimes=[DATETIMES[0], DATETIMES[2], DATETIMES[1]]),
            f"temporalGeometry.datetimes[2] {DATETIMES[1]} is before "
            f"temporalGeometry.datetimes[1] {DATETIMES[2]}: the times are out of order",
        ),
        (
            moving_point(datetimes=[*DATETIMES[:2], "2026-12-05T07:00:00"]),
            "temporalGeometry.datetimes[2] '2026-12-05T07:00:00' has no time zone",
        ),
        (
            moving_point(coordinates=COORDINATES[:1], datetimes=DATETIMES[:1]),
            "a Linear MovingPoint needs at least 2 positions, got 1",
        ),
        (
            {"type": "MovingPolygon", "coordinates": [], "datetimes": []},
            'temporal geometry type "MovingPolygon" is not read; hexpsi reads a MovingPoint',
        ),
        (
            {"type": "MovingGeometryCollection", "prisms": [{"type": "MovingLineString"}]},
            'prisms[0]: is "MovingLineString"; hexpsi reads only MovingPoint prisms',
        ),
        ({"type": "MovingPoint", "datetimes": DATETIMES}, "needs a 'coordinates' member"),
        (
            moving_point(trs={"type": "Name", "properties": {"name": "urn:example:julian"}}),
            "times are in the temporal reference system urn:example:julian, not ISO 8601",
        ),
    ],
)
def test_moving_points_hexpsi_cannot_cover_exactly_are_refused(
    temporal: dict[str, object], says: str
) -> None:
    message = refusal(moving_feature(temporal))
    assert message.startswith("track.json: feature 'patrol' (index 0): ")
    assert says in message


def test_a_feature_trs_other_than_utc_is_refused_naming_it() -> None:
    link = {"type": "Link", "properties": {"href": "http://example.org/trs/gps-week"}}
    message = refusal(moving_feature(moving_point(), trs=link))
    assert "http://example.org/trs/gps-week" in message
    assert GREGORIAN_TRS in message


def test_a_moving_point_is_a_position_not_a_strike_and_not_a_route_too() -> None:
    message = refusal(moving_feature(moving_point()), Role.STRIKES)
    assert "temporalGeometry says when a protected position holds" in message
    timed = moving_feature(moving_point())
    timed["properties"] = {"radius_m": 80, "valid_from": DATETIMES[0], "valid_until": DATETIMES[2]}
    assert "both by valid_from/valid_until and by temporalGeometry; pick one" in refusal(timed)
