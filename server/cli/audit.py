"""``hexpsi audit``: show the node's audit log and check that nobody altered it.

``--verify`` recomputes every hash, checks every signature against the node's
own signing key and compares the newest entry with the signed head; any
failure names the first entry that cannot be trusted and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hexpsi.protocol.audit import Entry
    from hexpsi.server.cli import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="list the signed audit log; --verify checks it was not altered",
        description=(
            "List every audit entry (evaluations, mutual checks, epochs). With --verify, "
            "first check the hash chain, every signature and the signed head, and fail "
            "loudly if anything was edited, removed or reordered."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the node directory")
    parser.add_argument("--verify", action="store_true", help="check chain and signatures first")
    parser.add_argument("--json", action="store_true", help="print entries as a JSON array")
    parser.set_defaults(func=run)


def _line(entry: Entry) -> str:
    from hexpsi.server.cli.formats import utc_time

    view = entry.to_json()
    when = utc_time(entry.time)
    details = view["details"]
    shown = details if isinstance(details, str) else json.dumps(details, sort_keys=True)
    return f"{view['seq']:>6}  {when}  {view['kind']:<10} {view['peer'] or '-':<20} {shown}"


def run(args: argparse.Namespace) -> int:
    from hexpsi.protocol.audit import ChainBroken
    from hexpsi.protocol.errors import VerificationError
    from hexpsi.server.node.directory import Node

    node = Node(args.directory)
    if not node.audit_path.exists():
        entries: list[Entry] = []
    else:
        with node.open_audit_log() as log:
            if args.verify:
                try:
                    log.verify()
                except ChainBroken as exc:
                    raise VerificationError(
                        f"AUDIT LOG FAILED VERIFICATION at entry {exc.seq}: {exc.reason}",
                        hint=f"entries from {exc.seq} on cannot be trusted; "
                        f"keep a copy of {node.audit_path} as evidence",
                    ) from exc
            entries = log.entries()
    if args.json:
        print(json.dumps([entry.to_json() for entry in entries], indent=2))
    else:
        for entry in entries:
            print(_line(entry))
    if args.verify:
        print(
            f"audit log of {node.name} verified: {len(entries)} entries, "
            "hash chain, signatures and head intact",
            file=sys.stderr,
        )
    return 0
