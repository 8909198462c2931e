"""``hexpsi check``: does a planned strike hit anything a peer protects?"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from hexpsi.server.cli import add_input_options, input_options
from hexpsi.server.streams import write_output

if TYPE_CHECKING:
    from tqdm import tqdm

    from hexpsi.server.cli import Subparsers
    from hexpsi.server.clients.check import CheckReport

PROGRESS_THRESHOLD_BYTES = 1 << 20


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check a planned strike against a pinned peer's protected positions",
        description=(
            "Cover STRIKE (GeoJSON or CSV) at the resolution the peer's current epoch "
            "declares and run a verified private check against that epoch. Prints CONFLICT "
            "or CLEAR; the receipt and an evidence bundle are stored in the node directory."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the node directory")
    parser.add_argument(
        "strike", metavar="STRIKE", nargs="+", help="GeoJSON or CSV strike zone files"
    )
    parser.add_argument("--peer", required=True, help="name of the pinned peer to check against")
    add_input_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--geojson", metavar="OUT", help="write the strike cover and conflicting cells as GeoJSON"
    )
    parser.add_argument(
        "--plaintext", action="store_true", help="peer serves plaintext on loopback (testing)"
    )
    parser.set_defaults(func=run, libsodium=True)


def report_json(report: CheckReport) -> dict[str, object]:
    """The ``--json`` shape of a check."""
    from hexpsi.server.cli.formats import sorted_cell_strs

    result = report.result
    return {
        "peer": report.peer,
        "epoch": result.epoch_id.hex(),
        "epoch_sequence": report.descriptor.descriptor.sequence,
        "conflict": result.conflict,
        "conflicting_cells": sorted_cell_strs(result.conflicting_cells),
        "conflicting_tokens": len(result.conflicting_tokens),
        "tokens_sent": result.tokens_sent,
        "elements_sent": result.elements_sent,
        "strike_cells": len(report.strike_cells),
        "area_charged_km2": result.receipt.area_km2,
        "receipt": report.receipt_id,
        "evidence": str(report.directory / "evidence.json"),
        "timings": report.timings,
    }


def report_geojson(report: CheckReport) -> str:
    from hexpsi.server.cli.formats import cells_to_geojson

    conflicting = report.result.conflicting_cells
    properties = {
        cell: {"cell_role": "conflict" if cell in conflicting else "strike"}
        for cell in report.strike_cells
    }
    return json.dumps(cells_to_geojson(properties)) + "\n"


def report_text(report: CheckReport) -> str:
    result = report.result
    verdict = "CONFLICT" if result.conflict else "CLEAR"
    return (
        f"{verdict}: {len(result.conflicting_cells)} of {len(report.strike_cells)} strike cells "
        f"conflict with {report.peer}'s protected positions "
        f"({len(result.conflicting_tokens)} of {result.tokens_sent} tokens hit)\n"
        f"epoch {report.descriptor.descriptor.sequence} ({result.epoch_id.hex()}), "
        f"receipt {report.receipt_id}, area charged {result.receipt.area_km2:.2f} km²\n"
    )


class DownloadBar:
    """A byte progress bar on stderr, shown only for snapshots worth waiting for."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if total < PROGRESS_THRESHOLD_BYTES:
            return
        if self.bar is None:
            self.bar = tqdm(
                total=total, unit="B", unit_scale=True, desc="snapshot", file=sys.stderr
            )
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    import asyncio

    from hexpsi.protocol.geo.zone import StrikeZone
    from hexpsi.server.clients.check import run_check
    from hexpsi.server.inputs import announce_read, read_node_inputs
    from hexpsi.server.node.directory import Node

    node = Node(args.directory)
    peer = node.peer(args.peer)
    strike = read_node_inputs(node, args.strike, input_options(args))
    # Covered at the peer's resolution, from its signed descriptor, not this node's own;
    # the zone itself goes into the evidence bundle.
    zone = StrikeZone(strike.features, args.radius_m)
    bar = DownloadBar()
    try:
        report = asyncio.run(
            run_check(node, peer.name, zone, plaintext=args.plaintext, progress=bar)
        )
    finally:
        bar.close()
    if args.geojson:
        write_output(report_geojson(report), args.geojson)
    if args.json:
        write_output(json.dumps(report_json(report), indent=2) + "\n", None)
    else:
        write_output(report_text(report), None)
    announce_read(strike, report.strike_cells)
    return 0
