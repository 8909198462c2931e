"""Reading a positions or strike file (or stdin) into the cells it covers at a resolution.

A strike is read once (``read_shapes``) and covered later (``cover_features``),
because the resolution it must be covered at is the responder's, which the
proposer only learns from the peer's signed descriptor.
"""

from __future__ import annotations

from pathlib import Path

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.estimate import bounded_cover
from hexpsi.protocol.geo.parse import read_features
from hexpsi.protocol.geo.shapes import Feature, check_distance
from hexpsi.protocol.limits import DEFAULT_MAX_COVER_CELLS
from hexpsi.server.streams import read_input, source_name


def read_shapes(path: str | Path, *, default_radius_m: float = 0.0) -> list[Feature]:
    """Every feature of a GeoJSON or CSV file (``-`` is stdin), validated."""
    name = str(path)
    radius = check_distance(default_radius_m, "--radius-m")
    return read_features(read_input(name), source=source_name(name), default_radius_m=radius)


def cover_features(
    features: list[Feature], *, res: int, max_cells: int = DEFAULT_MAX_COVER_CELLS
) -> set[int]:
    """The union of every feature's conservative cover at ``res``.

    Refuses (before building it) a cover estimated above ``max_cells``: a typo'd
    radius would otherwise cost minutes and gigabytes before any other check could
    say it is far too large to protect or to strike.
    """
    try:
        return bounded_cover(features, res, max_cells)
    except InputError as error:
        raise InputError(error.message, hint=f"{error.hint} (and --radius-m)") from None


def read_cover(path: str | Path, *, res: int, default_radius_m: float = 0.0) -> set[int]:
    """The union of every feature's conservative cover at ``res``."""
    return cover_features(read_shapes(path, default_radius_m=default_radius_m), res=res)
