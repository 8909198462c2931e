"""The shapes a user can protect or strike, independent of any file format.

Coordinates are (lat, lng) in degrees on the WGS84 datum, distances in metres.
Shapes validate themselves when built so a bad one never reaches the cover code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.spacetime.interval import Interval

LatLng = tuple[float, float]
Ring = tuple[LatLng, ...]


def check_latlng(point: LatLng, where: str = "") -> LatLng:
    """Reject NaN/inf and out-of-range coordinates with a message that says which."""
    lat, lng = point
    if not (math.isfinite(lat) and math.isfinite(lng)):
        raise InputError(f"coordinate ({lat}, {lng}) is not a finite number", where=where)
    if not -90.0 <= lat <= 90.0:
        raise InputError(f"latitude {lat} is outside -90..90", where=where)
    if not -180.0 <= lng <= 180.0:
        raise InputError(f"longitude {lng} is outside -180..180", where=where)
    return (float(lat), float(lng))


def check_distance(metres: float, name: str, where: str = "") -> float:
    """A radius or buffer must be a finite, non-negative number of metres."""
    if isinstance(metres, bool) or not isinstance(metres, int | float):
        raise InputError(f"{name} must be a number of metres, got {metres!r}", where=where)
    if not math.isfinite(metres) or metres < 0:
        raise InputError(f"{name} must be a finite number >= 0, got {metres}", where=where)
    return float(metres)


@dataclass(frozen=True, slots=True)
class Circle:
    """A point with a safety radius (radius 0 is the point itself)."""

    center: LatLng
    radius_m: float

    def __post_init__(self) -> None:
        check_latlng(self.center)
        check_distance(self.radius_m, "radius_m")


@dataclass(frozen=True, slots=True)
class Path:
    """A line (road, border, flight path) with a buffer on each side."""

    points: tuple[LatLng, ...]
    buffer_m: float

    def __post_init__(self) -> None:
        if len(self.points) < 2:
            raise InputError("a line needs at least two positions")
        for point in self.points:
            check_latlng(point)
        check_distance(self.buffer_m, "buffer_m")


@dataclass(frozen=True, slots=True)
class Area:
    """A polygon with optional holes, grown outward by ``buffer_m``.

    Rings are closed implicitly: the last position is not repeated here.
    """

    exterior: Ring
    holes: tuple[Ring, ...]
    buffer_m: float

    def __post_init__(self) -> None:
        for ring in (self.exterior, *self.holes):
            if len(ring) < 3:
                raise InputError("a polygon ring needs at least three distinct positions")
            for point in ring:
                check_latlng(point)
        check_distance(self.buffer_m, "buffer_m")


Shape = Circle | Path | Area


FeatureId = str | int
"""How a feature is named in reports: the id its input gave, or its position in the input."""


@dataclass(frozen=True, slots=True)
class Feature:
    """One named input feature: the shapes it is made of and the id to report it by.

    ``when`` is None for a *standing* feature (a position valid for the whole
    epoch, a strike at any time). Otherwise it holds one interval per shape: a
    timed position or a strike window repeats one interval for every shape; a
    movement along a route is one two-point ``Path`` per leg, each with the
    leg's own interval.
    """

    id: FeatureId
    shapes: tuple[Shape, ...]
    when: tuple[Interval, ...] | None = None

    def __post_init__(self) -> None:
        if self.when is not None and len(self.when) != len(self.shapes):
            raise InputError(
                f"feature {self.id!r} has {len(self.shapes)} shapes but {len(self.when)} "
                "time intervals"
            )

    @property
    def timed(self) -> bool:
        return self.when is not None
