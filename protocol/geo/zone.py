"""A strike zone as the proposer gave it: its shapes, the radius default, its cover.

Evidence must prove a zone, not a list of tokens (a list can leave out the
tokens that hit). So the zone itself travels in an evidence bundle, and a
verifier covers it again and derives the query tokens from it. That needs a
form that reads back to exactly the same shapes: :meth:`StrikeZone.to_json`
writes each feature's id and its shapes as GeoJSON geometries (positions
``[longitude, latitude]``, polygon rings closed) with every shape's
``radius_m`` or ``buffer_m`` written out, so no default has to be guessed
later; ``default_radius_m`` records the default that was applied when the
shapes were read. A timed feature (a strike window) also carries ``when``: one
``[start, end]`` pair of Unix seconds per shape, as JSON numbers, which read
back to the very same floats; a standing feature has no ``when`` member, so a
zone without time writes exactly what it always did. The zone-level
``window`` is ``null`` and a zone that names one is refused rather than read
as one without it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.estimate import bounded_cover
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
from hexpsi.protocol.limits import DEFAULT_MAX_COVER_CELLS
from hexpsi.protocol.spacetime.interval import Interval

ZONE_KEYS = ("default_radius_m", "window", "features")
FEATURE_KEYS = ("id", "shapes")
TIMED_FEATURE_KEYS = ("id", "shapes", "when")


@dataclass(frozen=True, slots=True)
class StrikeZone:
    """The features of a strike as read, and the radius default applied to them."""

    features: tuple[Feature, ...]
    default_radius_m: float = 0.0

    def __post_init__(self) -> None:
        check_distance(self.default_radius_m, "default_radius_m")

    def cover(self, res: int, *, max_cells: int = DEFAULT_MAX_COVER_CELLS) -> set[int]:
        """Every ``res`` cell the zone touches; refused before it is built if too large."""
        return bounded_cover(self.features, res, max_cells)

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON object: the same zone always gives the same members."""
        return {
            "default_radius_m": self.default_radius_m,
            "window": None,
            "features": [feature_to_json(feature) for feature in self.features],
        }

    @classmethod
    def from_json(cls, obj: object) -> StrikeZone:
        """Read :meth:`to_json`'s form back; anything else is an InputError saying where."""
        zone = _members(obj, ZONE_KEYS, "zone")
        if zone["window"] is not None:
            raise InputError(
                "names a time window, which this hexpsi cannot check", where="zone.window"
            )
        features = zone["features"]
        if not isinstance(features, list) or not features:
            raise InputError("must be a non-empty array", where="zone.features")
        return cls(
            features=tuple(_feature(f, f"zone.features[{i}]") for i, f in enumerate(features)),
            default_radius_m=_distance(zone["default_radius_m"], "zone.default_radius_m"),
        )


def feature_to_json(feature: Feature) -> dict[str, Any]:
    """A feature's id and shapes, and its ``when`` only if it is timed."""
    written: dict[str, Any] = {
        "id": feature.id,
        "shapes": [shape_to_json(s) for s in feature.shapes],
    }
    if feature.when is not None:
        written["when"] = [[float(i.start), float(i.end)] for i in feature.when]
    return written


def shape_to_json(shape: Shape) -> dict[str, Any]:
    """One shape as a GeoJSON geometry with its distance in metres as a member."""
    if isinstance(shape, Circle):
        return {"type": "Point", "coordinates": _lnglat(shape.center), "radius_m": shape.radius_m}
    if isinstance(shape, Path):
        return {
            "type": "LineString",
            "coordinates": [_lnglat(p) for p in shape.points],
            "buffer_m": shape.buffer_m,
        }
    return {
        "type": "Polygon",
        "coordinates": [_closed(ring) for ring in (shape.exterior, *shape.holes)],
        "buffer_m": shape.buffer_m,
    }


def _lnglat(point: LatLng) -> list[float]:
    return [point[1], point[0]]


def _closed(ring: Ring) -> list[list[float]]:
    return [_lnglat(p) for p in (*ring, ring[0])]


# --- reading ---------------------------------------------------------------------


