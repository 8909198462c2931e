"""Cell sets as a person or a GIS wants them: JSON, CSV and GeoJSON text.

Cells are integers inside hexpsi and H3 index strings (``"89283082803ffff"``)
here at the edge, where people and other tools read them. Every listing is
sorted, so the same input always gives byte-identical output.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from hexpsi.protocol.geo.shapes import FeatureId


@dataclass(frozen=True, slots=True)
class FeatureCells:
    """One input feature's id (as the input gave it) and its cover."""

    id: FeatureId
    cells: frozenset[int]


@dataclass(frozen=True, slots=True)
class Encoding:
    """The result of encoding a file: each feature's cells, their union and its area."""

    resolution: int
    features: tuple[FeatureCells, ...]
    cells: frozenset[int]
    area_km2: float

    def features_by_cell(self) -> dict[int, list[FeatureId]]:
        """Every cell of the union with the ids of the features that cover it, in input order."""
        owners: dict[int, list[FeatureId]] = {cell: [] for cell in sorted(self.cells)}
        for feature in self.features:
            for cell in feature.cells:
                owners[cell].append(feature.id)
        return owners


def cell_str(cell: int) -> str:
    """H3's string form of a cell: its index in lowercase hexadecimal."""
    return format(cell, "x")


def sorted_cell_strs(cells: frozenset[int] | set[int]) -> list[str]:
    return [cell_str(cell) for cell in sorted(cells)]


def utc_time(seconds: float) -> str:
    """A Unix time as RFC 3339 in UTC, to the second (``2026-12-05T05:14:53Z``); a time
    no calendar holds is shown as the number it is."""
    from hexpsi.protocol.errors import InputError
    from hexpsi.protocol.times import rfc3339

    try:
        return rfc3339(seconds)
    except (InputError, TypeError, ValueError, OverflowError, OSError):
        return str(seconds)


# --- GeoJSON polygons ----------------------------------------------------------


def _wrap180(degrees: float) -> float:
    """The same longitude difference brought into [-180, 180)."""
    return (degrees + 180.0) % 360.0 - 180.0


def _counter_clockwise(ring: list[list[float]]) -> list[list[float]]:
    """RFC 7946 wants exterior rings counter-clockwise; check the planar signed area."""
    twice_area = sum(
        x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(ring, [*ring[1:], ring[0]], strict=True)
    )
    return ring if twice_area > 0 else ring[::-1]


def _closed(ring: list[list[float]]) -> list[list[float]]:
    """Drop consecutive repeats and close the ring by repeating its first position."""
    distinct = [p for i, p in enumerate(ring) if i == 0 or p != ring[i - 1]]
    if len(distinct) > 1 and distinct[-1] == distinct[0]:
        distinct.pop()
    return [*distinct, distinct[0]]


def _polar_ring(boundary: Sequence[tuple[float, float]], pole_lat: float) -> list[list[float]]:
    """A ring around a pole, cut at the antimeridian and closed along the pole's edge.

    The boundary crosses the antimeridian exactly once; the ring starts just after
    that crossing, follows the boundary all the way round to it, then runs up to
    the pole along longitude ±180 and back down the other side.
    """
    count = len(boundary)
    cut = next(i for i in range(count) if abs(boundary[(i + 1) % count][1] - boundary[i][1]) > 180)
    (lat_a, lng_a), (lat_b, lng_b) = boundary[cut], boundary[(cut + 1) % count]
    side_a = math.copysign(180.0, lng_a)
    lng_b_continuous = lng_b + 2 * side_a
    fraction = (side_a - lng_a) / (lng_b_continuous - lng_a)
    lat_cut = lat_a + fraction * (lat_b - lat_a)
    ordered = [*boundary[cut + 1 :], *boundary[: cut + 1]]
    return [
        [-side_a, lat_cut],
        *([lng, lat] for lat, lng in ordered),
        [side_a, lat_cut],
        [side_a, pole_lat],
        [-side_a, pole_lat],
    ]


def cell_to_polygon(cell: int) -> dict[str, object]:
    """A GeoJSON Polygon geometry for one H3 cell, valid for any GIS.

    Positions are ``[lng, lat]``, the ring is counter-clockwise and closed.

    Antimeridian: each vertex's longitude is taken within 180 degrees of the cell's
    centre, so a cell that straddles ±180 keeps continuous longitudes and may reach
    slightly past 180 (e.g. 179.6 to 180.4) instead of jumping across the map.
    The cell stays one Polygon, and its centre stays inside -180..180.

    Poles: a cell containing a pole has vertices at every longitude, which no
    continuous ring can follow; it is drawn as the polar cap it is, cut at the
    antimeridian and closed along latitude ±90.
    """
    import h3.api.basic_int as h3int  # here, not at start-up: see hexpsi.server.cli

    boundary = h3int.cell_to_boundary(cell)
    center_lat, center_lng = h3int.cell_to_latlng(cell)
    winding = sum(
        _wrap180(b[1] - a[1]) for a, b in zip(boundary, [*boundary[1:], boundary[0]], strict=True)
    )
    if abs(winding) > 180:
        ring = _polar_ring(boundary, math.copysign(90.0, center_lat))
    else:
        ring = [[center_lng + _wrap180(lng - center_lng), lat] for lat, lng in boundary]
    return {"type": "Polygon", "coordinates": [_closed(_counter_clockwise(ring))]}


Position = list[float]
Ring = list[Position]


def _unwrapped(ring: Sequence[Sequence[float]]) -> Ring:
    """The ring with each longitude within 180 degrees of the one before: continuous."""
    out: Ring = []
    for lng, lat in ring:
        continuous = out[-1][0] + _wrap180(lng - out[-1][0]) if out else lng
        out.append([continuous, lat])
    return out


