"""``hexpsi encode``: turn positions into H3 cells, offline.

No network and no keys: this shows exactly which cells a file's positions
cover at a resolution, the same conservative cover a check would use, so a user
can inspect it on a map (``--format geojson``) before anything is sent.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from protocol.cover import check_resolution, cover_area_km2, feature_to_cover
from protocol.inputs import read_features
from protocol.shapes import Feature, check_distance
from server.cells_out import FORMATTERS, Encoding, FeatureCells
from server.cli import STDIO, read_input, write_output

if TYPE_CHECKING:
    from server.cli import Subparsers

DEFAULT_RESOLUTION = 9
log = logging.getLogger(__name__)


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "encode",
        help="list the H3 cells a GeoJSON or CSV file's positions cover (offline)",
        description=(
            "Read positions from GeoJSON (points with properties.radius_m, lines and "
            "polygons with properties.buffer_m) or CSV (lat,lng[,radius_m][,id]) and "
            "print every H3 cell they touch. No network, no keys."
        ),
    )
    parser.add_argument("input", metavar="INPUT", help=f"GeoJSON or CSV file ({STDIO} for stdin)")
    parser.add_argument(
        "--res",
        type=int,
        default=DEFAULT_RESOLUTION,
        metavar="R",
        help=f"H3 resolution 0..15 (default {DEFAULT_RESOLUTION}, cells of about 0.1 km2)",
    )
    parser.add_argument(
        "--radius-m",
        type=float,
        default=0.0,
        metavar="M",
        help="radius or buffer in metres for features that give none (default 0)",
    )
    parser.add_argument(
        "--format",
        choices=sorted(FORMATTERS),
        default="json",
        help="json: union and per-feature cells; csv: cell,feature_id rows; "
        "geojson: one polygon per cell (default json)",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write to this file (replaced atomically) instead of stdout",
    )
    parser.set_defaults(func=run)


def encode_features(features: Sequence[Feature], resolution: int) -> Encoding:
    """Each feature's cover at ``resolution``, their union and its area."""
    covers = tuple(
        FeatureCells(id=feature.id, cells=frozenset(feature_to_cover(feature, resolution)))
        for feature in features
    )
    union = frozenset().union(*(cover.cells for cover in covers))
    return Encoding(
        resolution=resolution, features=covers, cells=union, area_km2=cover_area_km2(union)
    )


def run(args: argparse.Namespace) -> int:
    resolution = check_resolution(args.res)
    radius_m = check_distance(args.radius_m, "--radius-m")
    source = "<stdin>" if args.input == STDIO else args.input
    features = read_features(read_input(args.input), source=source, default_radius_m=radius_m)
    encoding = encode_features(features, resolution)
    log.info(
        "%d feature(s) cover %d cell(s) at resolution %d, %.3f km2",
        len(features),
        len(encoding.cells),
        resolution,
        encoding.area_km2,
    )
    write_output(FORMATTERS[args.format](encoding), args.output)
    return 0
