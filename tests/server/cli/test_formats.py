"""GeoJSON for any GIS: cells and outlines cut at the antimeridian (RFC 7946 section 3.1.9)."""

from __future__ import annotations

import itertools

import h3.api.basic_int as h3
import pytest

from hexpsi.server.cli.formats import cell_geometry, cell_to_polygon, outline_geometry


def signed_area(ring: list[list[float]]) -> float:
    return sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in itertools.pairwise(ring)) / 2


def polygons(geometry: dict[str, object]) -> list[list[list[list[float]]]]:
    coordinates = geometry["coordinates"]
    assert isinstance(coordinates, list)
    return [coordinates] if geometry["type"] == "Polygon" else coordinates


def straddling(res: int) -> list[int]:
    near = h3.grid_disk(h3.latlng_to_cell(0.0, 180.0, res), 2)
    return [
        c
        for c in near
        if max(x for _, x in h3.cell_to_boundary(c)) - min(x for _, x in h3.cell_to_boundary(c))
        > 180
    ]


@pytest.mark.parametrize("res", [3, 9, 15])
def test_a_cell_across_the_antimeridian_is_cut_in_two(res: int) -> None:
    for cell in straddling(res):
        geometry = cell_geometry(cell)
        assert geometry["type"] == "MultiPolygon"
        parts = polygons(geometry)
        assert len(parts) == 2
        for exterior, *holes in parts:
            assert holes == []
            assert exterior[0] == exterior[-1]
            assert all(-180.0 <= lng <= 180.0 for lng, _ in exterior)
            assert signed_area(exterior) > 0, "exterior rings run counter-clockwise"
            assert {abs(lng) for lng, _ in exterior} >= {180.0}, "each part ends at the cut"
        (whole,) = polygons(cell_to_polygon(cell))[0]
        assert sum(signed_area(p[0]) for p in parts) == pytest.approx(signed_area(whole))


def test_a_cell_away_from_the_antimeridian_stays_one_polygon() -> None:
    cell = h3.latlng_to_cell(33.5, 38.6, 9)
    geometry = cell_geometry(cell)
    assert geometry["type"] == "Polygon"
    assert geometry["coordinates"] == cell_to_polygon(cell)["coordinates"]


def test_an_outline_is_the_union_of_its_cells() -> None:
    cells = h3.grid_disk(h3.latlng_to_cell(33.5, 38.6, 9), 3)
    geometry = outline_geometry(cells)
    assert geometry["type"] == "Polygon"
    (exterior,) = polygons(geometry)[0]
    total = sum(signed_area(polygons(cell_to_polygon(c))[0][0]) for c in cells)
    assert signed_area(exterior) == pytest.approx(total, rel=1e-9)


def test_an_outline_with_a_hole_keeps_it_clockwise() -> None:
    center = h3.latlng_to_cell(33.5, 38.6, 9)
    ring = set(h3.grid_disk(center, 3)) - set(h3.grid_disk(center, 1))
    (polygon,) = polygons(outline_geometry(ring))
    exterior, hole = polygon
    assert signed_area(exterior) > 0
    assert signed_area(hole) < 0


def test_an_outline_across_the_antimeridian_is_cut_not_wrapped() -> None:
    cells = h3.grid_disk(h3.latlng_to_cell(10.0, 179.99, 7), 3)
    geometry = outline_geometry(cells)
    assert geometry["type"] == "MultiPolygon"
    for polygon in polygons(geometry):
        lngs = [lng for lng, _ in polygon[0]]
        assert all(-180.0 <= lng <= 180.0 for lng in lngs)
        assert max(lngs) - min(lngs) < 10.0, "no part spans the whole map"
