"""Web Mercator for report maps: the view, slippy-map tiles, a scale bar, a graticule.

A report page draws cells in the projection XYZ tile servers use (EPSG:3857 on
a sphere), so an operator's own tiles line up under the cells. Positions are
first taken to *world units*: x and y run from 0 to 1 across the square world
of zoom level 0, x eastward from longitude -180, y southward from latitude
+85.05 (where the square ends). A view is a window of ``width`` by ``height``
pixels onto that world at ``scale`` pixels per world unit, so zoom level z is
``scale == 256 * 2**z``. Longitudes may run past ±180 (x outside 0..1): cells
across the antimeridian stay one continuous drawing, and tile columns wrap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hexpsi.protocol.geo.sphere import EARTH_RADIUS_M

TILE_PX = 256
"""Pixels per side of one slippy-map tile."""
MAX_LAT = math.degrees(math.atan(math.sinh(math.pi)))
"""85.0511...: the latitude where the square Web Mercator world ends."""
MAX_TILE_ZOOM = 19
"""The deepest tile zoom asked of a tile server (most XYZ servers stop there)."""
MAX_ZOOM = 30.0
"""No view zooms further than this (a few millimetres per pixel)."""


def lnglat_to_world(lng: float, lat: float) -> tuple[float, float]:
    """World units of a position; latitudes beyond ±85.05 are drawn at the edge."""
    clamped = max(-MAX_LAT, min(MAX_LAT, lat))
    y = (1.0 - math.asinh(math.tan(math.radians(clamped))) / math.pi) / 2.0
    return (lng + 180.0) / 360.0, y


def world_to_lnglat(x: float, y: float) -> tuple[float, float]:
    """The inverse of :func:`lnglat_to_world`, longitude brought into [-180, 180)."""
    lng = (x * 360.0) % 360.0 - 180.0
    lat = math.degrees(math.atan(math.sinh(math.pi * (1.0 - 2.0 * y))))
    return lng, lat


def longitude_window(lngs: Iterable[float]) -> tuple[float, float]:
    """The start of the narrowest longitude range holding every centre in ``lngs``.

    Returns ``(start, width)``: every longitude shifted by a multiple of 360 into
    ``[start, start + 360)`` lies within ``width`` degrees of ``start``. The range
    begins after the largest gap between neighbouring longitudes, so a set of
    cells on both sides of the antimeridian is drawn together, not at the map's
    two edges.
    """
    ordered = sorted({lng % 360.0 for lng in lngs})
    if not ordered:
        return -180.0, 0.0
    gaps = [
        ((ordered[(i + 1) % len(ordered)] - ordered[i]) % 360.0 or 360.0, i)
        for i in range(len(ordered))
    ]
    gap, before = max(gaps)
    start = ordered[(before + 1) % len(ordered)]
    start = start - 360.0 if start >= 180.0 else start
    return start, 360.0 - gap


def shift_into(lng: float, start: float) -> float:
    """How many degrees (a multiple of 360) bring ``lng`` into ``[start, start + 360)``."""
    return -360.0 * math.floor((lng - start) / 360.0)


@dataclass(frozen=True, slots=True)
class View:
    """A ``width`` x ``height`` pixel window whose top-left corner is world ``(x0, y0)``."""

    x0: float
    y0: float
    scale: float
    """Pixels per world unit: ``256 * 2**zoom``."""
    width: int
    height: int

    @property
    def zoom(self) -> float:
        return math.log2(self.scale / TILE_PX)

    def to_px(self, x: float, y: float) -> tuple[float, float]:
        """Pixels from the top-left corner of a world position."""
        return (x - self.x0) * self.scale, (y - self.y0) * self.scale

    def px_to_lnglat(self, px: float, py: float) -> tuple[float, float]:
        return world_to_lnglat(self.x0 + px / self.scale, self.y0 + py / self.scale)

    def lnglat_bounds(self) -> tuple[float, float, float, float]:
        """West, south, east, north of the view; west..east may run past ±180."""
        west = self.x0 * 360.0 - 180.0
        east = (self.x0 + self.width / self.scale) * 360.0 - 180.0
        _, north = world_to_lnglat(0.0, self.y0)
        _, south = world_to_lnglat(0.0, self.y0 + self.height / self.scale)
        return west, south, east, north

    def metres_per_px(self, lat: float) -> float:
        """Ground distance of one pixel along the parallel at ``lat`` (H3's sphere)."""
        return 2.0 * math.pi * EARTH_RADIUS_M * math.cos(math.radians(lat)) / self.scale


def fit_view(
    bounds: tuple[float, float, float, float],
    width: int,
    height: int,
    *,
    padding: int,
    whole_zoom: bool = False,
) -> View:
    """The view centred on world ``bounds`` (min x, min y, max x, max y) that fits them.

    With ``whole_zoom`` the scale is rounded down to a whole zoom level (for tiles,
    which are only sharp at their own zoom) and kept within 0..``MAX_TILE_ZOOM``.
    """
    min_x, min_y, max_x, max_y = bounds
    span_x = max(max_x - min_x, 1e-12)
    span_y = max(max_y - min_y, 1e-12)
    scale = min((width - 2 * padding) / span_x, (height - 2 * padding) / span_y)
    zoom = min(math.log2(scale / TILE_PX), MAX_ZOOM)
    if whole_zoom:
        zoom = float(max(0, min(MAX_TILE_ZOOM, math.floor(zoom))))
    scale = TILE_PX * 2.0**zoom
    center_x, center_y = (min_x + max_x) / 2.0, (min_y + max_y) / 2.0
    x0, y0 = center_x - width / 2.0 / scale, center_y - height / 2.0 / scale
    if whole_zoom:
        # On the pixel grid, so tile edges fall on whole pixels and leave no seams.
        x0, y0 = math.floor(x0 * scale) / scale, math.floor(y0 * scale) / scale
    return View(x0=x0, y0=y0, scale=scale, width=width, height=height)


@dataclass(frozen=True, slots=True)
class Tile:
    """One tile to fetch (``z``, ``x``, ``y`` as the server names it) and where it goes."""

    z: int
    x: int
    y: int
    left: float
    top: float

    def url(self, template: str) -> str:
        return (
            template.replace("{z}", str(self.z))
            .replace("{x}", str(self.x))
            .replace("{y}", str(self.y))
        )


def tiles_in_view(view: View) -> list[Tile]:
    """Every tile that covers part of a view fitted at a whole zoom level, row by row.

    Columns wrap around the antimeridian; rows beyond the world's edge do not exist.
    """
    zoom = round(view.zoom)
    count = 2**zoom
    first_x = math.floor(view.x0 * count)
    last_x = math.floor((view.x0 + (view.width - 1e-9) / view.scale) * count)
    first_y = max(0, math.floor(view.y0 * count))
    last_y = min(count - 1, math.floor((view.y0 + (view.height - 1e-9) / view.scale) * count))
    return [
        Tile(
            z=zoom,
            x=column % count,
            y=row,
            left=(column / count - view.x0) * view.scale,
            top=(row / count - view.y0) * view.scale,
        )
        for row in range(first_y, last_y + 1)
        for column in range(first_x, last_x + 1)
    ]


def nice_step(limit: float, steps: Sequence[float] = (1.0, 2.0, 5.0)) -> float:
    """The largest value of the 1-2-5 series (…, 0.5, 1, 2, 5, 10, …) not above ``limit``."""
    exponent = math.floor(math.log10(limit))
    for factor in sorted(steps, reverse=True):
        value = factor * 10.0**exponent
        if value <= limit * (1 + 1e-9):
            return value
    return max(steps) * 10.0 ** (exponent - 1)


@dataclass(frozen=True, slots=True)
class ScaleBar:
    """A bar ``px`` pixels long standing for ``metres`` on the ground at ``lat``."""

    px: float
    metres: float
    lat: float

    @property
    def label(self) -> str:
        if self.metres >= 1000.0:
            return f"{self.metres / 1000.0:g} km"
        return f"{self.metres:g} m"


def scale_bar(view: View, lat: float, max_px: float) -> ScaleBar:
    """The longest round distance (1, 2 or 5 times a power of ten) under ``max_px`` at ``lat``.

    Web Mercator stretches a map by 1/cos(latitude), so the bar holds at ``lat``
    (the view's centre) and less so towards its top and bottom.
    """
    per_px = view.metres_per_px(lat)
    metres = nice_step(max_px * per_px)
    return ScaleBar(px=metres / per_px, metres=metres, lat=lat)


GRATICULE_STEPS = (1.0, 2.0, 5.0)
"""Graticule spacing: 1, 2 or 5 times a power of ten degrees, at most 10 degrees..."""
WIDE_GRATICULE_STEPS = (15.0, 30.0)
"""...then 15 or 30 degrees for views of a continent or the world."""


def graticule_step(span_deg: float, lines: int) -> float:
    """Degrees between graticule lines so that about ``lines`` cross ``span_deg``."""
    wanted = span_deg / lines
    if wanted > 10.0:
        return 30.0 if wanted > 15.0 else 15.0
    return nice_step(max(wanted, 1e-7), GRATICULE_STEPS)


def graticule_values(low: float, high: float, step: float) -> list[float]:
    """Multiples of ``step`` within ``[low, high]``."""
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    return [k * step for k in range(first, last + 1)]


def degrees_label(value: float, step: float, positive: str, negative: str) -> str:
    """``38.6°E``: a graticule value with as many decimals as its step needs."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    magnitude = round(abs(value), decimals)
    if magnitude == 0:
        return f"{0:.{decimals}f}°"
    return f"{magnitude:.{decimals}f}°{positive if value > 0 else negative}"
