"""The one line saying what a command read."""

from __future__ import annotations

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.geo.cover import cover_area_km2
from hexpsi.protocol.geo.shapes import Area, Circle, Feature, Path
from hexpsi.protocol.geo.summary import describe_read, describe_shapes, describe_times
from hexpsi.protocol.geo.timing import TimeKind
from hexpsi.protocol.spacetime.interval import Interval

SQUARE = ((35.98, 36.57), (35.98, 36.70), (35.87, 36.70), (35.87, 36.57))


def points(*radii: float) -> list[Feature]:
    return [Feature(i, (Circle((33.5, 38.6), r),)) for i, r in enumerate(radii)]


def test_the_example_line() -> None:
    features = [
        *points(500, 2000, 750, 1000, 500, 600, 700, 800, 900),
        Feature("a", (Area(SQUARE, (), 0.0),)),
        Feature("b", (Area(SQUARE, (), 0.0),)),
        Feature("c", (Path(((1.0, 2.0), (1.5, 2.5)), 1000.0),)),
    ]
    cells = set(h3.grid_disk(h3.latlng_to_cell(33.5, 38.6, 9), 37))
    area = cover_area_km2(cells)
    assert describe_read(features, ["usa.geojson"], cells) == (
        "read 12 features from usa.geojson: 9 points (radius 500–2,000 m), 2 polygons, "
        f"1 line (buffer 1,000 m); {len(cells):,} cells at res 9, {area:,.0f} km²"
    )


def test_points_without_a_radius_say_radius_0() -> None:
    cells = {h3.latlng_to_cell(33.5, 38.6, 9), h3.latlng_to_cell(33.49, 38.67, 9)}
    line = describe_read(points(0, 0), ["bare.csv"], cells)
    assert (
        line == "read 2 features from bare.csv: 2 points (radius 0 m); 2 cells at res 9, 0.231 km²"
    )


def test_singulars_fractions_and_buffered_polygons() -> None:
    shapes = describe_shapes(
        [
            Feature(0, (Circle((0, 0), 2.5),)),
            Feature(1, (Area(SQUARE, (), 0.0), Area(SQUARE, (), 250.0))),
            Feature(2, (Path(((0, 0), (1, 1)), 0.0),)),
        ]
    )
    assert shapes == "1 point (radius 2.5 m), 2 polygons (buffer 0–250 m), 1 line (buffer 0 m)"


@pytest.mark.parametrize(
    ("sources", "named"),
    [
        (["a.geojson", "b.csv"], "from a.geojson and b.csv:"),
        (["a.geojson", "b.csv", "<stdin>"], "from a.geojson, b.csv and <stdin>:"),
        (["a", "b", "c", "d"], "from 4 files:"),
    ],
)
def test_several_files_are_named_or_counted(sources: list[str], named: str) -> None:
    cells = {h3.latlng_to_cell(0, 0, 5)}
    line = describe_read(points(10), sources, cells)
    assert named in line
    area = cover_area_km2(cells)
    assert line.endswith(f"; 1 cell at res 5, {area:,.0f} km²")


SIX = 1_796_450_400.0  # 2026-12-05T06:00:00Z


def test_timed_features_say_how_many_when_and_how_many_move() -> None:
    leg = Path(((33.5, 38.6), (33.5, 38.7)), 200.0)
    features = [
        *points(500, 500),
        Feature("route", (leg, leg), (Interval(SIX, SIX + 3600), Interval(SIX + 3600, SIX + 7200))),
        Feature("site", (Circle((33.5, 38.6), 100.0),), (Interval(SIX + 600, SIX + 43_200),)),
        Feature("track", (leg,), (Interval(SIX - 60, SIX),)),
    ]
    kinds = [
        TimeKind.STANDING,
        TimeKind.STANDING,
        TimeKind.ROUTE,
        TimeKind.TIMED,
        TimeKind.MOVING_POINT,
    ]
    cells = {h3.latlng_to_cell(33.5, 38.6, 9)}
    line = describe_read(features, ["convoy.geojson"], cells, kinds)
    assert line == (
        "read 5 features from convoy.geojson: 3 points (radius 100–500 m), 3 lines "
        "(buffer 200 m); 3 timed from 2026-12-05T05:59:00Z to 2026-12-05T18:00:00Z "
        "(1 route with times, 1 moving point); 1 cell at res 9, 0.116 km²"
    )
    without_kinds = describe_read(features, ["convoy.geojson"], cells)
    assert "; 3 timed from 2026-12-05T05:59:00Z to 2026-12-05T18:00:00Z; 1 cell" in without_kinds


def test_routes_and_moving_points_are_counted_in_plural() -> None:
    timed = [Feature(i, (Circle((0, 0), 1.0),), (Interval(SIX, SIX),)) for i in range(4)]
    kinds = [TimeKind.ROUTE, TimeKind.ROUTE, TimeKind.MOVING_POINT, TimeKind.MOVING_POINT]
    assert describe_times(timed, kinds) == (
        "4 timed from 2026-12-05T06:00:00Z to 2026-12-05T06:00:00Z "
        "(2 routes with times, 2 moving points)"
    )
    assert describe_times(points(1, 2)) == ""
