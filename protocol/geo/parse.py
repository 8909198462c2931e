"""Turn a user's GeoJSON or CSV into validated features.

Pure: it takes bytes, text or parsed JSON and returns ``Feature`` values; the
caller reads the file. Every rejection is an ``InputError`` that says what to fix
and where (feature id and index, the JSON member, the CSV line), because the
person reading it has to find the spot in their own file. CSV is read by
``parse_csv``; which attributes hold radii, buffers and ids is ``fields``'s
business.

Decisions worth knowing:

- GeoJSON positions are ``[longitude, latitude]`` (a third number, the altitude,
  and anything after it is ignored); shapes use ``(lat, lng)``.
- A ``crs`` member may name WGS84 longitude/latitude only, and a ``trs``
  member ISO 8601 UTC only (``crs``); a ``crs`` member never swaps the axes.
  Swapped files are caught by a node's theatre (``theatre``), not guessed at.
- A feature's radius (points) and buffer (lines and polygons) come from
  ``properties.radius_m`` and ``properties.buffer_m`` or the attributes
  ``FieldNames`` names; a member that is absent or ``null`` falls back to the
  default. With no default (``default_radius_m=None``) a point without a radius
  is refused, and lines and polygons without a buffer are themselves (buffer 0).
  Both are validated whenever present, so a bad value never hides behind a
  geometry that ignores it. A property that looks like a distance but is not
  read is refused (``fields``).
- Rings must be closed (last position == first), as RFC 7946 requires; the
  closing repeat is dropped when building an ``Area``. Winding order is not
  checked (RFC 7946 asks parsers not to reject either order).
- A feature without geometry (``"geometry": null``) is rejected rather than
  skipped: silently dropping a protected position would report false "clear"s.
- Time (``timing``): ``valid_from``/``valid_until`` make a position timed,
  ``times`` on a LineString make it a route with times, an OGC Moving
  Features ``temporalGeometry`` a moving point (``moving``), and
  ``not_before``/``not_after`` give a strike its window; ``time_buffer_s``
  widens them. Which of them a file may carry depends on what it is read as
  (``TimeRules.role``).
- Feature ids are the GeoJSON ``id`` member (string or integer), else the first
  of ``properties.id``, ``properties.fid`` (QGIS) and ``properties.name`` that
  has a value, or the one property ``FieldNames.id`` names; failing all, the
  feature's index in its collection. For CSV the same columns, or the row's
  index among data rows. Ids must be unique (compared as text, so ``2`` and
  ``"2"`` collide) because every output maps cells back to them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.crs import check_crs, check_trs
from hexpsi.protocol.geo.fields import (
    FieldNames,
    check_stray_distances,
    check_unique_ids,
    missing_radius,
)
from hexpsi.protocol.geo.json_values import json_position, json_positions, show_json
from hexpsi.protocol.geo.moving import temporal_geometry_to_movement
from hexpsi.protocol.geo.parse_csv import features_from_csv
from hexpsi.protocol.geo.shapes import (
    Area,
    Circle,
    Feature,
    FeatureId,
    LatLng,
    Path,
    Ring,
    Shape,
    check_distance,
)
from hexpsi.protocol.geo.sources import Source, kinds_of
from hexpsi.protocol.geo.timing import (
    TEMPORAL_GEOMETRY,
    TIME_BUFFER,
    TIMES,
    TimeKind,
    TimeRules,
    check_member_names,
    check_time_members,
    fixed_interval,
    given_members,
    read_time_buffer,
    read_times,
    route_legs,
    widen,
)
from hexpsi.protocol.spacetime.interval import Interval

__all__ = [
    "GEOMETRY_TYPES",
    "check_crs",
    "features_from_geojson",
    "parse_json",
    "read_features",
    "read_source",
    "ring_from_geojson",
    "show_json",
]

GEOMETRY_TYPES = (
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
)
MAX_COLLECTION_DEPTH = 16
"""GeometryCollections may nest (RFC 7946 discourages it); deeper than this is refused."""

JSON_SUFFIXES = (".geojson", ".json")


@dataclass(frozen=True, slots=True)
class _Distances:
    """The metres a feature's points (radius) and lines/polygons (buffer) grow by.

    ``radius_m`` is ``None`` when neither the feature nor a default gives one;
    ``no_radius`` then says why.
    """

    radius_m: float | None
    buffer_m: float
    no_radius: str


def _lnglat(point: LatLng) -> str:
    return f"[{point[1]}, {point[0]}]"


# --- GeoJSON geometry ----------------------------------------------------------


def ring_from_geojson(value: object, path: str) -> Ring:
    """A closed GeoJSON linear ring as (lat, lng) corners, without the closing repeat."""
    points = json_positions(
        value, path, minimum=4, what="a polygon ring (3 corners plus the first repeated)"
    )
    if points[0] != points[-1]:
        raise InputError(
            f"ring is not closed: its last position {_lnglat(points[-1])} must repeat "
            f"its first {_lnglat(points[0])}",
            where=path,
        )
    ring = tuple(points[:-1])
    if len(set(ring)) < 3:
        raise InputError("a polygon ring needs at least three distinct corners", where=path)
    return ring


def _point(coords: object, where: str, distances: _Distances) -> Shape:
    center = json_position(coords, where)
    if distances.radius_m is None:
        raise missing_radius(distances.no_radius)
    return Circle(center=center, radius_m=distances.radius_m)


def _line(coords: object, where: str, distances: _Distances) -> Shape:
    points = json_positions(coords, where, minimum=2, what="a line")
    return Path(points=tuple(points), buffer_m=distances.buffer_m)


def _polygon(coords: object, where: str, distances: _Distances) -> Shape:
    if not isinstance(coords, list) or not coords:
        raise InputError(
            "a polygon must be a non-empty array of rings (exterior first), got "
            f"{show_json(coords)}",
            where=where,
        )
    rings = [ring_from_geojson(ring, f"{where}[{i}]") for i, ring in enumerate(coords)]
    return Area(exterior=rings[0], holes=tuple(rings[1:]), buffer_m=distances.buffer_m)


_SINGLE: dict[str, Callable[[object, str, _Distances], Shape]] = {
    "Point": _point,
    "LineString": _line,
    "Polygon": _polygon,
}
_MULTI = {
    "MultiPoint": ("Point", "positions"),
    "MultiLineString": ("LineString", "lines"),
    "MultiPolygon": ("Polygon", "polygons"),
}


def _parts(value: object, path: str, what: str) -> list[object]:
    """The members of a Multi* geometry's coordinates: a non-empty array."""
    if not isinstance(value, list):
        raise InputError(f"must be an array of {what}, got {show_json(value)}", where=path)
    if not value:
        raise InputError(f"has no {what}", where=path)
    return value


