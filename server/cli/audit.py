"""``hexpsi audit``: show the node's audit log and check that nobody altered it.

``--verify`` recomputes every hash, checks every signature against the node's
signing keys and compares the newest entry with the signed head; any failure
names the first entry that cannot be trusted and exits 1. The log is one chain
through the node's key rotations: it starts under the node's first signing key
(the one its first rotation statement hands over from, or its only key) and
each ``key-rotation`` entry hands it over to the next, up to the current key,
which signs the head. ``--signing-key`` names the keys to verify with instead
(first first), e.g. the one a peer pinned before any rotation.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nacl.signing import VerifyKey

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
    parser.add_argument(
        "--signing-key",
        action="append",
        metavar="HEX",
        help="with --verify: a signing key of the node you know (64 hex digits), the first "
        "first; repeat for later ones (default: the node's own record of its keys)",
    )
    parser.add_argument("--json", action="store_true", help="print entries as a JSON array")
    parser.set_defaults(func=run)


def _line(entry: Entry) -> str:
    from hexpsi.server.cli.formats import utc_time

    view = entry.to_json()
    when = utc_time(entry.time)
    details = view["details"]
    shown = details if isinstance(details, str) else json.dumps(details, sort_keys=True)
    return f"{view['seq']:>6}  {when}  {view['kind']:<10} {view['peer'] or '-':<20} {shown}"


def _known_keys(texts: list[str]) -> list[VerifyKey]:
    from nacl.bindings import crypto_core_ed25519_is_valid_point
    from nacl.signing import VerifyKey

    from hexpsi.protocol.errors import InputError

    keys = []
    for text in texts:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = b""
        if len(raw) != 32 or not crypto_core_ed25519_is_valid_point(raw):
            raise InputError(f"--signing-key {text[:70]!r} is not an Ed25519 public key in hex")
        keys.append(VerifyKey(raw))
    return keys


def run(args: argparse.Namespace) -> int:
    from hexpsi.protocol.audit import ROTATION_KIND, ChainBroken
    from hexpsi.protocol.errors import InputError, VerificationError
    from hexpsi.server.node.directory import Node

    node = Node(args.directory)
    keys = _known_keys(args.signing_key) if args.signing_key else None
    if keys is not None and not args.verify:
        raise InputError("--signing-key is for --verify")
    if not node.audit_path.exists():
        entries: list[Entry] = []
    else:
        with node.open_audit_log() as log:
            if args.verify:
                try:
                    log.verify(keys if keys is not None else node.signing_keys())
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
        rotations = sum(1 for entry in entries if entry.kind == ROTATION_KIND)
        through = f", through {rotations} key rotations" if rotations else ""
        print(
            f"audit log of {node.name} verified: {len(entries)} entries, "
            f"hash chain, signatures and head intact{through}",
            file=sys.stderr,
        )
    return 0
