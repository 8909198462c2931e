"""Turn a user's GeoJSON or CSV into validated features.

Pure: it takes bytes, text or parsed JSON and returns ``Feature`` values; the
caller reads the file. Every rejection is an ``InputError`` that says what to fix
and where (feature id and index, the JSON member, the CSV line), because the
person reading it has to find the spot in their own file.

Decisions worth knowing:

- GeoJSON positions are ``[longitude, latitude]`` (a third number, the altitude,
  and anything after it is ignored); shapes use ``(lat, lng)``.
- A feature's ``properties.radius_m`` sets the radius of its points and
  ``properties.buffer_m`` the buffer of its lines and polygons; a member that is
  absent or ``null`` falls back to the default radius. Both are validated
  whenever present, so a bad value never hides behind a geometry that ignores it.
- Rings must be closed (last position == first), as RFC 7946 requires; the
  closing repeat is dropped when building an ``Area``. Winding order is not
  checked (RFC 7946 asks parsers not to reject either order).
- A feature without geometry (``"geometry": null``) is rejected rather than
  skipped: silently dropping a protected position would report false "clear"s.
- Feature ids are the GeoJSON ``id`` (string or integer) or, when absent, the
  feature's index in its collection; for CSV the ``id`` column or the row's
  index among data rows. Ids must be unique (compared as text, so ``2`` and
  ``"2"`` collide) because every output maps cells back to them.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hexpsi.protocol.errors import InputError
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

LAT_COLUMNS = ("lat", "latitude")
LNG_COLUMNS = ("lng", "lon", "long", "longitude")
JSON_SUFFIXES = (".geojson", ".json")


@dataclass(frozen=True, slots=True)
class _Distances:
    """The metres a feature's points (radius) and lines/polygons (buffer) grow by."""

    radius_m: float
    buffer_m: float


def _show(value: object, limit: int = 60) -> str:
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
        raise InputError(f"{name} must be a number, got {_show(value)}", where=path)
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}", where=path)
    return float(value)


def _position(value: object, path: str) -> LatLng:
    if not isinstance(value, list) or len(value) < 2:
        raise InputError(
            f"a position must be an array [longitude, latitude], got {_show(value)}", where=path
        )
    lng = _number(value[0], "longitude", path)
    lat = _number(value[1], "latitude", path)
    return check_latlng((lat, lng), where=path)


def _positions(value: object, path: str, *, minimum: int, what: str) -> list[LatLng]:
    if not isinstance(value, list):
        raise InputError(f"{what} must be an array of positions, got {_show(value)}", where=path)
    if len(value) < minimum:
        raise InputError(f"{what} needs at least {minimum} positions, got {len(value)}", where=path)
    return [_position(item, f"{path}[{i}]") for i, item in enumerate(value)]


def _ring(value: object, path: str) -> Ring:
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
    return Circle(center=_position(coords, where), radius_m=distances.radius_m)


def _line(coords: object, where: str, distances: _Distances) -> Shape:
    points = _positions(coords, where, minimum=2, what="a line")
    return Path(points=tuple(points), buffer_m=distances.buffer_m)


def _polygon(coords: object, where: str, distances: _Distances) -> Shape:
    if not isinstance(coords, list) or not coords:
        raise InputError(
            f"a polygon must be a non-empty array of rings (exterior first), got {_show(coords)}",
            where=where,
        )
    rings = [_ring(ring, f"{where}[{i}]") for i, ring in enumerate(coords)]
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
        raise InputError(f"must be an array of {what}, got {_show(value)}", where=path)
    if not value:
        raise InputError(f"has no {what}", where=path)
    return value


def _geometry(value: object, path: str, distances: _Distances, depth: int = 0) -> list[Shape]:
    """The shapes of one GeoJSON geometry; ``path`` names it in error messages."""
    if not isinstance(value, dict):
        raise InputError(f"must be a GeoJSON geometry object, got {_show(value)}", where=path)
    kind = value.get("type")
    if kind not in GEOMETRY_TYPES:
        raise InputError(
            f"{_show(kind)} is not a GeoJSON geometry type (expected one of "
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


def _feature_id(value: dict[str, object], index: int) -> tuple[FeatureId, bool]:
    """The feature's id and whether the file gave it (False: defaulted to the index)."""
    if "id" not in value or value["id"] is None:
        return index, False
    raw = value["id"]
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, str | int) or raw == "":
        raise InputError(
            f"id must be a non-empty string or an integer, got {_show(raw)}",
            where=f"feature at index {index}",
        )
    return raw, True


def _describe(feature_id: FeatureId, given: bool, index: int) -> str:
    return f"feature {feature_id!r} (index {index})" if given else f"feature at index {index}"


def _distance_member(
    properties: dict[str, object], name: str, default_m: float, where: str
) -> float:
    value = properties.get(name)
    if value is None:
        return default_m
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(
            f"properties.{name} must be a number of metres, got {_show(value)}", where=where
        )
    return check_distance(value, f"properties.{name}", where=where)


