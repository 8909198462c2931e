"""The one line saying what a command read."""

from __future__ import annotations

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.geo.cover import cover_area_km2
from hexpsi.protocol.geo.shapes import Area, Circle, Feature, Path
from hexpsi.protocol.geo.summary import describe_read, describe_shapes

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
