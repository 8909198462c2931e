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
- A ``crs`` member (GeoJSON 2008; QGIS still writes one) may name WGS84
  longitude/latitude only: CRS84 (``urn:ogc:def:crs:OGC:1.3:CRS84``,
  ``urn:ogc:def:crs:OGC::CRS84``) or EPSG:4326 (``EPSG:4326``,
  ``urn:ogc:def:crs:EPSG::4326``, and the versioned and ``http://www.opengis.net``
  spellings of both). Anything else (a projected CRS, a ``link`` crs) is refused
  naming it: its numbers are not degrees. EPSG:4326 formally orders latitude
  first, but GeoJSON positions are ``[longitude, latitude]`` whatever the
  member says (RFC 7946), and QGIS and GDAL write them that way under an
  EPSG:4326 member too; so a ``crs`` member never swaps the axes here. Swapped
  files are caught by a node's theatre (``theatre``), not guessed at.
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
- Feature ids are the GeoJSON ``id`` member (string or integer), else the first
  of ``properties.id``, ``properties.fid`` (QGIS) and ``properties.name`` that
  has a value, or the one property ``FieldNames.id`` names; failing all, the
  feature's index in its collection. For CSV the same columns, or the row's
  index among data rows. Ids must be unique (compared as text, so ``2`` and
  ``"2"`` collide) because every output maps cells back to them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.fields import (
    FieldNames,
    check_stray_distances,
    check_unique_ids,
    missing_radius,
)
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
    check_latlng,
)

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
WGS84_CRS = re.compile(
    r"(urn:ogc:def:crs:ogc:[0-9.]*:crs84|ogc:crs84|crs84"
    r"|urn:ogc:def:crs:epsg:[0-9.]*:4326|epsg:4326"
    r"|https?://www\.opengis\.net/def/crs/(ogc/[0-9.]+/crs84|epsg/[0-9.]+/4326))"
)
"""``crs`` names (case-folded) meaning longitude/latitude on WGS84; GeoJSON order either way."""
EXPORT_HINT = (
    "export the layer as EPSG:4326 (WGS 84) GeoJSON; in QGIS: Export, Save Features As, "
    "CRS EPSG:4326"
)


@dataclass(frozen=True, slots=True)
class _Distances:
    """The metres a feature's points (radius) and lines/polygons (buffer) grow by.

    ``radius_m`` is ``None`` when neither the feature nor a default gives one;
    ``no_radius`` then says why.
    """

    radius_m: float | None
    buffer_m: float
    no_radius: str


