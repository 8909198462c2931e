"""Conservative H3 covers: every cell a buffered shape touches, at one resolution.

This is the promise hexpsi sells: if a strike point and a protected point are
within r_strike + r_protect of each other, their covers share a cell. Centroid
polyfill (``polygon_to_cells``) and ``grid_disk`` rings both miss cells, so:

* Common case: each shape is drawn as polygons lying just *outside* it (a
  circle becomes a regular polygon whose edges stay outside the circle; a line
  segment becomes a capsule; an area is its own polygon plus a capsule around
  every edge), with edges of at most 1 km, and h3's C code returns every cell
  that overlaps them (``contain="overlap"``), plus the cells holding the
  shape's own points (see ``_overlap_cells`` for the h3 case this closes).
* H3 draws polygon and cell edges straight in (lat, lng) while both are really
  great-circle arcs; the distances are grown by a bound on that bow
  (``sphere.flat_bow_m``) and by the WGS84-to-sphere stretch
  (``sphere.wgs84_stretch``), since users measure on WGS84.
* Near the poles (past 85 degrees) and at coarse resolutions (0..3) straight
  (lat, lng) edges are meaningless, so a flood fill over neighbouring cells keeps
  every cell whose exact great-circle distance to the shape is within reach.

The price is a bounded false-alarm slack: two point covers can share a cell
only if the points are within their radii (times the WGS84 stretch, at most
1.0056) plus the widest cell (2 x 1.0998 average edges) plus the drawn
polygons' overshoot (0.05 edges each); the largest measured is 2.14 edges and
the tests assert 2.3.

Areas are taken to be smaller than a hemisphere (their inside is the side of
the exterior ring that does not hold its antipode). Edges of lines and rings
are great-circle arcs and must be shorter than ``MAX_SEGMENT_M``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence

import h3.api.basic_int as h3

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo import sphere
from hexpsi.protocol.geo.resolution import check_resolution
from hexpsi.protocol.geo.shapes import Area, Circle, Feature, LatLng, Path, Shape

MAX_POLYGON_EDGE_M = 1_000.0
"""Edges handed to H3 are densified to this length so their bow stays tiny."""
POLAR_LAT_DEG = 85.0
"""Shapes whose cells reach past this latitude are covered by flood fill."""
FLOOD_MAX_RES = 3
"""At resolutions up to this one cells are too large for straight-edge tests."""
EPSILON_M = 0.01
"""Float tolerance: a point on a cell edge covers the cells on both sides."""
CELL_CIRCUMRADIUS_FACTOR = 1.12
"""Largest centre-to-vertex distance of any cell / H3's average edge length (1.0998 measured)."""
EXCESS_FRACTION = 0.05
"""A drawn polygon may stick out beyond the buffered shape by this share of a cell edge."""
MAX_SEGMENT_M = 10_000_000.0
"""A quarter of the Earth's circumference: longer arcs are ambiguous to draw."""


def shape_to_cover(shape: Shape, res: int) -> set[int]:
    """Every ``res`` cell that the buffered shape touches."""
    res = check_resolution(res)
    if isinstance(shape, Circle):
        return _circle_cover(shape.center, shape.radius_m, res)
    if isinstance(shape, Path):
        return _path_cover(shape.points, shape.buffer_m, res)
    if isinstance(shape, Area):
        return _area_cover(shape, res)
    raise InputError(f"cannot cover {type(shape).__name__}: not a Circle, Path or Area")


def feature_to_cover(feature: Feature, res: int) -> set[int]:
    """The union of the covers of a feature's shapes."""
    res = check_resolution(res)
    cells: set[int] = set()
    for shape in feature.shapes:
        cells |= shape_to_cover(shape, res)
    return cells


def cover_area_km2(cells: Iterable[int]) -> float:
    """Total area of the cells in km², each cell's exact area on H3's sphere."""
    return math.fsum(h3.cell_area(cell, "km^2") for cell in cells)


