"""``hexpsi init``: create a node directory with fresh keys and a certificate.

Prints what to do next: hand the identity to peers and pin theirs, comparing
certificate fingerprints over a channel both sides trust.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from hexpsi.protocol.geo.resolution import DEFAULT_RES, DEFAULT_RES_MIN

if TYPE_CHECKING:
    from hexpsi.server.cli import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "init",
        help="create a node directory: keys, TLS certificate, configuration",
        description=(
            "Create DIR as a new hexpsi node: an Ed25519 signing key, a P-256 TLS key "
            "and self-signed certificate, an OPRF master secret (all owner-only) and "
            "config.toml. Refuses to touch an existing node or a non-empty directory."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the node directory to create")
    parser.add_argument(
        "--name", required=True, help="this node's name: a-z, 0-9 and '-' (its TLS name)"
    )
    parser.add_argument(
        "--listen", required=True, metavar="HOST:PORT", help="where the server listens"
    )
    parser.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="where peers should dial, if not the listen address (needed for 0.0.0.0)",
    )
    parser.add_argument(
        "--res",
        type=int,
        default=DEFAULT_RES,
        metavar="R",
        help=f"finest H3 resolution of protected cells (default {DEFAULT_RES})",
    )
    parser.add_argument(
        "--res-min",
        type=int,
        default=DEFAULT_RES_MIN,
        metavar="R",
        help=f"coarsest token resolution (default {DEFAULT_RES_MIN})",
    )
    parser.add_argument(
        "--theatre",
        metavar="FILE",
        help="GeoJSON Polygon or MultiPolygon this node's positions and strikes must lie in "
        "(see hexpsi theatre)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hexpsi.protocol.geo.theatre import read_theatre
    from hexpsi.server.node.directory import init_node
    from hexpsi.server.streams import read_input, source_name

    theatre_data = theatre = None
    if args.theatre is not None:
        theatre_data = read_input(args.theatre)
        theatre = read_theatre(theatre_data, source=source_name(args.theatre))
    node = init_node(
        args.directory,
        name=args.name,
        listen=args.listen,
        address=args.address,
        res=args.res,
        res_min=args.res_min,
        now=time.time(),
        theatre=theatre_data,
    )
    print(f"initialised node {node.name} in {node.directory}")
    print(f"  address:            {node.config.address}")
    print(f"  certificate sha256: {node.certificate_sha256}")
    print(f"  signing key:        {node.identity()['signing_public_key']}")
    if theatre is not None:
        print(f"  theatre:            {theatre.describe()}")
    print("next:")
    print(f"  hexpsi identity {node.directory} -o {node.name}.json   (send it to each peer)")
    print(f"  hexpsi peer add {node.directory} PEER.json            (pin each peer's identity)")
    print("  compare certificate fingerprints with each peer over a channel you trust")
    return 0
