"""``hexpsi positions``: set a node's protected positions, starting a new epoch."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from hexpsi.server.cli import add_input_options, input_options

if TYPE_CHECKING:
    from hexpsi.server.cli import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "positions",
        help="set the protected positions: new epoch keys and a new snapshot",
        description=(
            "Cover POSITIONS (GeoJSON or CSV files, as `hexpsi encode` reads them) at the "
            "node's resolution, derive fresh epoch keys, build and sign the new snapshot and "
            "make it current. Every point needs a radius, its own or --radius-m; with a "
            "theatre declared, every position must lie in it. A running server serves the "
            "new epoch without restarting."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the node directory")
    parser.add_argument(
        "positions", metavar="POSITIONS", nargs="+", help="GeoJSON or CSV files (- for stdin)"
    )
    add_input_options(parser, radius_required=True)
    parser.set_defaults(func=run, libsodium=True)


def run(args: argparse.Namespace) -> int:
    from hexpsi.server.inputs import announce_read, cover_features, read_node_inputs
    from hexpsi.server.node.directory import Node
    from hexpsi.server.node.epochs import EpochStore

    node = Node(args.directory)
    positions = read_node_inputs(node, args.positions, input_options(args))
    cells = cover_features(positions.features, res=node.config.res)
    started = time.perf_counter()
    epoch = EpochStore(node).create(cells, now=time.time())
    d = epoch.descriptor.descriptor
    with node.open_audit_log() as audit:
        audit.append(
            "epoch",
            node.name,
            {
                "epoch_sequence": d.sequence,
                "epoch_id": d.epoch_id.hex(),
                "descriptor_digest": epoch.descriptor.digest.hex(),
                "protected_cells": len(cells),
                "snapshot_values": epoch.params.count,
                "valid_until": d.valid_until,
            },
            time.time(),
        )
    announce_read(positions, cells)
    print(
        f"epoch {d.sequence} ({d.epoch_id.hex()}): {len(cells)} protected cells at res {d.res}, "
        f"snapshot of {epoch.params.count} values ({d.snapshot_bytes} bytes) built in "
        f"{time.perf_counter() - started:.2f}s",
        file=sys.stderr,
    )
    epoch.blocks.close()
    return 0