# --- reach: how far from the shape's skeleton a cell may be and still count ---------


def _cell_circumradius_m(res: int) -> float:
    return CELL_CIRCUMRADIUS_FACTOR * float(h3.average_hexagon_edge_length(res, "m"))


class _Reach:
    """Distances for one shape part: sphere reach, polygon margin, polar or not.

    ``skeleton`` are points of the part (densified along its arcs); ``distance_m``
    is the radius or buffer around them.
    """

    def __init__(self, skeleton: Sequence[LatLng], distance_m: float, res: int) -> None:
        spread_deg = math.degrees((1.01 * distance_m + 1.0) / sphere.EARTH_RADIUS_M)
        cell_deg = math.degrees(2 * _cell_circumradius_m(res) / sphere.EARTH_RADIUS_M)
        low = max(0.0, sphere.min_abs_lat_deg(skeleton) - spread_deg)
        self.max_lat_deg = min(90.0, sphere.max_abs_lat_deg(skeleton) + spread_deg + cell_deg)
        self.sphere_m = distance_m * sphere.wgs84_stretch(low) + EPSILON_M
        self.polar = res <= FLOOD_MAX_RES or self.max_lat_deg >= POLAR_LAT_DEG
        self.polygon_m = (
            self.sphere_m
            + sphere.flat_bow_m(_cell_circumradius_m(res), self.max_lat_deg)
            + sphere.flat_bow_m(MAX_POLYGON_EDGE_M, self.max_lat_deg)
        )


# --- circles --------------------------------------------------------------------------


def _circle_cover(center: LatLng, radius_m: float, res: int) -> set[int]:
    reach = _Reach([center], radius_m, res)
    if reach.polar:
        return _flood_arc(center, center, reach.sphere_m, res)
    return _overlap_cells(_cap_ring(center, reach.polygon_m, res), (), [center], res)


def _vertex_count(inradius_m: float, turn: float, res: int) -> int:
    """Vertices for an arc of ``turn`` radians drawn outside a circle of ``inradius_m``.

    Enough that each edge is at most ``MAX_POLYGON_EDGE_M`` long and the corners
    stick out at most ``EXCESS_FRACTION`` of a cell edge; at least 3 per half turn.
    """
    allowed = EXCESS_FRACTION * h3.average_hexagon_edge_length(res, "m")
    half_angle = math.acos(1.0 / (1.0 + allowed / max(inradius_m, 1e-9)))
    by_excess = turn / (2 * half_angle)
    by_edge = turn * inradius_m * 1.01 / MAX_POLYGON_EDGE_M
    return max(math.ceil(3 * turn / math.pi), math.ceil(by_excess), math.ceil(by_edge))


def _circumradius_m(inradius_m: float, half_angle: float) -> float:
    """Distance to the corners of a spherical polygon whose edges stay ``inradius_m`` out.

    A right spherical triangle gives tan(inradius) = tan(circumradius) cos(half_angle).
    """
    inner = inradius_m / sphere.EARTH_RADIUS_M
    return math.atan(math.tan(inner) / math.cos(half_angle)) * sphere.EARTH_RADIUS_M


def _cap_ring(center: LatLng, inradius_m: float, res: int) -> list[LatLng]:
    """A regular polygon around ``center`` whose every edge lies outside the circle."""
    count = _vertex_count(inradius_m, 2 * math.pi, res)
    corner_m = _circumradius_m(inradius_m, math.pi / count)
    return [sphere.destination(center, 360.0 * i / count, corner_m) for i in range(count)]


# --- lines ----------------------------------------------------------------------------


def _path_cover(points: Sequence[LatLng], buffer_m: float, res: int) -> set[int]:
    cells: set[int] = set()
    for a, b in itertools.pairwise(points):
        cells |= _segment_cover(a, b, buffer_m, res)
    return cells


