"""Time in GeoJSON: timed positions, routes with times, strike windows, buffers, roles."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.fields import FieldNames
from hexpsi.protocol.geo.parse import features_from_geojson, read_source
from hexpsi.protocol.geo.shapes import Circle, Path
from hexpsi.protocol.geo.sources import Source, merge_kinds, merge_sources
from hexpsi.protocol.geo.timing import Role, TimeKind, TimeRules
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.protocol.times import rfc3339

T0 = datetime(2026, 12, 5, 6, tzinfo=UTC).timestamp()
HOUR = 3600.0
ROUTE = [[38.60, 33.50], [38.62, 33.50], [38.64, 33.51], [38.66, 33.53]]


def at(hours: float) -> str:
    return rfc3339(T0 + hours * HOUR)


def feature(geometry: object, *, fid: object = "f", **properties: object) -> dict[str, Any]:
    return {"type": "Feature", "id": fid, "properties": properties, "geometry": geometry}


def point(lng: float = 38.6, lat: float = 33.5) -> dict[str, object]:
    return {"type": "Point", "coordinates": [lng, lat]}


def line(coordinates: list[list[float]] = ROUTE) -> dict[str, object]:
    return {"type": "LineString", "coordinates": coordinates}


def read(document: object, role: Role = Role.POSITIONS, **rules: Any) -> list[Any]:
    return features_from_geojson(document, default_radius_m=0, timing=TimeRules(role, **rules))


def refusal(document: object, role: Role = Role.POSITIONS, **rules: Any) -> str:
    with pytest.raises(InputError) as caught:
        read_source(
            json.dumps(document).encode(),
            source="in.geojson",
            default_radius_m=0,
            timing=TimeRules(role, **rules),
        )
    message = caught.value.explain()
    assert "\n" not in message
    return message


# --- timed positions -------------------------------------------------------------------


def test_valid_from_and_until_time_every_shape_of_the_feature() -> None:
    multipoint = {"type": "MultiPoint", "coordinates": [[38.6, 33.5], [38.7, 33.6]]}
    [f] = read(feature(multipoint, radius_m=250, valid_from=at(0), valid_until=at(12)))
    assert f.when == (Interval(T0, T0 + 12 * HOUR),) * 2
    assert f.shapes == (Circle((33.5, 38.6), 250.0), Circle((33.6, 38.7), 250.0))


def test_offsets_and_fractions_are_read_as_the_instants_they_name() -> None:
    [f] = read(
        feature(
            point(), valid_from="2026-12-05T08:00:00+02:00", valid_until="2026-12-05T06:00:00.5Z"
        )
    )
    assert f.when == (Interval(T0, T0 + 0.5),)


def test_a_feature_without_time_is_standing_and_null_or_empty_times_are_none() -> None:
    features = read(
        {
            "type": "FeatureCollection",
            "features": [
                feature(point(), fid="a"),
                feature(point(), fid="b", valid_from=None, valid_until=None),
                feature(point(), fid="c", valid_from="", valid_until=" "),
            ],
        }
    )
    assert [f.when for f in features] == [None, None, None]


@pytest.mark.parametrize(
    ("properties", "says"),
    [
        (
            {"valid_from": "2026-12-05T06:00:00Z"},
            "feature 'f' (index 0): properties.valid_from is given without "
            "properties.valid_until; give both",
        ),
        (
            {"valid_until": "2026-12-05T06:00:00Z"},
            "properties.valid_until is given without properties.valid_from; give both",
        ),
        (
            {"valid_from": "2026-12-05T07:00:00Z", "valid_until": "2026-12-05T06:00:00Z"},
            "properties.valid_until 2026-12-05T06:00:00Z is before properties.valid_from "
            "2026-12-05T07:00:00Z: the times are out of order",
        ),
        (
            {"valid_from": "2026-12-05T06:00:00", "valid_until": "2026-12-05T07:00:00Z"},
            "properties.valid_from '2026-12-05T06:00:00' has no time zone",
        ),
        (
            {"valid_from": "5 December", "valid_until": "2026-12-05T07:00:00Z"},
            "properties.valid_from '5 December' is not a time like 2026-12-05T06:00:00Z",
        ),
        (
            {"valid_from": 1796450400, "valid_until": "2026-12-05T07:00:00Z"},
            "properties.valid_from must be an RFC 3339 time such as",
        ),
        (
            {"Valid_From": "2026-12-05T06:00:00Z"},
            "properties.Valid_From is not read: hexpsi reads properties.valid_from",
        ),
    ],
)
def test_bad_validity_names_the_feature_and_member(
    properties: dict[str, object], says: str
) -> None:
    message = refusal(feature(point(), **properties))
    assert message.startswith("in.geojson: feature 'f' (index 0): ")
    assert says in message


# --- routes with times -------------------------------------------------------------------


def test_a_route_with_times_is_one_leg_per_pair_of_vertices() -> None:
    times = [at(0), at(1), at(1), at(3.5)]
    [f] = read(feature(line(), buffer_m=150, times=times))
    points = [(lat, lng) for lng, lat in ROUTE]
    assert f.shapes == tuple(Path((points[i], points[i + 1]), 150.0) for i in range(3))
    assert f.when == (
        Interval(T0, T0 + HOUR),
        Interval(T0 + HOUR, T0 + HOUR),
        Interval(T0 + HOUR, T0 + 3.5 * HOUR),
    )


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=2, max_size=12))
def test_every_leg_holds_from_its_first_vertex_time_to_its_last(offsets: list[float]) -> None:
    """Legs match vertices: leg i runs from vertex i to i + 1 over [times[i], times[i + 1]]."""
    moments = sorted(T0 + round(offset) for offset in offsets)
    coordinates = [[38.0 + 0.01 * i, 33.0 + 0.005 * i] for i in range(len(moments))]
    [f] = read(feature(line(coordinates), times=[rfc3339(m) for m in moments]))
    assert len(f.shapes) == len(f.when) == len(moments) - 1
    for i, (leg, interval) in enumerate(zip(f.shapes, f.when, strict=True)):
        assert isinstance(leg, Path)
        first, last = coordinates[i], coordinates[i + 1]
        assert leg.points == ((first[1], first[0]), (last[1], last[0]))
        assert interval == Interval(moments[i], moments[i + 1])


@pytest.mark.parametrize(
    ("geometry", "properties", "says"),
    [
        (
            line(),
            {"times": [at(0), at(1), at(2)]},
            "properties.times has 3 times but the route has 4 vertices",
        ),
        (
            line(ROUTE[:2]),
            {"times": [at(0)]},
            "properties.times has 1 time but the route has 2 vertices",
        ),
        (
            line(),
            {"times": [at(0), at(2), at(1), at(3)]},
            f"properties.times[2] {at(1)} is before properties.times[1] {at(2)}: the times are "
            "out of order",
        ),
        (
            line(),
            {"times": [at(0), at(1), "2026-12-05T09:00:00", at(3)]},
            "properties.times[2] '2026-12-05T09:00:00' has no time zone",
        ),
        (line(), {"times": "2026-12-05T06:00:00Z"}, "properties.times must be an array"),
        (
            point(),
            {"times": [at(0)]},
            "properties.times is given on a Point; only a LineString route can carry times",
        ),
        (
            {"type": "MultiLineString", "coordinates": [ROUTE, ROUTE]},
            {"times": [at(0), at(1), at(2), at(3)]},
            "given on a MultiLineString; only a LineString route can carry times",
        ),
        (
            line(),
            {"times": [at(0), at(1), at(2), at(3)], "valid_from": at(0), "valid_until": at(4)},
            "gives its time both by valid_from/valid_until and by times; pick one",
        ),
    ],
)
def test_bad_routes_say_what_to_fix(
    geometry: dict[str, object], properties: dict[str, object], says: str
) -> None:
    message = refusal(feature(geometry, **properties))
    assert says in message
    assert "feature 'f' (index 0)" in message


# --- time buffers -------------------------------------------------------------------------


def test_a_feature_buffer_widens_every_interval_and_overrides_the_default() -> None:
    document = {
        "type": "FeatureCollection",
        "features": [
            feature(line(ROUTE[:3]), fid="own", times=[at(0), at(1), at(2)], time_buffer_s=600),
            feature(point(), fid="default", valid_from=at(0), valid_until=at(1)),
            feature(point(), fid="zero", valid_from=at(0), valid_until=at(1), time_buffer_s=0),
            feature(point(), fid="standing", time_buffer_s=900),
        ],
    }
    own, default, zero, standing = read(document, buffer_s=300.0)
    assert own.when == (
        Interval(T0 - 600, T0 + HOUR + 600),
        Interval(T0 + HOUR - 600, T0 + 2 * HOUR + 600),
    )
    assert default.when == (Interval(T0 - 300, T0 + HOUR + 300),)
    assert zero.when == (Interval(T0, T0 + HOUR),)
    assert standing.when is None


@pytest.mark.parametrize("value", [-1, "600", True, float("inf")])
def test_a_bad_time_buffer_names_its_member(value: object) -> None:
    message = refusal(feature(point(), time_buffer_s=value))
    assert "properties.time_buffer_s must be a" in message


def test_a_negative_default_buffer_is_refused() -> None:
    with pytest.raises(InputError, match="--time-buffer must be a finite number"):
        TimeRules(Role.POSITIONS, buffer_s=-1.0)


# --- strike windows and roles -------------------------------------------------------------


def test_strike_windows_come_from_the_feature_else_the_command() -> None:
    window = Interval(T0, T0 + 2 * HOUR)
    document = {
        "type": "FeatureCollection",
        "features": [
            feature(point(), fid="own", not_before=at(5), not_after=at(6)),
            feature({"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]}, fid="default"),
        ],
    }
    own, default = read(document, Role.STRIKES, window=window, buffer_s=60.0)
    assert own.when == (Interval(T0 + 5 * HOUR - 60, T0 + 6 * HOUR + 60),)
    assert default.when == (Interval(T0 - 60, T0 + 2 * HOUR + 60),) * 2
    [bare] = read(point(), Role.STRIKES, window=window)
    assert bare.when == (window,)


def test_a_strike_without_any_window_asks_about_the_whole_epoch() -> None:
    [f] = read(feature(point()), Role.STRIKES)
    assert f.when is None


@pytest.mark.parametrize(
    "properties",
    [
        {"valid_from": at(0), "valid_until": at(1)},
        {"times": [at(0), at(1), at(2), at(3)]},
    ],
)
def test_a_strike_with_position_times_is_refused(properties: dict[str, object]) -> None:
    message = refusal(feature(line(), **properties), Role.STRIKES)
    assert "a strike's window is given by properties.not_before and properties.not_after" in message
    assert "strikes use not_before/not_after" in message


def test_a_position_with_a_strike_window_is_refused() -> None:
    message = refusal(feature(point(), not_before=at(0), not_after=at(1)), Role.POSITIONS)
    assert "properties.not_before is a strike's window" in message
    assert "positions use valid_from/valid_until" in message


def test_strike_windows_have_the_same_rules_as_validity() -> None:
    message = refusal(feature(point(), not_after=at(1)), Role.STRIKES)
    assert "properties.not_after is given without properties.not_before; give both" in message
    message = refusal(feature(point(), not_before=at(2), not_after=at(1)), Role.STRIKES)
    assert "out of order" in message


def test_encode_reads_either_kind_but_not_both_on_one_feature() -> None:
    document = {
        "type": "FeatureCollection",
        "features": [
            feature(point(), fid="p", valid_from=at(0), valid_until=at(1)),
            feature(point(), fid="s", not_before=at(2), not_after=at(3)),
        ],
    }
    p, s = read(document, Role.ENCODE)
    assert p.when == (Interval(T0, T0 + HOUR),)
    assert s.when == (Interval(T0 + 2 * HOUR, T0 + 3 * HOUR),)
    both = feature(point(), valid_from=at(0), valid_until=at(1), not_before=at(0), not_after=at(1))
    assert "pick one" in refusal(both, Role.ENCODE)


def test_a_window_is_only_for_strikes() -> None:
    with pytest.raises(InputError, match="--window is a strike's window"):
        TimeRules(Role.POSITIONS, window=Interval(T0, T0))


# --- how features gave their time, across files -------------------------------------------


def test_a_time_member_in_another_case_is_refused_unless_empty_or_set_aside() -> None:
    document = feature(point(), Times="twice daily")
    message = refusal(document)
    assert "properties.Times is not read: hexpsi reads properties.times" in message
    assert "--ignore-field Times" in message
    [f] = features_from_geojson(
        document, default_radius_m=0, fields=FieldNames(ignore=frozenset({"Times"}))
    )
    assert f.when is None
    [g] = read(feature(point(), Valid_From=None, NOT_AFTER=""))
    assert g.when is None


def test_sources_know_routes_from_other_timed_features_and_keep_times_when_renamed() -> None:
    document = {
        "type": "FeatureCollection",
        "features": [
            feature(line(), fid=1, times=[at(0), at(1), at(2), at(3)]),
            feature(point(), fid=2, valid_from=at(0), valid_until=at(1)),
            feature(point(), fid=3),
        ],
    }
    data = json.dumps(document).encode()
    a = read_source(data, source="a.geojson", default_radius_m=0)
    b = read_source(data, source="b.geojson", default_radius_m=0)
    assert a.kinds == (TimeKind.ROUTE, TimeKind.TIMED, TimeKind.STANDING)
    merged = merge_sources([a, b])
    assert [f.id for f in merged] == [f"{n}.geojson:{i}" for n in "ab" for i in (1, 2, 3)]
    assert [f.when for f in merged] == [f.when for f in (*a.features, *b.features)]
    assert merge_kinds([a, b]) == [*a.kinds, *b.kinds]
    assert merge_kinds([Source("c.csv", a.features)]) == [
        TimeKind.TIMED,
        TimeKind.TIMED,
        TimeKind.STANDING,
    ]
