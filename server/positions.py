"""Reading a positions or strike file into the cells it covers at a node's resolution."""

from __future__ import annotations

from pathlib import Path

from protocol.cover import feature_to_cover
from protocol.inputs import read_features
from protocol.shapes import check_distance
from server.cli import STDIO, read_input


def read_cover(path: str | Path, *, res: int, default_radius_m: float = 0.0) -> set[int]:
    """The union of every feature's conservative cover at ``res``."""
    name = str(path)
    radius = check_distance(default_radius_m, "--radius-m")
    source = "<stdin>" if name == STDIO else name
    features = read_features(read_input(name), source=source, default_radius_m=radius)
    cells: set[int] = set()
    for feature in features:
        cells |= feature_to_cover(feature, res)
    return cells
