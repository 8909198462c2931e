"""OGC Moving Features JSON (OGC 19-045r3, "MF-JSON") moving points, as timed shapes.

An MF-JSON moving feature is a GeoJSON ``Feature`` with a ``temporalGeometry``
member; its ``geometry`` may be null, absent, or the trajectory drawn for
plain GeoJSON readers, and is not read when ``temporalGeometry`` is there.
hexpsi reads a ``MovingPoint``:

- ``coordinates``: ``[lon, lat]`` or ``[lon, lat, alt]`` positions (the
  altitude is ignored), as many as ``datetimes``;
- ``datetimes``: RFC 3339 times with a zone, or numbers of milliseconds since
  1970-01-01T00:00:00Z (both are MF-JSON's ISO 8601 encoding). MF-JSON asks
  them to increase; equal neighbours are read (a leg of no duration), a
  decrease is refused naming its index;
- ``interpolation`` (case-sensitive, as MF-JSON has it):
  ``"Linear"`` (the default): the point moves along each leg, read as a route
  with times (``timing.route_legs``), the point's radius as the legs' buffer.
  MF-JSON interpolates longitude and latitude linearly, hexpsi draws a leg as
  the great-circle arc, as every line; the two part by about
  ``L² tan(lat) / 8R`` for a leg of length ``L`` (2 m for 10 km at 45°, 200 m
  for 100 km), so long legs belong in a radius that holds the difference, or
  split into shorter ones;
  ``"Step"``: it stays at each position until the next time: a ``Circle`` per
  position over ``[t_i, t_i+1]``, the last one an instant;
  ``"Discrete"``: it is only known at its times: a ``Circle`` per position at
  its instant.
  ``"Quadratic"``, ``"Cubic"`` and user-defined curves (a URL) are refused:
  their paths leave the legs, and a cover must hold every place the point is.

The radius is the point radius (``radius_m`` or ``--radius-field``, else
``--radius-m``), as for any point. A ``MovingGeometryCollection`` whose
``prisms`` are all MovingPoints is read as all of them; any other temporal
geometry type (MovingLineString, MovingPolygon, MovingPointCloud) is refused.
``crs`` and ``trs`` members are checked wherever they appear (``crs``).
``base`` and ``orientations`` (a 3D model turning about the point) are not
read: the radius must hold the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.crs import check_crs, check_trs
from hexpsi.protocol.geo.fields import missing_radius
from hexpsi.protocol.geo.json_values import json_positions, show_json
from hexpsi.protocol.geo.shapes import Circle, Shape
from hexpsi.protocol.geo.timing import check_non_decreasing, read_moment, route_legs
from hexpsi.protocol.spacetime.interval import Interval

LINEAR, STEP, DISCRETE = "Linear", "Step", "Discrete"
INTERPOLATIONS = (LINEAR, STEP, DISCRETE)
"""The MF-JSON interpolations hexpsi reads; Linear is MF-JSON's default."""
MOVING_POINT = "MovingPoint"
COLLECTION = "MovingGeometryCollection"
MAX_PRISMS = 10_000
MILLISECONDS = 1000.0


@dataclass(frozen=True, slots=True)
class Movement:
    """The shapes a moving point occupies and the interval each holds over."""

    shapes: tuple[Shape, ...]
    when: tuple[Interval, ...]


