"""``hexpsi evidence``: verify a check's evidence or a cell opening; open a committed cell.

``verify`` is for a third party who holds a document and the responder's
identity (what ``hexpsi identity`` printed) and nothing else: no node, no
network. It tells the document's kind from its ``format`` member. An evidence
bundle (``hexpsi/v2/evidence``) is valid only if its check replays and it
shows every token of its strike zone, so "this zone was checked" means the
whole zone; a v1 bundle proves only the tokens it lists and is refused. A cell
opening (``hexpsi/v2/cell-opening``) says whether one cell is in the epoch's
committed snapshot. Exit 0 for a valid document (CONFLICT or CLEAR alike), 1
with one line saying why for anything else.

``open`` is for a responder: it opens one cell of its current epoch, which
tells whoever receives the document whether that cell is protected. That is
the point, and the responder's choice.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hexpsi.protocol.check.cell_opening import OpeningVerdict
    from hexpsi.protocol.check.documents import Document
    from hexpsi.protocol.check.zone_evidence import ZoneVerdict
    from hexpsi.server.cli import Subparsers
    from hexpsi.server.node.directory import Identity


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "evidence",
        help="verify evidence bundles and cell openings; open a committed cell",
        description=(
            "Verify what a proposer's evidence bundle or a responder's cell opening "
            "establishes, with nothing but the responder's identity; or, as a responder, "
            "open one cell of the current epoch."
        ),
    )
    actions = parser.add_subparsers(dest="evidence_command", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify",
        help="verify an evidence bundle or a cell opening",
        description=(
            "Verify DOCUMENT (an evidence bundle or a cell opening) against the responder "
            "whose identity is given. Exits 0 if it is valid, 1 with the reason if not."
        ),
    )
    verify.add_argument("document", metavar="DOCUMENT", help="the document to verify (- for stdin)")
    verify.add_argument(
        "--responder",
        required=True,
        metavar="IDENTITY",
        help="the responder's identity JSON, as hexpsi identity printed it",
    )
    verify.add_argument("--json", action="store_true", help="print one JSON object")

    opening = actions.add_parser(
        "open",
        help="open one cell of this node's current epoch",
        description=(
            "Prove whether CELL (an H3 index at one of the epoch's token resolutions) is in "
            "this node's committed snapshot, as a document anyone can verify with this "
            "node's identity."
        ),
    )
    opening.add_argument("directory", metavar="DIR", help="this node's directory")
    opening.add_argument("cell", metavar="CELL", help="H3 cell index, e.g. 89283082803ffff")
    opening.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (replaced atomically)"
    )
    parser.set_defaults(func=run, libsodium=True)


def run(args: argparse.Namespace) -> int:
    handlers = {"verify": run_verify, "open": run_open}
    return handlers[args.evidence_command](args)


# ---------------------------------------------------------------- verify


def run_verify(args: argparse.Namespace) -> int:
    from hexpsi.protocol.errors import HexpsiError
    from hexpsi.server.node.directory import load_identity
    from hexpsi.server.streams import read_input, source_name, write_output

    identity = load_identity(read_input(args.responder), where=source_name(args.responder))
    try:
        verdict = _verify(args.document, identity, source_name(args.responder))
    except HexpsiError as error:
        if args.json:
            write_output(_dumps({"valid": False, "reason": error.explain()}), None)
        raise
    if args.json:
        write_output(_dumps(_verdict_json(verdict)), None)
    else:
        write_output(_verdict_text(verdict), None)
    return 0


def _verify(path: str, identity: Identity, identity_source: str) -> ZoneVerdict | OpeningVerdict:
    from hexpsi.protocol.check.documents import claimed_responder, read_document, verify_document
    from hexpsi.protocol.errors import InputError, VerificationError
    from hexpsi.server.streams import read_input, source_name

    data = read_input(path)
    try:
        document: Document = read_document(data)
    except InputError as error:
        raise InputError(error.message, where=source_name(path), hint=error.hint) from None
    named = claimed_responder(document)
    if named is not None and named != identity.name:
        raise VerificationError(
            f"the document names responder {named!r}, but {identity_source} is the identity "
            f"of {identity.name!r}",
            hint="verify it with the identity of the responder that answered",
        )
    return verify_document(document, identity.verify_key)


def _verdict_json(verdict: ZoneVerdict | OpeningVerdict) -> dict[str, object]:
    from hexpsi.protocol.check.zone_evidence import ZoneVerdict
    from hexpsi.server.cli.formats import cell_str, sorted_cell_strs, utc_time

    if not isinstance(verdict, ZoneVerdict):
        return {
            "valid": True,
            "responder": verdict.responder,
            "epoch": verdict.epoch_id.hex(),
            "epoch_sequence": verdict.epoch_sequence,
            "cell": cell_str(verdict.cell),
            "inside": verdict.inside,
        }
    return {
        "valid": True,
        "responder": verdict.responder,
        "proposer": verdict.proposer,
        "epoch": verdict.epoch_id.hex(),
        "epoch_sequence": verdict.epoch_sequence,
        "checked_at": utc_time(verdict.checked_at),
        "received_at": utc_time(verdict.received_at),
        "receipt": verdict.receipt_id,
        "receipts": list(verdict.receipt_ids),
        "conflict": verdict.conflict,
        "zone_cells": verdict.zone_cells,
        "zone_area_km2": verdict.zone_area_km2,
        "conflicting_cells": sorted_cell_strs(verdict.conflicting_cells),
        "conflicting_times": [
            {
                "start": utc_time(interval.start),
                "end": utc_time(interval.end),
                "cells": sorted_cell_strs(cells),
            }
            for interval, cells in verdict.conflicting_times
        ],
    }


def _verdict_text(verdict: ZoneVerdict | OpeningVerdict) -> str:
    from hexpsi.protocol.check.zone_evidence import ZoneVerdict
    from hexpsi.server.cli.formats import cell_str, utc_time

    epoch = f"{verdict.responder}'s epoch {verdict.epoch_sequence} ({verdict.epoch_id.hex()})"
    if not isinstance(verdict, ZoneVerdict):
        where = "IN" if verdict.inside else "NOT in"
        return (
            f"VALID: cell {cell_str(verdict.cell)} is {where} the committed snapshot of {epoch}\n"
        )
    answer = "CONFLICT" if verdict.conflict else "CLEAR"
    times = "".join(
        f"conflicting from {utc_time(interval.start)} to {utc_time(interval.end)}: "
        f"{len(cells)} cells\n"
        for interval, cells in verdict.conflicting_times
    )
    return (
        f"VALID: {verdict.proposer}'s whole strike zone ({verdict.zone_cells} cells, "
        f"{verdict.zone_area_km2:.2f} km²) was checked against {epoch}: {answer}, "
        f"{len(verdict.conflicting_cells)} of its cells conflict\n"
        f"checked at {utc_time(verdict.checked_at)} (receipt {verdict.receipt_id}), answer "
        f"received at {utc_time(verdict.received_at)} by the proposer's clock\n{times}"
    )


def _dumps(value: dict[str, object]) -> str:
    return json.dumps(value, indent=2) + "\n"


# ---------------------------------------------------------------- open


def run_open(args: argparse.Namespace) -> int:
    import os
    import time

    from hexpsi.protocol.check.cell_opening import open_committed_cell, verify_standalone_opening
    from hexpsi.protocol.errors import FailedPrecondition
    from hexpsi.server.node.directory import Node
    from hexpsi.server.node.epochs import EpochStore
    from hexpsi.server.streams import write_output

    cell = _cell(args.cell)
    node = Node(args.directory)
    epoch = EpochStore(node).serving(time.time())
    if epoch is None:
        raise FailedPrecondition(
            f"{node.name} has no epoch to open a cell of",
            hint="set its positions with hexpsi positions first",
        )
    try:
        document = open_committed_cell(
            descriptor=epoch.descriptor,
            keys=epoch.keys,
            snapshot=epoch.verified_snapshot(),
            cell=cell,
            rng=os.urandom,
        )
    finally:
        epoch.blocks.close()
    verdict = verify_standalone_opening(document, node.signing_key.verify_key)
    write_output(document.to_json().decode("ascii") + "\n", args.output)
    print(
        f"opened cell {args.cell.lower()} of {node.name}'s epoch {verdict.epoch_sequence}: "
        f"{'inside' if verdict.inside else 'not inside'} the committed snapshot",
        file=sys.stderr,
    )
    return 0


def _cell(text: str) -> int:
    from hexpsi.protocol.errors import InputError
    from hexpsi.protocol.geo.tokens import is_cell

    try:
        cell = int(text, 16)
    except ValueError:
        cell = -1
    if not is_cell(cell) or text.strip() != text or text.lower().startswith(("0x", "+", "-")):
        raise InputError(f"{text!r} is not an H3 cell index (e.g. 89283082803ffff)")
    return cell