def _geometry(value: object, path: str, distances: _Distances, depth: int = 0) -> list[Shape]:
    """The shapes of one GeoJSON geometry; ``path`` names it in error messages."""
    if not isinstance(value, dict):
        raise InputError(f"must be a GeoJSON geometry object, got {show_json(value)}", where=path)
    check_crs(value, where=path)
    kind = value.get("type")
    if kind not in GEOMETRY_TYPES:
        raise InputError(
            f"{show_json(kind)} is not a GeoJSON geometry type (expected one of "
            f"{', '.join(GEOMETRY_TYPES)})",
            where=f"{path}.type",
        )
    if kind == "GeometryCollection":
        if depth >= MAX_COLLECTION_DEPTH:
            raise InputError(
                f"GeometryCollections nested deeper than {MAX_COLLECTION_DEPTH} levels", where=path
            )
        members = _parts(value.get("geometries"), f"{path}.geometries", "geometries")
        return [
            shape
            for i, member in enumerate(members)
            for shape in _geometry(member, f"{path}.geometries[{i}]", distances, depth + 1)
        ]
    if "coordinates" not in value:
        raise InputError(f"a {kind} needs a 'coordinates' member", where=path)
    coords = value["coordinates"]
    where = f"{path}.coordinates"
    if kind in _SINGLE:
        return [_SINGLE[kind](coords, where, distances)]
    single, what = _MULTI[kind]
    return [
        _SINGLE[single](part, f"{where}[{i}]", distances)
        for i, part in enumerate(_parts(coords, where, what))
    ]


# --- GeoJSON features ----------------------------------------------------------


def _id_value(raw: object, member: str, index: int) -> FeatureId:
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, str | int) or raw == "":
        raise InputError(
            f"{member} must be a non-empty string or an integer, got {show_json(raw)}",
            where=f"feature at index {index}",
        )
    return raw


def _feature_id(
    value: dict[str, object], properties: dict[str, object], index: int, fields: FieldNames
) -> tuple[FeatureId, bool]:
    """The feature's id and whether the file gave it (False: defaulted to the index)."""
    if fields.id in (None, "id") and value.get("id") is not None:
        return _id_value(value["id"], "id", index), True
    for name in fields.id_fields:
        raw = properties.get(name)
        if raw is not None and raw != "":
            return _id_value(raw, f"properties.{name}", index), True
    return index, False


