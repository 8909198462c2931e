"""``hexpsi encode``: turn positions into H3 cells, offline.

No network and no keys: this shows exactly which cells a file's positions
cover at a resolution, the same conservative cover a check would use, so a user
can inspect it on a map (``--format geojson`` for a GIS, ``--html`` for a page any
browser opens offline) before anything is sent.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hexpsi.protocol.geo.resolution import DEFAULT_RES
from hexpsi.protocol.limits import DEFAULT_MAX_COVER_CELLS
from hexpsi.server.cli import add_input_options, input_options
from hexpsi.server.cli.formats import FORMATTERS

if TYPE_CHECKING:
    from hexpsi.protocol.geo.shapes import Feature
    from hexpsi.server.cli import Subparsers
    from hexpsi.server.cli.formats import Encoding


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "encode",
        help="list the H3 cells a GeoJSON or CSV file's positions cover (offline)",
        description=(
            "Read positions from GeoJSON (points with properties.radius_m, lines and "
            "polygons with properties.buffer_m) or CSV (lat,lng[,radius_m][,id] by header "
            "name) and print every H3 cell they touch. No network, no keys. Says what it "
            "read on stderr."
        ),
    )
    parser.add_argument(
        "input", metavar="INPUT", nargs="+", help="GeoJSON or CSV files (- for stdin)"
    )
    parser.add_argument(
        "--res",
        type=int,
        default=DEFAULT_RES,
        metavar="R",
        help=f"H3 resolution 0..15 (default {DEFAULT_RES}, cells of about 0.1 km2)",
    )
    add_input_options(parser)
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
        default=DEFAULT_MAX_COVER_CELLS,
        metavar="N",
        help=f"refuse covers estimated above N cells (default {DEFAULT_MAX_COVER_CELLS:,})",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write to this file (replaced atomically) instead of stdout",
    )
    parser.add_argument(
        "--html",
        metavar="FILE",
        help="also write a map of the cells as one self-contained HTML page (replaced atomically)",
    )
    parser.add_argument(
        "--tiles",
        metavar="URL_TEMPLATE",
        help="with --html: draw the cells over XYZ tiles from this server, e.g. "
        "https://tiles.example.org/{z}/{x}/{y}.png (default: no base map, nothing external)",
    )
    parser.set_defaults(func=run)


def encode_features(features: Sequence[Feature], resolution: int) -> Encoding:
    """Each feature's cover at ``resolution``, their union and its area."""
    from hexpsi.protocol.geo.cover import cover_area_km2, feature_to_cover
    from hexpsi.server.cli.formats import Encoding, FeatureCells

    covers = tuple(
        FeatureCells(id=feature.id, cells=frozenset(feature_to_cover(feature, resolution)))
        for feature in features
    )
    union = frozenset().union(*(cover.cells for cover in covers))
    return Encoding(
        resolution=resolution, features=covers, cells=union, area_km2=cover_area_km2(union)
    )


def run(args: argparse.Namespace) -> int:
    from hexpsi.protocol.errors import InputError
    from hexpsi.protocol.geo.estimate import check_cover_size
    from hexpsi.protocol.geo.resolution import check_resolution
    from hexpsi.protocol.geo.timing import Role
    from hexpsi.server.cli.report_page import check_tiles_template
    from hexpsi.server.inputs import announce_read, read_inputs
    from hexpsi.server.streams import STDIO, write_output

    resolution = check_resolution(args.res, "--res, the H3 resolution,")
    if args.tiles is not None:
        if args.html is None:
            raise InputError("--tiles draws a base map under --html, which is not given")
        check_tiles_template(args.tiles)
    if args.html == STDIO and args.output in (None, STDIO):
        raise InputError(
            "--html - and the cell listing would both go to stdout",
            hint="send the listing elsewhere with -o FILE",
        )
    inputs = read_inputs(args.input, input_options(args, role=Role.ENCODE))
    features = inputs.features
    check_cover_size(features, resolution, args.max_cells)
    encoding = encode_features(features, resolution)
    if len(encoding.cells) > args.max_cells:
        raise InputError(
            f"the cover at resolution {resolution} has {len(encoding.cells):,} cells, "
            f"more than --max-cells {args.max_cells:,}",
            hint="use a coarser --res, or raise --max-cells",
        )
    if args.html is not None:
        from hexpsi.protocol.geo.sources import source_labels
        from hexpsi.server.cli.html_report import page_to_html
        from hexpsi.server.cli.report_page import encoding_to_page

        source = ", ".join(source_labels(inputs.sources))
        page = encoding_to_page(encoding, source=source, tiles=args.tiles)
        write_output(page_to_html(page), args.html)
    write_output(FORMATTERS[args.format](encoding), args.output)
    announce_read(inputs, encoding.cells)
    return 0