def show_json(value: object, limit: int = 60) -> str:
    """A short JSON rendering of a bad value for an error message."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _lnglat(point: LatLng) -> str:
    return f"[{point[1]}, {point[0]}]"


# --- GeoJSON geometry ----------------------------------------------------------


def _number(value: object, name: str, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{name} must be a number, got {show_json(value)}", where=path)
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}", where=path)
    return float(value)


def _position(value: object, path: str) -> LatLng:
    if not isinstance(value, list) or len(value) < 2:
        raise InputError(
            f"a position must be an array [longitude, latitude], got {show_json(value)}", where=path
        )
    lng = _number(value[0], "longitude", path)
    lat = _number(value[1], "latitude", path)
    return check_latlng((lat, lng), where=path)


def _positions(value: object, path: str, *, minimum: int, what: str) -> list[LatLng]:
    if not isinstance(value, list):
        raise InputError(
            f"{what} must be an array of positions, got {show_json(value)}", where=path
        )
    if len(value) < minimum:
        raise InputError(f"{what} needs at least {minimum} positions, got {len(value)}", where=path)
    return [_position(item, f"{path}[{i}]") for i, item in enumerate(value)]


def ring_from_geojson(value: object, path: str) -> Ring:
    """A closed GeoJSON linear ring as (lat, lng) corners, without the closing repeat."""
    points = _positions(
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
    center = _position(coords, where)
    if distances.radius_m is None:
        raise missing_radius(distances.no_radius)
    return Circle(center=center, radius_m=distances.radius_m)


def _line(coords: object, where: str, distances: _Distances) -> Shape:
    points = _positions(coords, where, minimum=2, what="a line")
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


def _feature(
    value: object, index: int, default_m: float | None, fields: FieldNames
) -> tuple[Feature, bool]:
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
    check_stray_distances(
        (name for name, v in properties.items() if v is not None and v != ""),
        fields,
        what="properties.{}",
        where=where,
    )
    buffer_m = _distance_member(properties, fields.buffer, default_m, where)
    distances = _Distances(
        radius_m=_distance_member(properties, fields.radius, default_m, where),
        buffer_m=0.0 if buffer_m is None else buffer_m,
        no_radius=f"properties.{fields.radius} is not set",
    )
    if value.get("geometry") is None:
        raise InputError(
            "has no geometry; every feature needs a location to protect or strike", where=where
        )
    try:
        shapes = _geometry(value["geometry"], "geometry", distances)
    except InputError as exc:
        raise InputError(exc.message, where=where, hint=exc.hint) from exc
    return Feature(id=feature_id, shapes=tuple(shapes)), given


def check_crs(value: dict[str, object], *, where: str = "") -> None:
    """Refuse a ``crs`` member that names anything but WGS84 longitude/latitude."""
    crs = value.get("crs")
    if crs is None:
        return
    name = None
    if isinstance(crs, dict) and crs.get("type") == "name":
        members = crs.get("properties")
        if isinstance(members, dict) and isinstance(members.get("name"), str):
            name = members["name"]
    if name is None:
        raise InputError(
            f"the crs member {show_json(crs)} does not name a coordinate reference system "
            "hexpsi can read",
            where=where,
            hint=EXPORT_HINT,
        )
    if not WGS84_CRS.fullmatch(name.strip().casefold()):
        raise InputError(
            f"coordinates are in {name}, not longitude and latitude (WGS84); hexpsi does not "
            "reproject",
            where=where,
            hint=EXPORT_HINT,
        )


def features_from_geojson(
    obj: object, *, default_radius_m: float | None, fields: FieldNames | None = None
) -> list[Feature]:
    """The features of a parsed GeoJSON FeatureCollection, Feature or bare geometry.

    ``default_radius_m`` is the radius or buffer of shapes that give none; ``None``
    refuses points without a radius (lines and polygons are then not buffered).
    """
    fields = fields or FieldNames()
    default_m = (
        None if default_radius_m is None else check_distance(default_radius_m, "the default radius")
    )
    if not isinstance(obj, dict):
        raise InputError(f"GeoJSON must be an object with a 'type' member, got {show_json(obj)}")
    check_crs(obj)
    kind = obj.get("type")
    if kind == "FeatureCollection":
        members = obj.get("features")
        if not isinstance(members, list):
            raise InputError(f"'features' must be an array, got {show_json(members)}")
        if not members:
            raise InputError("the FeatureCollection has no features")
        parsed = [_feature(member, i, default_m, fields) for i, member in enumerate(members)]
    elif kind == "Feature":
        parsed = [_feature(obj, 0, default_m, fields)]
    elif kind in GEOMETRY_TYPES:
        distances = _Distances(
            radius_m=default_m,
            buffer_m=default_m or 0.0,
            no_radius="a bare geometry has no properties",
        )
        return [Feature(id=0, shapes=tuple(_geometry(obj, "geometry", distances)))]
    else:
        raise InputError(
            f"type {show_json(kind)} is not GeoJSON (expected FeatureCollection, Feature or a "
            "geometry type)"
        )
    check_unique_ids(
        (feature, given, _describe(feature.id, given, i))
        for i, (feature, given) in enumerate(parsed)
    )
    return [feature for feature, _ in parsed]


# --- detection -----------------------------------------------------------------


def read_features(
    data: bytes,
    *,
    source: str,
    default_radius_m: float | None,
    fields: FieldNames | None = None,
) -> list[Feature]:
    """Features from a file's bytes, GeoJSON or CSV.

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
            return features_from_geojson(
                parse_json(text), default_radius_m=default_radius_m, fields=fields
            )
        return features_from_csv(text, default_radius_m=default_radius_m, fields=fields)
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
