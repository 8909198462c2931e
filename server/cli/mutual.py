"""``hexpsi mutual``: are our forces close anywhere? How many cells both maps occupy."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from hexpsi.server.streams import write_output

if TYPE_CHECKING:
    from hexpsi.server.cli import Subparsers
    from hexpsi.server.clients.mutual import MutualReport


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "mutual",
        help="count the cells both your protected map and a pinned peer's occupy",
        description=(
            "Run a mutual proximity check with a pinned peer: both sides learn how many "
            "cells (at the peer's resolution) both of their current protected maps occupy, "
            "and nothing about which. Counts against the peer's allowance of mutual checks; "
            "both sides keep the receipt signed by both."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the node directory")
    parser.add_argument("--peer", required=True, help="name of the pinned peer to compare with")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--plaintext", action="store_true", help="peer serves plaintext on loopback (testing)"
    )
    parser.set_defaults(func=run, libsodium=True)


def report_json(report: MutualReport) -> dict[str, object]:
    """The ``--json`` shape of a mutual check."""
    from hexpsi.protocol.budget import cell_area_km2

    statement = report.result.receipt.statement
    return {
        "peer": report.peer,
        "shared_cells": statement.shared_cells,
        "shared_area_km2": statement.area_km2,
        "res": statement.res,
        "cell_area_km2": cell_area_km2(statement.res),
        "own_cells": report.result.own_cells,
        "proposer_set_size": statement.proposer_set_size,
        "responder_set_size": statement.responder_set_size,
        "receipt": report.receipt_id,
        "receipt_file": str(report.receipt_file),
        "session_id": statement.session_id.hex(),
        "epoch": statement.proposer_epoch_id.hex(),
        "epoch_sequence": report.epoch_sequence,
        "peer_epoch": statement.responder_epoch_id.hex(),
        "timings": report.timings,
    }


def report_text(report: MutualReport) -> str:
    from hexpsi.protocol.budget import cell_area_km2

    statement = report.result.receipt.statement
    area = cell_area_km2(statement.res)
    verdict = "CLOSE" if statement.shared_cells else "APART"
    return (
        f"{verdict}: {statement.shared_cells} cells at res {statement.res} are occupied by both "
        f"your map and {report.peer}'s "
        f"(about {statement.area_km2:.2f} km²: {statement.shared_cells} × {area:.4f} km² "
        f"average cell area)\n"
        f"your map covers {report.result.own_cells} cells at res {statement.res}; "
        f"padded set sizes {statement.proposer_set_size} (yours) and "
        f"{statement.responder_set_size} ({report.peer}'s)\n"
        f"receipt {report.receipt_id}, signed by both sides\n"
    )


def run(args: argparse.Namespace) -> int:
    import asyncio

    from hexpsi.server.clients.mutual import run_mutual
    from hexpsi.server.node.directory import Node

    node = Node(args.directory)
    peer = node.peer(args.peer)
    report = asyncio.run(run_mutual(node, peer.name, plaintext=args.plaintext))
    if args.json:
        write_output(json.dumps(report_json(report), indent=2) + "\n", None)
    else:
        write_output(report_text(report), None)
    return 0
