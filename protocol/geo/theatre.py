"""A node's theatre: the polygons its positions and strikes can lie in at all.

Swapped latitude and longitude still make valid coordinates: the At-Tanf strike
``[38.64, 33.52]`` written as ``[33.52, 38.64]`` lies in central Anatolia, and
comes back CLEAR. A node that declares its theatre refuses every position and
strike with a coordinate outside it, naming the feature and asking whether the
axes are swapped. No theatre, no bound.

Decisions:

- A theatre is a GeoJSON Polygon or MultiPolygon, bare or in a Feature or a
  FeatureCollection of those; anything else is refused. The ``crs`` rule is the
  inputs' (``parse.check_crs``). Holes are outside the theatre.
- Every coordinate a feature has is checked: a point's centre, every vertex of
  a line, every vertex of a polygon's rings. A radius or buffer may reach past
  the theatre's edge: the theatre bounds where things are, not how far their
  safety margins reach.
- Edges are straight lines in longitude/latitude, as a GIS map in EPSG:4326
  draws them (not great-circle arcs): what the operator drew is what is
  checked. A point on an edge or corner is inside.
- The antimeridian: no ring may cross it. An edge spanning more than 180° of
  longitude is refused, with RFC 7946's advice (section 3.1.9): cut the polygon
  at ±180° into a MultiPolygon. Longitude -180 and 180 are one meridian, so a
  point on it is inside if either side holds it. (A cap around a pole is drawn
  the same way: as bands reaching latitude ±90, cut at ±180° and at 0°.)
- Checking is by latitude bands: each ring's edges are filed by the bands they
  span, so a point meets only the edges of its band, and a detailed border
  (thousands of corners) checks large position files quickly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.parse import check_crs, parse_json, ring_from_geojson, show_json
from hexpsi.protocol.geo.shapes import Area, Circle, Feature, LatLng, Path, Ring

MAX_THEATRE_CORNERS = 1_000_000
"""More corners than this is not a theatre but a survey; simplify it first."""
MAX_BANDS = 4096
EDGES_PER_BAND = 4
HALF_TURN_DEG = 180.0
ANTIMERIDIAN_HINT = (
    "cut the polygon at the antimeridian into a MultiPolygon with one part on each side, "
    "as RFC 7946 (section 3.1.9) asks"
)

Edge = tuple[float, float, float, float]
"""(lat1, lng1, lat2, lng2)."""


@dataclass(frozen=True, slots=True)
class _Ring:
    """A ring's edges filed by the latitude bands they span."""

    corners: Ring
    south: float
    north: float
    bands: tuple[tuple[Edge, ...], ...] = field(repr=False)

    @classmethod
    def of(cls, corners: Ring) -> _Ring:
        lats = [lat for lat, _ in corners]
        south, north = min(lats), max(lats)
        count = max(1, min(MAX_BANDS, len(corners) // EDGES_PER_BAND))
        filed: list[list[Edge]] = [[] for _ in range(count)]
        for i, (lat1, lng1) in enumerate(corners):
            lat2, lng2 = corners[(i + 1) % len(corners)]
            low, high = sorted((lat1, lat2))
            first, last = _band(low, south, north, count), _band(high, south, north, count)
            for band in range(first, last + 1):
                filed[band].append((lat1, lng1, lat2, lng2))
        return cls(corners, south, north, tuple(tuple(edges) for edges in filed))

    def locate(self, lat: float, lng: float) -> int:
        """1 inside, 0 on the ring, -1 outside (even-odd rule, straight lng/lat edges)."""
        if not self.south <= lat <= self.north:
            return -1
        inside = False
        band = _band(lat, self.south, self.north, len(self.bands))
        for edge in self.bands[band]:
            if _on_edge(lat, lng, edge):
                return 0
            lat1, lng1, lat2, lng2 = edge
            if (lat1 > lat) != (lat2 > lat):
                crossing = lng1 + (lat - lat1) * (lng2 - lng1) / (lat2 - lat1)
                if lng < crossing:
                    inside = not inside
        return 1 if inside else -1


def _band(lat: float, south: float, north: float, count: int) -> int:
    """The latitude band of ``count`` between ``south`` and ``north`` that holds ``lat``."""
    if north == south:
        return 0
    return min(count - 1, max(0, int((lat - south) / (north - south) * count)))


def _on_edge(lat: float, lng: float, edge: Edge) -> bool:
    lat1, lng1, lat2, lng2 = edge
    if not min(lat1, lat2) <= lat <= max(lat1, lat2):
        return False
    if not min(lng1, lng2) <= lng <= max(lng1, lng2):
        return False
    cross = (lng2 - lng1) * (lat - lat1) - (lat2 - lat1) * (lng - lng1)
    return math.isclose(cross, 0.0, abs_tol=1e-12)


@dataclass(frozen=True, slots=True)
class _Region:
    """One polygon of the theatre: its exterior and holes."""

    exterior: _Ring
    holes: tuple[_Ring, ...]

    def contains(self, lat: float, lng: float) -> bool:
        if self.exterior.locate(lat, lng) < 0:
            return False
        return all(hole.locate(lat, lng) <= 0 for hole in self.holes)


def _shape_points(shape: Circle | Path | Area) -> Iterator[LatLng]:
    if isinstance(shape, Circle):
        yield shape.center
    elif isinstance(shape, Path):
        yield from shape.points
    else:
        for ring in (shape.exterior, *shape.holes):
            yield from ring


@dataclass(frozen=True, slots=True)
class Theatre:
    """The polygons a node's positions and strikes must lie in."""

    regions: tuple[_Region, ...]

    def contains(self, point: LatLng) -> bool:
        """Whether ``point`` (lat, lng) lies in the theatre or on its edge."""
        lat, lng = point
        meridians = (lng, -lng) if abs(lng) == HALF_TURN_DEG else (lng,)
        return any(r.contains(lat, m) for r in self.regions for m in meridians)

    def check_features(self, features: Iterable[Feature], *, hint: str = "") -> None:
        """Refuse the first feature with a coordinate outside the theatre."""
        for feature in features:
            for shape in feature.shapes:
                for lat, lng in _shape_points(shape):
                    if not self.contains((lat, lng)):
                        raise InputError(
                            f"feature {feature.id!r} has position [{lng:g}, {lat:g}] "
                            "(longitude, latitude) outside the theatre — are latitude and "
                            "longitude swapped?",
                            hint=hint,
                        )

    def describe(self) -> str:
        """``1 polygon (10 corners), latitude 32.2 to 37.4, longitude 35.5 to 42.5``."""
        rings = [ring for r in self.regions for ring in (r.exterior, *r.holes)]
        corners = sum(len(ring.corners) for ring in rings)
        holes = sum(len(r.holes) for r in self.regions)
        lats = [lat for ring in rings for lat, _ in ring.corners]
        lngs = [lng for ring in rings for _, lng in ring.corners]
        count = f"{len(self.regions)} polygon{'s' if len(self.regions) != 1 else ''}"
        with_holes = f", {holes} hole{'s' if holes != 1 else ''}" if holes else ""
        return (
            f"{count} ({corners:,} corners{with_holes}), latitude {min(lats):g} to "
            f"{max(lats):g}, longitude {min(lngs):g} to {max(lngs):g}"
        )


# --- reading -----------------------------------------------------------------------

POLYGON_TYPES = ("Polygon", "MultiPolygon")


def _polygon(rings: object, where: str) -> _Region:
    if not isinstance(rings, list) or not rings:
        raise InputError(
            f"a polygon must be a non-empty array of rings, got {show_json(rings)}", where=where
        )
    read = [ring_from_geojson(ring, f"{where}[{i}]") for i, ring in enumerate(rings)]
    for i, ring in enumerate(read):
        for (_, lng1), (_, lng2) in zip(ring, (*ring[1:], ring[0]), strict=True):
            if abs(lng2 - lng1) > HALF_TURN_DEG:
                raise InputError(
                    f"an edge from longitude {lng1:g} to {lng2:g} crosses the antimeridian",
                    where=f"{where}[{i}]",
                    hint=ANTIMERIDIAN_HINT,
                )
    return _Region(_Ring.of(read[0]), tuple(_Ring.of(ring) for ring in read[1:]))


def _geometry(value: object, where: str) -> list[_Region]:
    if not isinstance(value, dict) or value.get("type") not in POLYGON_TYPES:
        found = value.get("type") if isinstance(value, dict) else value
        raise InputError(
            f"a theatre is made of Polygons and MultiPolygons, got {show_json(found)}", where=where
        )
    check_crs(value, where=where)
    coords = value.get("coordinates")
    if value["type"] == "Polygon":
        return [_polygon(coords, f"{where}.coordinates")]
    if not isinstance(coords, list) or not coords:
        raise InputError("a MultiPolygon needs at least one polygon", where=f"{where}.coordinates")
    return [_polygon(part, f"{where}.coordinates[{i}]") for i, part in enumerate(coords)]


def _feature(value: object, where: str) -> list[_Region]:
    if not isinstance(value, dict) or value.get("type") != "Feature":
        raise InputError("must be a GeoJSON Feature", where=where)
    check_crs(value, where=where)
    return _geometry(value.get("geometry"), f"{where}.geometry")


def theatre_from_geojson(obj: object) -> Theatre:
    """A theatre from parsed GeoJSON: Polygon, MultiPolygon, or Features of those."""
    if not isinstance(obj, dict):
        raise InputError(f"a theatre must be a GeoJSON object, got {show_json(obj)}")
    check_crs(obj)
    kind = obj.get("type")
    if kind == "FeatureCollection":
        members = obj.get("features")
        if not isinstance(members, list) or not members:
            raise InputError("the FeatureCollection has no features")
        regions = [r for i, m in enumerate(members) for r in _feature(m, f"features[{i}]")]
    elif kind == "Feature":
        regions = _feature(obj, "feature")
    else:
        regions = _geometry(obj, "geometry")
    corners = sum(len(ring.corners) for r in regions for ring in (r.exterior, *r.holes))
    if corners > MAX_THEATRE_CORNERS:
        raise InputError(
            f"the theatre has {corners:,} corners, more than {MAX_THEATRE_CORNERS:,}",
            hint="simplify it: a theatre only has to catch positions far outside it",
        )
    return Theatre(tuple(regions))


def read_theatre(data: bytes, *, source: str) -> Theatre:
    """A theatre from a GeoJSON file's bytes; errors are prefixed with ``source``."""
    try:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(f"is not UTF-8 text (bad byte at offset {exc.start})") from None
        return theatre_from_geojson(parse_json(text))
    except InputError as exc:
        raise InputError(exc.message, where=source, hint=exc.hint) from exc
