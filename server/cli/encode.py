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
from protocol.errors import InputError
from protocol.inputs import read_features
from protocol.shapes import Feature, check_distance
from server.cells_out import FORMATTERS, Encoding, FeatureCells
from server.cli import STDIO, add_radius_option, read_input, write_output

if TYPE_CHECKING:
    from server.cli import Subparsers

DEFAULT_RESOLUTION = 9
DEFAULT_MAX_CELLS = 5_000_000
"""About 500,000 km2 at resolution 9: a country, not a typo'd ``--res 15``."""
ESTIMATE_FROM_RES = 4
"""Size estimates start here: the whole Earth has only 288,122 cells at resolution 4."""
RELIABLE_ESTIMATE_CELLS = 500
"""From this many coarse cells on, the coarse cover's edge band is a small share."""
CHILDREN_PER_CELL = 7
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
    add_radius_option(parser)
    parser.add_argument(
        "--format",
        choices=sorted(FORMATTERS),
        default="json",
        help="json: union and per-feature cells; csv: cell,feature_id rows; "
        "geojson: one polygon per cell (default json)",
    )
    parser.add_argument(
        "--max-cells",
        type=int,
        default=DEFAULT_MAX_CELLS,
        metavar="N",
        help=f"refuse covers estimated above N cells (default {DEFAULT_MAX_CELLS:,})",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write to this file (replaced atomically) instead of stdout",
    )
    parser.set_defaults(func=run)


def _union_cover(features: Sequence[Feature], res: int) -> set[int]:
    return set().union(*(feature_to_cover(feature, res) for feature in features))


def check_cover_size(features: Sequence[Feature], res: int, max_cells: int) -> None:
    """Refuse a cover that would be too large to build, before building it.

    A fine resolution multiplies the cell count by 7 per level, so a radius that is
    harmless at resolution 9 is billions of cells at 15. The union is covered at
    coarser resolutions first (cheap: a fraction of the final size) and projected
    down; a coarse cover over-counts only its edge band, so once it holds a few
    hundred cells the projection is within a few percent of the real size. The
    built cover is checked exactly afterwards as well.
    """
    if max_cells < 1:
        raise InputError(f"--max-cells must be at least 1, got {max_cells}")
    for coarse in range(min(ESTIMATE_FROM_RES, res), res):
        count = len(_union_cover(features, coarse))
        projected = count * CHILDREN_PER_CELL ** (res - coarse)
        if projected <= max_cells:
            return
        if count >= RELIABLE_ESTIMATE_CELLS:
            raise InputError(
                f"the cover at resolution {res} would be about {projected:,} cells, "
                f"more than --max-cells {max_cells:,}",
                hint="use a coarser --res, or raise --max-cells",
            )


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
    check_cover_size(features, resolution, args.max_cells)
    encoding = encode_features(features, resolution)
    if len(encoding.cells) > args.max_cells:
        raise InputError(
            f"the cover at resolution {resolution} has {len(encoding.cells):,} cells, "
            f"more than --max-cells {args.max_cells:,}",
            hint="use a coarser --res, or raise --max-cells",
        )
    log.info(
        "%d feature(s) cover %d cell(s) at resolution %d, %.3f km2",
        len(features),
        len(encoding.cells),
        resolution,
        encoding.area_km2,
    )
    write_output(FORMATTERS[args.format](encoding), args.output)
    return 0