def _members(obj: object, keys: Sequence[str], where: str) -> Mapping[str, object]:
    """A JSON object with exactly ``keys``: a missing or unknown member is refused."""
    if not isinstance(obj, dict):
        raise InputError("must be a JSON object", where=where)
    if sorted(obj) != sorted(keys):
        raise InputError(f"must have exactly the members {', '.join(keys)}", where=where)
    return obj


def _feature(obj: object, where: str) -> Feature:
    timed = isinstance(obj, dict) and "when" in obj
    feature = _members(obj, TIMED_FEATURE_KEYS if timed else FEATURE_KEYS, where)
    shapes = feature["shapes"]
    if not isinstance(shapes, list) or not shapes:
        raise InputError("must be a non-empty array", where=f"{where}.shapes")
    return Feature(
        id=_feature_id(feature["id"], f"{where}.id"),
        shapes=tuple(_shape_at(s, f"{where}.shapes[{i}]") for i, s in enumerate(shapes)),
        when=_when(feature["when"], len(shapes), f"{where}.when") if timed else None,
    )


def _when(value: object, shapes: int, where: str) -> tuple[Interval, ...]:
    """One ``[start, end]`` pair of Unix seconds per shape, in order."""
    if not isinstance(value, list) or len(value) != shapes:
        raise InputError(
            f"must be an array of {shapes} [start, end] pairs, one per shape", where=where
        )
    intervals = []
    for i, pair in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise InputError("must be a [start, end] pair of Unix seconds", where=at)
        start, end = _number(pair[0], f"{at}[0]"), _number(pair[1], f"{at}[1]")
        if end < start:
            raise InputError("ends before it starts", where=at)
        intervals.append(Interval(start, end))
    return tuple(intervals)


def _feature_id(value: object, where: str) -> FeatureId:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise InputError("must be a non-empty string or an integer", where=where)
    return value


def _shape_at(obj: object, where: str) -> Shape:
    """A shape, with the shape's own checks (ranges, ring sizes) also saying where."""
    try:
        return _shape(obj, where)
    except InputError as error:
        if error.where:
            raise
        raise InputError(error.message, where=where) from None


def _shape(obj: object, where: str) -> Shape:
    if not isinstance(obj, dict):
        raise InputError("must be a JSON object", where=where)
    kind = obj.get("type")
    if kind == "Point":
        shape = _members(obj, ("type", "coordinates", "radius_m"), where)
        return Circle(
            center=_position(shape["coordinates"], f"{where}.coordinates"),
            radius_m=_distance(shape["radius_m"], f"{where}.radius_m"),
        )
    if kind == "LineString":
        shape = _members(obj, ("type", "coordinates", "buffer_m"), where)
        return Path(
            points=tuple(_positions(shape["coordinates"], f"{where}.coordinates")),
            buffer_m=_distance(shape["buffer_m"], f"{where}.buffer_m"),
        )
    if kind == "Polygon":
        shape = _members(obj, ("type", "coordinates", "buffer_m"), where)
        rings = shape["coordinates"]
        if not isinstance(rings, list) or not rings:
            raise InputError("must be a non-empty array of rings", where=f"{where}.coordinates")
        read = [_ring(ring, f"{where}.coordinates[{i}]") for i, ring in enumerate(rings)]
        return Area(
            exterior=read[0],
            holes=tuple(read[1:]),
            buffer_m=_distance(shape["buffer_m"], f"{where}.buffer_m"),
        )
    raise InputError("type must be Point, LineString or Polygon", where=where)


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError("must be a finite number", where=where)
    return float(value)


def _distance(value: object, where: str) -> float:
    return check_distance(_number(value, where), "a distance", where=where)


def _position(value: object, where: str) -> LatLng:
    if not isinstance(value, list) or len(value) != 2:
        raise InputError("a position must be [longitude, latitude]", where=where)
    return (_number(value[1], where), _number(value[0], where))


def _positions(value: object, where: str) -> list[LatLng]:
    if not isinstance(value, list):
        raise InputError("must be an array of positions", where=where)
    return [_position(p, f"{where}[{i}]") for i, p in enumerate(value)]


def _ring(value: object, where: str) -> Ring:
    points = _positions(value, where)
    if len(points) < 4 or points[0] != points[-1]:
        raise InputError("a ring must be closed and hold at least three corners", where=where)
    return tuple(points[:-1])
