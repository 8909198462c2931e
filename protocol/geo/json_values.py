"""Numbers and positions in a user's JSON, checked with messages that say where.

Shared by the GeoJSON reader (``parse``) and the Moving Features reader
(``moving``): both read ``[longitude, latitude]`` positions (an altitude and
anything after it is ignored) and return ``(lat, lng)``.
"""

from __future__ import annotations

import json
import math

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.shapes import LatLng, check_latlng


def show_json(value: object, limit: int = 60) -> str:
    """A short JSON rendering of a bad value for an error message."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_number(value: object, name: str, path: str) -> float:
    """A finite JSON number (not a boolean) as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{name} must be a number, got {show_json(value)}", where=path)
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}", where=path)
    return float(value)


def json_position(value: object, path: str) -> LatLng:
    """A GeoJSON position ``[longitude, latitude, ...]`` as ``(lat, lng)``."""
    if not isinstance(value, list) or len(value) < 2:
        raise InputError(
            f"a position must be an array [longitude, latitude], got {show_json(value)}", where=path
        )
    lng = json_number(value[0], "longitude", path)
    lat = json_number(value[1], "latitude", path)
    return check_latlng((lat, lng), where=path)


def json_positions(value: object, path: str, *, minimum: int, what: str) -> list[LatLng]:
    """An array of at least ``minimum`` positions; ``what`` names it in messages."""
    if not isinstance(value, list):
        raise InputError(
            f"{what} must be an array of positions, got {show_json(value)}", where=path
        )
    if len(value) < minimum:
        raise InputError(f"{what} needs at least {minimum} positions, got {len(value)}", where=path)
    return [json_position(item, f"{path}[{i}]") for i, item in enumerate(value)]