def _describe(feature_id: FeatureId, given: bool, index: int) -> str:
    return f"feature {feature_id!r} (index {index})" if given else f"feature at index {index}"


def _distance_member(
    properties: dict[str, object], name: str, default_m: float | None, where: str
) -> float | None:
    value = properties.get(name)
    if value is None:
        return default_m
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(
            f"properties.{name} must be a number of metres, got {show_json(value)}", where=where
        )
    return check_distance(value, f"properties.{name}", where=where)


def _property(name: str) -> str:
    return f"properties.{name}"


@dataclass(frozen=True, slots=True)
class _Read:
    """One feature as read: whether the file gave its id, and how it gave its time."""

    feature: Feature
    given: bool
    kind: TimeKind


def _feature(
    value: object, index: int, default_m: float | None, fields: FieldNames, timing: TimeRules
) -> _Read:
    if not isinstance(value, dict) or value.get("type") != "Feature":
        found = value.get("type") if isinstance(value, dict) else value
        raise InputError(
            f"must be a GeoJSON Feature object, got {show_json(found)}",
            where=f"feature at index {index}",
        )
    properties = value.get("properties")
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise InputError(
            f"properties must be an object or null, got {show_json(properties)}",
            where=f"feature at index {index}",
        )
    feature_id, given = _feature_id(value, properties, index, fields)
    where = _describe(feature_id, given, index)
    check_crs(value, where=where)
    check_trs(value, where=where)
    check_stray_distances(
        (name for name, v in properties.items() if v is not None and v != ""),
        fields,
        what="properties.{}",
        where=where,
    )
    check_member_names(properties, ignore=fields.ignore, member=_property, where=where)
    moving = value.get(TEMPORAL_GEOMETRY) is not None
    time_given = given_members(properties) | ({TEMPORAL_GEOMETRY} if moving else set())
    check_time_members(time_given, timing, member=_property, where=where)
    buffer_m = _distance_member(properties, fields.buffer, default_m, where)
    distances = _Distances(
        radius_m=_distance_member(properties, fields.radius, default_m, where),
        buffer_m=0.0 if buffer_m is None else buffer_m,
        no_radius=f"properties.{fields.radius} is not set",
    )
    if not moving and value.get("geometry") is None:
        raise InputError(
            "has no geometry; every feature needs a location to protect or strike", where=where
        )
    try:
        if moving:
            movement = temporal_geometry_to_movement(
                value[TEMPORAL_GEOMETRY],
                TEMPORAL_GEOMETRY,
                radius_m=distances.radius_m,
                no_radius=distances.no_radius,
            )
        else:
            shapes = tuple(_geometry(value["geometry"], "geometry", distances))
    except InputError as exc:
        raise InputError(exc.message, where=where, hint=exc.hint) from exc
    when: tuple[Interval, ...] | None
    if moving:
        shapes, when, kind = movement.shapes, movement.when, TimeKind.MOVING_POINT
    elif TIMES in time_given:
        shapes, when = _route(value["geometry"], shapes, properties[TIMES], where)
        kind = TimeKind.ROUTE
    else:
        interval = fixed_interval(properties, timing, member=_property, where=where)
        when = None if interval is None else (interval,) * len(shapes)
        kind = TimeKind.STANDING if interval is None else TimeKind.TIMED
    own = read_time_buffer(properties.get(TIME_BUFFER), member=_property(TIME_BUFFER), where=where)
    when = widen(when, timing.buffer_s if own is None else own)
    return _Read(Feature(id=feature_id, shapes=shapes, when=when), given, kind)


def _route(
    geometry: object, shapes: tuple[Shape, ...], times: object, where: str
) -> tuple[tuple[Shape, ...], tuple[Interval, ...]]:
    """A LineString with ``properties.times``: one leg per pair of vertices, each timed."""
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    if kind != "LineString" or len(shapes) != 1 or not isinstance(shapes[0], Path):
        raise InputError(
            f"properties.times is given on a {kind}; only a LineString route can carry times "
            "(one per vertex)",
            where=where,
            hint="give each route its own LineString feature, or time the feature with "
            "valid_from/valid_until",
        )
    route = shapes[0]
    moments = read_times(times, len(route.points), member=_property(TIMES), where=where)
    return route_legs(route.points, moments, route.buffer_m)