def _segment_cover(a: LatLng, b: LatLng, buffer_m: float, res: int) -> set[int]:
    if sphere.haversine_m(a, b) > MAX_SEGMENT_M:
        raise InputError(
            f"segment {a} -> {b} is longer than {MAX_SEGMENT_M / 1000:.0f} km",
            hint="split it: a great-circle arc that long is ambiguous",
        )
    skeleton = sphere.densify(a, b, MAX_POLYGON_EDGE_M)
    reach = _Reach(skeleton, buffer_m, res)
    if reach.polar:
        return _flood_arc(a, b, reach.sphere_m, res)
    return _overlap_cells(_capsule_ring(skeleton, reach.polygon_m, res), (), skeleton, res)


def _capsule_ring(skeleton: Sequence[LatLng], inradius_m: float, res: int) -> list[LatLng]:
    """A polygon holding every point within ``inradius_m`` of the arc through ``skeleton``.

    Both sides are offset perpendicular to the arc at every skeleton point; the
    great-circle chord between two such offsets bulges away from the arc, so the
    sides stay outside. Half-polygons close each end like ``_cap_ring``.
    """
    first, last = skeleton[0], skeleton[-1]
    if sphere.haversine_m(first, last) < 1e-6:
        return _cap_ring(first, inradius_m, res)
    half = _vertex_count(inradius_m, math.pi, res)
    corner_m = _circumradius_m(inradius_m, math.pi / (2 * half))
    bearings = [sphere.initial_bearing_deg(p, last) for p in skeleton[:-1]]
    bearings.append(sphere.initial_bearing_deg(last, first) + 180.0)
    left = [
        sphere.destination(p, t - 90.0, corner_m) for p, t in zip(skeleton, bearings, strict=True)
    ]
    right = [
        sphere.destination(p, t + 90.0, corner_m) for p, t in zip(skeleton, bearings, strict=True)
    ]
    step = 180.0 / half
    end_cap = [
        sphere.destination(last, bearings[-1] - 90.0 + k * step, corner_m) for k in range(1, half)
    ]
    start_cap = [
        sphere.destination(first, bearings[0] + 90.0 + k * step, corner_m) for k in range(1, half)
    ]
    return left + end_cap + right[::-1] + start_cap


# --- areas ----------------------------------------------------------------------------


def _ring_edges(ring: Sequence[LatLng]) -> list[tuple[LatLng, LatLng]]:
    return [(ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring))]


def _dense_ring(ring: Sequence[LatLng]) -> list[LatLng]:
    dense: list[LatLng] = []
    for a, b in _ring_edges(ring):
        dense.extend(sphere.densify(a, b, MAX_POLYGON_EDGE_M)[:-1])
    return dense


def _area_cover(area: Area, res: int) -> set[int]:
    rings = (area.exterior, *area.holes)
    for ring in rings:
        for a, b in _ring_edges(ring):
            if sphere.haversine_m(a, b) > MAX_SEGMENT_M:
                raise InputError(f"polygon edge {a} -> {b} is longer than 10000 km")
    dense = [_dense_ring(ring) for ring in rings]
    reach = _Reach([p for ring in dense for p in ring], area.buffer_m, res)
    exterior = [sphere.to_vector(p) for p in area.exterior]
    # The ring parts the poles exactly when one of them is inside it.
    holds_pole = sphere.winding_number(sphere.NORTH_POLE, exterior) != 0
    if reach.polar or holds_pole:
        return _polar_area_cover(area, reach.sphere_m, res)
    cells = _overlap_cells(dense[0], dense[1:], (), res)
    for ring in rings:
        for a, b in _ring_edges(ring):
            skeleton = sphere.densify(a, b, MAX_POLYGON_EDGE_M)
            cells |= _overlap_cells(
                _capsule_ring(skeleton, reach.polygon_m, res), (), skeleton, res
            )
    return cells


