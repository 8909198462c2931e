"""``hexpsi theatre``: declare, show or remove the area a node's positions and strikes lie in.

With a theatre declared, ``positions`` and ``check`` refuse any position or
strike with a coordinate outside it: swapped latitude and longitude land
hundreds of kilometres away and would otherwise be checked, and come back
CLEAR. The file is a GeoJSON Polygon or MultiPolygon (bare, in a Feature or in
a FeatureCollection); a copy is kept as ``DIR/theatre.geojson``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hexpsi.server.cli import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "theatre",
        help="declare, show or remove the area this node's positions and strikes must lie in",
        description=(
            "With FILE (a GeoJSON Polygon or MultiPolygon, bare or in Features), keep a copy "
            "as the node's theatre: positions and check then refuse any coordinate outside "
            "it. Without FILE, show the theatre declared. --clear removes it. A polygon "
            "crossing the antimeridian must be cut there into a MultiPolygon."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the node directory")
    parser.add_argument("file", metavar="FILE", nargs="?", help="GeoJSON theatre (- for stdin)")
    parser.add_argument("--clear", action="store_true", help="remove the declared theatre")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hexpsi.protocol.errors import InputError
    from hexpsi.server.node.directory import Node
    from hexpsi.server.streams import read_input, source_name

    node = Node(args.directory)
    if args.clear:
        if args.file is not None:
            raise InputError("give FILE to declare a theatre or --clear to remove it, not both")
        try:
            previous = node.theatre()
            shown = previous.describe() if previous is not None else ""
        except InputError:
            shown = "unreadable"  # a damaged copy goes all the same
        if not node.clear_theatre():
            print(f"node {node.name} declares no theatre; nothing removed")
        else:
            print(
                f"removed the theatre of node {node.name} ({shown}): positions and strikes "
                "are no longer bounded"
            )
        return 0
    if args.file is None:
        theatre = node.theatre()
        if theatre is None:
            print(f"node {node.name} declares no theatre: positions and strikes are not bounded")
        else:
            print(f"theatre of node {node.name}: {theatre.describe()} ({node.theatre_path})")
        return 0
    theatre = node.set_theatre(read_input(args.file), source=source_name(args.file))
    print(
        f"theatre of node {node.name}: {theatre.describe()}, stored in {node.theatre_path}; "
        "positions and strikes outside it are refused"
    )
    return 0