def _feature(value: object, index: int, default_m: float) -> tuple[Feature, bool]:
    if not isinstance(value, dict) or value.get("type") != "Feature":
        found = value.get("type") if isinstance(value, dict) else value
        raise InputError(
            f"must be a GeoJSON Feature object, got {_show(found)}",
            where=f"feature at index {index}",
        )
    feature_id, given = _feature_id(value, index)
    where = _describe(feature_id, given, index)
    properties = value.get("properties")
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise InputError(
            f"properties must be an object or null, got {_show(properties)}", where=where
        )
    distances = _Distances(
        radius_m=_distance_member(properties, "radius_m", default_m, where),
        buffer_m=_distance_member(properties, "buffer_m", default_m, where),
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


def _check_unique(features: Iterable[tuple[Feature, bool, str]]) -> None:
    """Refuse repeated ids: outputs map cells back to features by id."""
    seen: dict[str, str] = {}
    for feature, given, place in features:
        key = str(feature.id)
        if key in seen:
            if given:
                raise InputError(
                    f"id {feature.id!r} is already used by {seen[key]}",
                    where=place,
                    hint="give every feature its own id",
                )
            raise InputError(
                f"has no id and its default id {feature.id!r} (its index) is already used by "
                f"{seen[key]}",
                where=place,
                hint="give every feature its own id",
            )
        seen[key] = place


def features_from_geojson(obj: object, *, default_radius_m: float) -> list[Feature]:
    """The features of a parsed GeoJSON FeatureCollection, Feature or bare geometry."""
    default_m = check_distance(default_radius_m, "the default radius")
    if not isinstance(obj, dict):
        raise InputError(f"GeoJSON must be an object with a 'type' member, got {_show(obj)}")
    kind = obj.get("type")
    if kind == "FeatureCollection":
        members = obj.get("features")
        if not isinstance(members, list):
            raise InputError(f"'features' must be an array, got {_show(members)}")
        if not members:
            raise InputError("the FeatureCollection has no features")
        parsed = [_feature(member, i, default_m) for i, member in enumerate(members)]
    elif kind == "Feature":
        parsed = [_feature(obj, 0, default_m)]
    elif kind in GEOMETRY_TYPES:
        distances = _Distances(radius_m=default_m, buffer_m=default_m)
        return [Feature(id=0, shapes=tuple(_geometry(obj, "geometry", distances)))]
    else:
        raise InputError(
            f"type {_show(kind)} is not GeoJSON (expected FeatureCollection, Feature or a "
            "geometry type)"
        )
    _check_unique(
        (feature, given, _describe(feature.id, given, i))
        for i, (feature, given) in enumerate(parsed)
    )
    return [feature for feature, _ in parsed]


# --- CSV -----------------------------------------------------------------------


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    for i, name in enumerate(header):
        if name in names:
            return i
    return None


def _csv_number(cell: str, column: str, where: str) -> float:
    try:
        value = float(cell.strip())
    except ValueError:
        raise InputError(f"{column} must be a number, got {cell!r}", where=where) from None
    if not math.isfinite(value):
        raise InputError(f"{column} must be a finite number, got {cell.strip()!r}", where=where)
    return value


def _csv_header(row: list[str], line: int) -> tuple[int, int, int | None, int | None]:
    header = [name.strip().lower() for name in row]
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        raise InputError(
            f"the header repeats column(s) {', '.join(duplicates)}", where=f"line {line}"
        )
    lat, lng = _column(header, LAT_COLUMNS), _column(header, LNG_COLUMNS)
    if lat is None or lng is None:
        raise InputError(
            f"the CSV header must name 'lat' and 'lng' columns (optional: 'radius_m', 'id'), "
            f"got {row}",
            where=f"line {line}",
        )
    return lat, lng, _column(header, ("radius_m",)), _column(header, ("id",))


def features_from_csv(text: str, *, default_radius_m: float) -> list[Feature]:
    """One ``Circle`` feature per row of a CSV with a ``lat,lng[,radius_m][,id]`` header."""
    default_m = check_distance(default_radius_m, "the default radius")
    reader = csv.reader(text.removeprefix("\ufeff").splitlines(keepends=True), strict=True)
    columns: tuple[int, int, int | None, int | None] | None = None
    width = 0
    parsed: list[tuple[Feature, bool, str]] = []
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if columns is None:
                columns, width = _csv_header(row, line), len(row)
                continue
            where = f"line {line}"
            if len(row) != width:
                raise InputError(
                    f"expected {width} fields as in the header, got {len(row)}", where=where
                )
            lat_i, lng_i, radius_i, id_i = columns
            center = check_latlng(
                (_csv_number(row[lat_i], "lat", where), _csv_number(row[lng_i], "lng", where)),
                where=where,
            )
            radius_cell = row[radius_i].strip() if radius_i is not None else ""
            radius = (
                check_distance(_csv_number(radius_cell, "radius_m", where), "radius_m", where)
                if radius_cell
                else default_m
            )
            id_cell = row[id_i].strip() if id_i is not None else ""
            feature_id: FeatureId = id_cell or len(parsed)
            feature = Feature(id=feature_id, shapes=(Circle(center, radius),))
            parsed.append((feature, bool(id_cell), where))
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", where=f"line {reader.line_num}") from None
    if columns is None:
        raise InputError("the CSV is empty; expected a header naming 'lat' and 'lng' columns")
    if not parsed:
        raise InputError("the CSV has a header but no rows")
    _check_unique(parsed)
    return [feature for feature, _, _ in parsed]


# --- detection -----------------------------------------------------------------


def read_features(data: bytes, *, source: str, default_radius_m: float) -> list[Feature]:
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
            raise InputError(f"is not UTF-8 text (bad byte at offset {exc.start})") from None
        head = text.lstrip()
        if not head:
            raise InputError("is empty; expected GeoJSON or CSV")
        if head[0] in "{[" or source.lower().endswith(JSON_SUFFIXES):
            return features_from_geojson(_parse_json(text), default_radius_m=default_radius_m)
        return features_from_csv(text, default_radius_m=default_radius_m)
    except InputError as exc:
        raise InputError(exc.message, where=source, hint=exc.hint) from exc


def _parse_json(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InputError("not usable JSON: nested too deeply") from None