def _clip(ring: Ring, at: float, keep_below: bool) -> Ring:
    """Sutherland-Hodgman: the part of a closed ring on one side of longitude ``at``."""

    def inside(p: Position) -> bool:
        return p[0] <= at if keep_below else p[0] >= at

    points = ring[:-1] if len(ring) > 1 and ring[0] == ring[-1] else ring
    out: Ring = []
    for i, current in enumerate(points):
        previous = points[i - 1]
        if inside(current) != inside(previous):
            fraction = (at - previous[0]) / (current[0] - previous[0])
            out.append([at, previous[1] + fraction * (current[1] - previous[1])])
        if inside(current):
            out.append(current)
    return out


def _shifted(ring: Ring, by: float) -> Ring:
    return [[lng + by, lat] for lng, lat in ring]


def _oriented(ring: Ring, counter_clockwise: bool) -> Ring:
    ccw = _counter_clockwise(ring)
    return _closed(ccw if counter_clockwise else ccw[::-1])


def split_at_antimeridian(rings: Sequence[Ring]) -> list[list[Ring]]:
    """A polygon (exterior ring, then holes) as polygons none of which crosses ±180.

    RFC 7946 section 3.1.9: a geometry crossing the antimeridian is cut in two, so
    no GIS draws it as a band around the world. The rings come with continuous
    longitudes (possibly past ±180); each part is brought back into -180..180.
    Exterior rings are counter-clockwise, holes clockwise.
    """
    exterior = rings[0]
    longitudes = [lng for lng, _ in exterior]
    if min(longitudes) >= -180.0 and max(longitudes) <= 180.0:
        return [[_oriented(r, i == 0) for i, r in enumerate(rings)]]
    at = 180.0 if max(longitudes) > 180.0 else -180.0
    shift = -360.0 if at > 0 else 360.0
    polygons = []
    for keep_below in (True, False):
        inner_side = keep_below == (at > 0)
        parts = [_clip(ring, at, keep_below) for ring in rings]
        if len(parts[0]) < 3:
            continue
        if not inner_side:
            parts = [_shifted(part, shift) for part in parts]
        polygons.append(
            [_oriented(part, i == 0) for i, part in enumerate(parts) if len(part) >= 3 or i == 0]
        )
    return polygons


def polygons_geometry(polygons: Sequence[list[Ring]]) -> dict[str, object]:
    """A Polygon for one part, a MultiPolygon for several."""
    if len(polygons) == 1:
        return {"type": "Polygon", "coordinates": polygons[0]}
    return {"type": "MultiPolygon", "coordinates": list(polygons)}


def cell_geometry(cell: int) -> dict[str, object]:
    """A cell as GeoJSON for any GIS: one Polygon, or two if it straddles ±180."""
    ring = cell_to_polygon(cell)["coordinates"]
    assert isinstance(ring, list)
    return polygons_geometry(split_at_antimeridian(ring))


def outline_geometry(cells: Iterable[int]) -> dict[str, object]:
    """The outline of a set of cells: their union as polygons with holes, split at ±180.

    H3 merges the cells (``cells_to_geo``); its rings are made continuous first so
    an outline across the antimeridian is cut, not wrapped around the world.
    """
    import h3.api.basic_int as h3int  # here, not at start-up: see hexpsi.server.cli

    shape = h3int.cells_to_geo(list(cells))
    polygons = [shape["coordinates"]] if shape["type"] == "Polygon" else shape["coordinates"]
    parts: list[list[Ring]] = []
    for polygon in polygons:
        parts.extend(split_at_antimeridian([_unwrapped(ring) for ring in polygon]))
    return polygons_geometry(parts)


def feature(geometry: dict[str, object], properties: Mapping[str, object]) -> dict[str, object]:
    return {"type": "Feature", "geometry": geometry, "properties": dict(properties)}


def cells_to_geojson(properties: Mapping[int, Mapping[str, object]]) -> dict[str, object]:
    """A FeatureCollection with one Polygon per cell, id and ``cell`` the index string."""
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": cell_str(cell),
                "geometry": cell_geometry(cell),
                "properties": {"cell": cell_str(cell), **properties[cell]},
            }
            for cell in sorted(properties)
        ],
    }


# --- the three encode formats --------------------------------------------------


def encoding_to_json(encoding: Encoding) -> str:
    """One object: resolution, count, area_km2, the sorted union, and each feature's cells."""
    document = {
        "resolution": encoding.resolution,
        "count": len(encoding.cells),
        "area_km2": encoding.area_km2,
        "cells": sorted_cell_strs(encoding.cells),
        "features": [
            {"id": f.id, "count": len(f.cells), "cells": sorted_cell_strs(f.cells)}
            for f in encoding.features
        ],
    }
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def encoding_to_csv(encoding: Encoding) -> str:
    """``cell,feature_id`` then one row per (cell, feature) pair, sorted by cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["cell", "feature_id"])
    for cell, ids in encoding.features_by_cell().items():
        writer.writerows([cell_str(cell), feature_id] for feature_id in ids)
    return out.getvalue()


def encoding_to_geojson(encoding: Encoding) -> str:
    """One Polygon per cell with the ids of the features that cover it."""
    properties = {cell: {"features": ids} for cell, ids in encoding.features_by_cell().items()}
    return json.dumps(cells_to_geojson(properties), allow_nan=False) + "\n"


FORMATTERS: dict[str, Callable[[Encoding], str]] = {
    "json": encoding_to_json,
    "csv": encoding_to_csv,
    "geojson": encoding_to_geojson,
}