def _polar_area_cover(area: Area, reach_m: float, res: int) -> set[int]:
    """Flood fill: a band of cells near the rings, then the components it encloses.

    Cells not in the band never touch a ring, so each connected set of them lies
    wholly inside or wholly outside; one winding-number test decides for all.
    """
    band: set[int] = set()
    for ring in (area.exterior, *area.holes):
        for a, b in _ring_edges(ring):
            band |= _flood_arc(a, b, reach_m, res)
    exterior = [sphere.to_vector(p) for p in area.exterior]
    holes = [[sphere.to_vector(p) for p in hole] for hole in area.holes]

    def inside(cell: int) -> bool:
        v = sphere.to_vector(h3.cell_to_latlng(cell))
        return sphere.winding_number(v, exterior) != 0 and not any(
            sphere.winding_number(v, hole) for hole in holes
        )

    def beside_band(cell: int) -> bool:
        return cell not in band and any(n in band for n in h3.grid_disk(cell, 1))

    interior: set[int] = set()
    classified: set[int] = set()
    for cell in band:
        for neighbour in h3.grid_disk(cell, 1):
            if neighbour in band or neighbour in classified:
                continue
            if inside(neighbour):
                component = _flood([neighbour], lambda c: c not in band)
                interior |= component
            else:
                component = _flood([neighbour], beside_band)
            classified |= component
    return band | interior


# --- the two engines ------------------------------------------------------------------


def _overlap_cells(
    outer: Sequence[LatLng],
    holes: Sequence[Sequence[LatLng]],
    anchors: Iterable[LatLng],
    res: int,
) -> set[int]:
    """Cells overlapping a polygon by h3's C code, plus the cells holding ``anchors``.

    h3 tests overlap with straight (lat, lng) edges: a cell counts if its centre
    is inside, if the boundaries cross, or if the polygon's first vertex lies in
    it. A polygon inside a cell's straight-edged outline whose first vertex pokes
    across the cell's true (bowed) edge is therefore missed; the cells holding
    the shape's own points (deep inside the polygon) restore it.
    """
    shape = h3.LatLngPoly(list(outer), *[list(hole) for hole in holes])
    cells = set(h3.h3shape_to_cells_experimental(shape, res, "overlap"))
    cells.update(h3.latlng_to_cell(lat, lng, res) for lat, lng in anchors)
    return cells


def _flood(seeds: Iterable[int], keep: Callable[[int], bool]) -> set[int]:
    """All cells connected to ``seeds`` through cells that ``keep`` accepts."""
    kept: set[int] = set()
    seen = set(seeds)
    frontier = list(seen)
    while frontier:
        cell = frontier.pop()
        if not keep(cell):
            continue
        kept.add(cell)
        for neighbour in h3.grid_disk(cell, 1):
            if neighbour not in seen:
                seen.add(neighbour)
                frontier.append(neighbour)
    return kept


def _flood_arc(a: LatLng, b: LatLng, reach_m: float, res: int) -> set[int]:
    """Every cell within ``reach_m`` of the arc ``a``-``b`` (a point if a == b), exactly.

    The cells touching a connected region are connected through shared edges, so
    a flood from the cell holding ``a`` finds them all. A cell is in if its centre
    is within reach, or if some point of its boundary (great-circle edges between
    the vertices H3 reports) is.
    """
    va, vb = sphere.to_vector(a), sphere.to_vector(b)
    ends = {h3.latlng_to_cell(a[0], a[1], res), h3.latlng_to_cell(b[0], b[1], res)}
    circumradius_m = _cell_circumradius_m(res)

    def touches(cell: int) -> bool:
        centre_m = sphere.point_to_arc_m(sphere.to_vector(h3.cell_to_latlng(cell)), va, vb)
        if centre_m <= reach_m or cell in ends:
            return True
        if centre_m - circumradius_m > reach_m:
            return False
        corners = [sphere.to_vector(p) for p in h3.cell_to_boundary(cell)]
        return any(
            sphere.arc_to_arc_m(corners[i - 1], corners[i], va, vb) <= reach_m
            for i in range(len(corners))
        )

    return _flood(ends, touches)
