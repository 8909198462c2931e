"""Web Mercator for report maps: the projection both ways, fitting, tiles, scale bar, graticule."""

from __future__ import annotations

import math

import pytest

from hexpsi.protocol.geo.sphere import haversine_m
from hexpsi.server.cli.webmercator import (
    MAX_LAT,
    MAX_TILE_ZOOM,
    TILE_PX,
    degrees_label,
    fit_view,
    graticule_step,
    graticule_values,
    lnglat_to_world,
    longitude_window,
    nice_step,
    scale_bar,
    shift_into,
    tiles_in_view,
    world_to_lnglat,
)


def test_the_world_square_and_its_inverse() -> None:
    assert lnglat_to_world(0.0, 0.0) == pytest.approx((0.5, 0.5))
    assert lnglat_to_world(-180.0, MAX_LAT) == pytest.approx((0.0, 0.0))
    assert lnglat_to_world(180.0, -MAX_LAT) == pytest.approx((1.0, 1.0))
    assert lnglat_to_world(10.0, 89.9)[1] == pytest.approx(0.0)  # drawn at the edge
    for lng, lat in [(38.6, 33.5), (-122.4, 37.8), (179.99, -45.0), (-179.99, 84.0)]:
        x, y = lnglat_to_world(lng, lat)
        assert world_to_lnglat(x, y) == pytest.approx((lng, lat), abs=1e-9)
    # Past the antimeridian the same place comes back in -180..180.
    assert world_to_lnglat(*lnglat_to_world(181.0, 0.0)) == pytest.approx((-179.0, 0.0))


@pytest.mark.parametrize(
    ("lngs", "start", "width"),
    [
        ([10.0, 20.0, 15.0], 10.0, 10.0),
        ([179.5, -179.9, 179.9], 179.5, 0.6),
        ([-170.0, 170.0], 170.0, 20.0),
        ([42.0], 42.0, 0.0),
        ([], -180.0, 0.0),
    ],
)
def test_the_longitude_window_starts_after_the_largest_gap(
    lngs: list[float], start: float, width: float
) -> None:
    found_start, found_width = longitude_window(lngs)
    assert found_start == pytest.approx(start)
    assert found_width == pytest.approx(width)
    for lng in lngs:
        shifted = lng + shift_into(lng, found_start)
        assert found_start <= shifted <= found_start + found_width + 1e-9


def test_a_fitted_view_holds_its_bounds_with_padding() -> None:
    bounds = (*lnglat_to_world(38.5, 33.6), *lnglat_to_world(38.7, 33.4))
    view = fit_view(bounds, 960, 640, padding=20)
    left, top = view.to_px(bounds[0], bounds[1])
    right, bottom = view.to_px(bounds[2], bounds[3])
    assert 20 - 1e-6 <= left < right <= 940 + 1e-6
    assert 20 - 1e-6 <= top < bottom <= 620 + 1e-6
    assert min(left - 20, top - 20) == pytest.approx(0.0, abs=1e-6)  # it fills one way
    assert view.px_to_lnglat(480, 320) == pytest.approx((38.6, 33.5), abs=1e-3)


def test_a_view_for_tiles_is_at_a_whole_zoom_on_whole_pixels() -> None:
    bounds = (*lnglat_to_world(38.5, 33.6), *lnglat_to_world(38.7, 33.4))
    free = fit_view(bounds, 960, 640, padding=20)
    tiled = fit_view(bounds, 960, 640, padding=20, whole_zoom=True)
    assert tiled.zoom == math.floor(free.zoom)
    tiles = tiles_in_view(tiled)
    assert all(tile.z == tiled.zoom for tile in tiles)
    assert all(tile.left == round(tile.left) and tile.top == round(tile.top) for tile in tiles)
    # The tiles cover the whole view and nothing needlessly.
    assert min(t.left for t in tiles) <= 0 < min(t.left for t in tiles) + TILE_PX
    assert min(t.top for t in tiles) <= 0 < min(t.top for t in tiles) + TILE_PX
    assert max(t.left for t in tiles) < 960 <= max(t.left for t in tiles) + TILE_PX
    assert max(t.top for t in tiles) < 640 <= max(t.top for t in tiles) + TILE_PX
    columns = {t.left for t in tiles}
    rows = {t.top for t in tiles}
    assert len(tiles) == len(columns) * len(rows)
    assert tiles[0].url("https://t.example/{z}/{x}/{y}.png") == (
        f"https://t.example/{tiles[0].z}/{tiles[0].x}/{tiles[0].y}.png"
    )


def test_tile_columns_wrap_at_the_antimeridian_and_rows_stop_at_the_poles() -> None:
    across = (*lnglat_to_world(179.0, 1.0), *lnglat_to_world(181.0, -1.0))
    view = fit_view(across, 960, 640, padding=20, whole_zoom=True)
    count = 2 ** round(view.zoom)
    xs = {tile.x for tile in tiles_in_view(view)}
    assert count - 1 in xs
    assert 0 in xs
    assert all(0 <= x < count for x in xs)
    world = fit_view((0.0, 0.0, 1.0, 1.0), 960, 640, padding=0, whole_zoom=True)
    assert world.zoom == 1  # 512 px of world in 640 px
    assert {(t.x, t.y) for t in tiles_in_view(world)} == {(x, y) for x in (0, 1) for y in (0, 1)}
    deep = fit_view((0.5, 0.5, 0.5 + 1e-12, 0.5 + 1e-12), 960, 640, padding=0, whole_zoom=True)
    assert deep.zoom == MAX_TILE_ZOOM


@pytest.mark.parametrize("lat", [0.0, 33.5, 60.0, -75.0])
def test_the_scale_bar_measures_the_ground_at_its_latitude(lat: float) -> None:
    bounds = (*lnglat_to_world(10.0, lat + 0.2), *lnglat_to_world(10.4, lat - 0.2))
    view = fit_view(bounds, 960, 640, padding=20)
    bar = scale_bar(view, lat, 160)
    assert bar.px <= 160
    assert bar.px > 160 / 5  # the next round length would not fit
    _, y = view.to_px(0.0, lnglat_to_world(0.0, lat)[1])
    a, b = view.px_to_lnglat(100, y), view.px_to_lnglat(100 + bar.px, y)
    ground = haversine_m((a[1], a[0]), (b[1], b[0]))
    assert ground == pytest.approx(bar.metres, rel=1e-4)
    assert bar.label in {f"{bar.metres:g} m", f"{bar.metres / 1000:g} km"}


@pytest.mark.parametrize(
    ("limit", "step"), [(160.0, 100.0), (3.3, 2.0), (0.07, 0.05), (5000.0, 5000.0), (0.999, 0.5)]
)
def test_nice_steps(limit: float, step: float) -> None:
    assert nice_step(limit) == pytest.approx(step)


def test_the_graticule_is_round_and_labelled() -> None:
    assert graticule_step(0.3, 6) == pytest.approx(0.05)
    assert graticule_step(120.0, 6) == 30.0
    assert graticule_step(70.0, 6) == 15.0
    assert graticule_values(38.51, 38.66, 0.05) == pytest.approx([38.55, 38.6, 38.65])
    assert degrees_label(38.6, 0.05, "E", "W") == "38.60°E"
    assert degrees_label(-122.0, 1.0, "E", "W") == "122°W"
    assert degrees_label(0.0, 0.5, "N", "S") == "0.0°"