def features_from_geojson(
    obj: object,
    *,
    default_radius_m: float | None,
    fields: FieldNames | None = None,
    timing: TimeRules | None = None,
) -> list[Feature]:
    """The features of a parsed GeoJSON FeatureCollection, Feature or bare geometry.

    ``default_radius_m`` is the radius or buffer of shapes that give none; ``None``
    refuses points without a radius (lines and polygons are then not buffered).
    ``timing`` says which time members the file may carry (default: either kind).
    """
    return [read.feature for read in _read_geojson(obj, default_radius_m, fields, timing)]


def _read_geojson(
    obj: object,
    default_radius_m: float | None,
    fields: FieldNames | None,
    timing: TimeRules | None,
) -> list[_Read]:
    fields = fields or FieldNames()
    timing = timing or TimeRules()
    default_m = (
        None if default_radius_m is None else check_distance(default_radius_m, "the default radius")
    )
    if not isinstance(obj, dict):
        raise InputError(f"GeoJSON must be an object with a 'type' member, got {show_json(obj)}")
    check_crs(obj)
    check_trs(obj)
    kind = obj.get("type")
    if kind == "FeatureCollection":
        members = obj.get("features")
        if not isinstance(members, list):
            raise InputError(f"'features' must be an array, got {show_json(members)}")
        if not members:
            raise InputError("the FeatureCollection has no features")
        parsed = [
            _feature(member, i, default_m, fields, timing) for i, member in enumerate(members)
        ]
    elif kind == "Feature":
        parsed = [_feature(obj, 0, default_m, fields, timing)]
    elif kind in GEOMETRY_TYPES:
        distances = _Distances(
            radius_m=default_m,
            buffer_m=default_m or 0.0,
            no_radius="a bare geometry has no properties",
        )
        shapes = tuple(_geometry(obj, "geometry", distances))
        window = fixed_interval({}, timing, member=_property, where="")
        when = None if window is None else widen((window,) * len(shapes), timing.buffer_s)
        kind_read = TimeKind.STANDING if when is None else TimeKind.TIMED
        return [_Read(Feature(id=0, shapes=shapes, when=when), False, kind_read)]
    else:
        raise InputError(
            f"type {show_json(kind)} is not GeoJSON (expected FeatureCollection, Feature or a "
            "geometry type)"
        )
    check_unique_ids(
        (read.feature, read.given, _describe(read.feature.id, read.given, i))
        for i, read in enumerate(parsed)
    )
    return parsed


# --- detection -----------------------------------------------------------------


def read_features(
    data: bytes,
    *,
    source: str,
    default_radius_m: float | None,
    fields: FieldNames | None = None,
    timing: TimeRules | None = None,
) -> list[Feature]:
    """Features from a file's bytes, GeoJSON or CSV (see :func:`read_source`)."""
    found = read_source(
        data, source=source, default_radius_m=default_radius_m, fields=fields, timing=timing
    )
    return list(found.features)


def read_source(
    data: bytes,
    *,
    source: str,
    default_radius_m: float | None,
    fields: FieldNames | None = None,
    timing: TimeRules | None = None,
) -> Source:
    """A file's features, and how each gave its time, from its bytes: GeoJSON or CSV.

    The content decides: text starting with ``{`` or ``[`` is JSON. A name ending
    in ``.geojson``/``.json`` also means JSON, so a broken GeoJSON file gets a
    JSON error rather than a puzzling CSV one. Everything else is read as CSV.
    Errors are prefixed with ``source``.
    """
    try:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"is not UTF-8 text (bad byte at offset {exc.start})",
                hint="save it as UTF-8; in Excel: Save As, CSV UTF-8",
            ) from None
        head = text.lstrip()
        if not head:
            raise InputError("is empty; expected GeoJSON or CSV")
        if head[0] in "{[" or source.lower().endswith(JSON_SUFFIXES):
            parsed = _read_geojson(parse_json(text), default_radius_m, fields, timing)
            features = tuple(read.feature for read in parsed)
            return Source(source, features, tuple(read.kind for read in parsed))
        rows = features_from_csv(
            text, default_radius_m=default_radius_m, fields=fields, timing=timing
        )
        return Source(source, tuple(rows), tuple(kinds_of(rows)))
    except InputError as exc:
        raise InputError(exc.message, where=source, hint=exc.hint) from exc


def parse_json(text: str) -> object:
    """Parsed JSON, or an InputError saying where it breaks."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InputError("not usable JSON: nested too deeply") from None