def temporal_geometry_to_movement(
    value: object, path: str, *, radius_m: float | None, no_radius: str
) -> Movement:
    """The shapes and intervals of a ``temporalGeometry`` member (see the module docstring)."""
    if not isinstance(value, dict):
        raise InputError(
            f"must be an MF-JSON temporal geometry object, got {show_json(value)}", where=path
        )
    check_crs(value, where=path)
    check_trs(value, where=path)
    kind = value.get("type")
    if kind == MOVING_POINT:
        return _moving_point(value, path, radius_m=radius_m, no_radius=no_radius)
    if kind == COLLECTION:
        prisms = value.get("prisms")
        if not isinstance(prisms, list) or not prisms:
            raise InputError(
                f"a {COLLECTION} needs a non-empty 'prisms' array of MovingPoints, got "
                f"{show_json(prisms)}",
                where=path,
            )
        if len(prisms) > MAX_PRISMS:
            raise InputError(f"has more than {MAX_PRISMS:,} prisms", where=f"{path}.prisms")
        shapes: list[Shape] = []
        when: list[Interval] = []
        for i, prism in enumerate(prisms):
            where = f"{path}.prisms[{i}]"
            if not isinstance(prism, dict) or prism.get("type") != MOVING_POINT:
                found = prism.get("type") if isinstance(prism, dict) else prism
                raise InputError(
                    f"is {show_json(found)}; hexpsi reads only MovingPoint prisms", where=where
                )
            part = temporal_geometry_to_movement(
                prism, where, radius_m=radius_m, no_radius=no_radius
            )
            shapes.extend(part.shapes)
            when.extend(part.when)
        return Movement(tuple(shapes), tuple(when))
    raise InputError(
        f"temporal geometry type {show_json(kind)} is not read; hexpsi reads a {MOVING_POINT} "
        f"(or a {COLLECTION} of them)",
        where=f"{path}.type",
        hint="give a moving area as a timed polygon (valid_from/valid_until) that holds it",
    )


def _moving_point(
    value: dict[str, object], path: str, *, radius_m: float | None, no_radius: str
) -> Movement:
    interpolation = _interpolation(value, path)
    minimum = 1 if interpolation == DISCRETE else 2
    for member in ("coordinates", "datetimes"):
        if member not in value:
            raise InputError(f"a {MOVING_POINT} needs a '{member}' member", where=path)
    points = json_positions(
        value["coordinates"],
        f"{path}.coordinates",
        minimum=minimum,
        what=f"a {interpolation} {MOVING_POINT}",
    )
    times = _datetimes(value["datetimes"], len(points), f"{path}.datetimes")
    if radius_m is None:
        raise missing_radius(no_radius, where=path)
    if interpolation == LINEAR:
        legs, intervals = route_legs(points, times, radius_m)
        return Movement(legs, intervals)
    circles = tuple(Circle(point, radius_m) for point in points)
    if interpolation == STEP:
        ends = [*times[1:], times[-1]]
        return Movement(circles, tuple(Interval(s, e) for s, e in zip(times, ends, strict=True)))
    return Movement(circles, tuple(Interval(t, t) for t in times))


def _interpolation(value: dict[str, object], path: str) -> str:
    if "interpolations" in value:
        raise InputError(
            "'interpolations' is the 2017 draft's member; MF-JSON (OGC 19-045r3) names it "
            "'interpolation'",
            where=path,
            hint=f"rename it to interpolation, one of {', '.join(INTERPOLATIONS)}",
        )
    chosen = value.get("interpolation")
    if chosen is None:
        return LINEAR
    if chosen not in INTERPOLATIONS:
        raise InputError(
            f"interpolation {show_json(chosen)} is not read; hexpsi reads "
            f"{', '.join(INTERPOLATIONS)} (Linear is the default)",
            where=f"{path}.interpolation",
            hint="a curved path can leave the straight legs a cover holds; give the positions "
            "densely enough for Linear",
        )
    return str(chosen)


def _datetimes(value: object, count: int, path: str) -> list[float]:
    """One instant per position: RFC 3339 text or milliseconds since 1970 UTC."""
    if not isinstance(value, list):
        raise InputError(f"must be an array of times, got {show_json(value)}", where=path)
    if len(value) != count:
        raise InputError(
            f"has {len(value)} time{'' if len(value) == 1 else 's'} but coordinates has "
            f"{count} position{'' if count == 1 else 's'}",
            where=path,
            hint="give one time per position, in the same order",
        )
    times = [_instant(item, f"{path}[{i}]") for i, item in enumerate(value)]
    check_non_decreasing(times, value, member=path, where="")
    return times


def _instant(value: object, path: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise InputError(f"must be a finite number of milliseconds, got {value}", where=path)
        return float(value) / MILLISECONDS
    return read_moment(value, path, "")
