"""``hexpsi peer``: pin a peer's identity, list pinned peers.

Pinning trusts exactly one certificate for one name. The fingerprint printed by
``peer add`` should be compared with the one the peer's ``hexpsi identity``
printed, over a channel both sides trust, before any check is run.

``peer update DIR NAME --rotation FILE`` re-pins a peer that rotated its keys
(``hexpsi rotate``) on the strength of the statement its old signing key
signed: no new fingerprint comparison is needed, since the pinned key vouches
for the new one. Its budget and spending carry on, being kept by name.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from hexpsi.server.streams import read_input

if TYPE_CHECKING:
    from hexpsi.protocol.rotation import SignedRotation
    from hexpsi.server.cli import Subparsers
    from hexpsi.server.node.directory import Node, Peer


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "peer",
        help="pin peers' identities and list them",
        description="Manage the peers this node trusts (one pinned certificate per name).",
    )
    actions = parser.add_subparsers(dest="peer_command", metavar="ACTION", required=True)

    add = actions.add_parser(
        "add",
        help="pin a peer's identity file",
        description="Pin the certificate and signing key in IDENTITY (from hexpsi identity).",
    )
    add.add_argument("directory", metavar="DIR", help="this node's directory")
    add.add_argument("identity", metavar="IDENTITY", help="the peer's identity JSON (- for stdin)")
    _add_override_options(add)
    add.add_argument("--replace", action="store_true", help="re-pin a name that is already pinned")

    update = actions.add_parser(
        "update",
        help="change a pinned peer's settings, or re-pin it by its rotation statement",
        description=(
            "Change a pinned peer's settings; a running server applies them at once. "
            "--rotation re-pins the peer's new certificate and signing key on the strength "
            "of a statement (from its hexpsi rotate) signed by the key pinned here."
        ),
    )
    update.add_argument("directory", metavar="DIR", help="this node's directory")
    update.add_argument("name", metavar="NAME", help="the pinned peer")
    update.add_argument(
        "--rotation",
        action="append",
        metavar="ROTATION.json",
        help="the peer's rotation statement (- for stdin); repeat for several, applied in "
        "their sequence order",
    )
    _add_override_options(update)

    remove = actions.add_parser(
        "remove",
        help="unpin a peer: it is trusted and answered no more",
        description=(
            "Unpin NAME. A running server refuses its next call and ends its open calls; "
            "its spending and audit entries stay."
        ),
    )
    remove.add_argument("directory", metavar="DIR", help="this node's directory")
    remove.add_argument("name", metavar="NAME", help="the pinned peer")

    listing = actions.add_parser("list", help="list pinned peers")
    listing.add_argument("directory", metavar="DIR", help="this node's directory")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def _add_override_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", metavar="HOST:PORT", help="dial this instead of its own address"
    )
    parser.add_argument(
        "--budget-km2",
        type=float,
        metavar="X",
        help="how much of this node's map the peer may probe per window, in km²: cells x H3's "
        "average cell area at the charged resolution (real cells vary with latitude, so what "
        "it bounds is a number of cells); checks and mutual checks both spend it",
    )
    parser.add_argument(
        "--budget-km2h",
        type=float,
        metavar="X",
        help="how much space-time the peer may probe per window, in km²·h: a timed element "
        "costs its area times the span of its time level (strike windows, timed positions)",
    )
    parser.add_argument(
        "--window-hours", type=float, metavar="H", help="its rolling budget window, in hours"
    )
    parser.add_argument(
        "--max-set-size",
        type=int,
        metavar="N",
        help="largest padded set a mutual check with this peer may use, either side's",
    )


def run(args: argparse.Namespace) -> int:
    handlers = {"add": run_add, "list": run_list, "update": run_update, "remove": run_remove}
    return handlers[args.peer_command](args)


def _summary(peer: Peer) -> dict[str, object]:
    return {
        "name": peer.name,
        "address": peer.address,
        "budget_km2": peer.budget_km2,
        "budget_km2h": peer.budget_km2h,
        "window_hours": peer.window_hours,
        "certificate_sha256": peer.certificate_sha256,
        "signing_public_key": peer.identity.signing_public_key.hex(),
        "overrides": sorted(peer.overrides),
        "rotations": [statement.rotation.sequence for statement in peer.rotations],
    }


def run_add(args: argparse.Namespace) -> int:
    from hexpsi.server.node.directory import Node, load_identity

    node = Node(args.directory)
    where = "<stdin>" if args.identity == "-" else args.identity
    identity = load_identity(read_input(args.identity), where=where)
    peer = node.add_peer(
        identity,
        address=args.address,
        budget_km2=args.budget_km2,
        window_hours=args.window_hours,
        max_set_size=args.max_set_size,
        replace=args.replace,
        budget_km2h=args.budget_km2h,
    )
    print(f"pinned {peer.name} at {peer.address}")
    print(f"  certificate sha256: {peer.certificate_sha256}")
    print(f"  signing key:        {peer.identity.signing_public_key.hex()}")
    print(
        f"  budget:             {peer.budget_km2:g} km2 and {peer.budget_km2h:g} km2h per "
        f"{peer.window_hours:g} h"
    )
    print("compare the fingerprint with the one the peer printed, over a channel you trust")
    _log_change(node, "peer-pinned", peer, replaced=args.replace)
    _tell_servers(node)
    return 0


def _log_change(node: Node, kind: str, peer: Peer, **details: object) -> None:
    """Who was pinned, changed or unpinned, and when: the audit log keeps it."""
    import time

    with node.open_audit_log() as audit:
        audit.append(
            kind,
            peer.name,
            {
                "certificate_sha256": peer.certificate_sha256,
                "address": peer.address,
                "budget_km2": peer.budget_km2,
                "budget_km2h": peer.budget_km2h,
                "window_hours": peer.window_hours,
                "max_set_size": peer.max_set_size,
                **details,
            },
            time.time(),
        )


def _tell_servers(node: Node) -> None:
    """Say whether the node's running servers picked the change up (they look every second)."""
    import sys

    from hexpsi.server.node.running import APPLY_WAIT_SECONDS, peers_digest, wait_applied

    applied, late = wait_applied(node.directory, peers_digest(node.book.signature()))
    if not applied and not late:
        print("no server is running for this node: the change applies when one starts")
    for server in applied:
        print(f"applied by the running server on {server.listen} (pid {server.pid})")
    for server in late:
        print(
            f"warning: the server on {server.listen} (pid {server.pid}) has not applied the "
            f"change after {APPLY_WAIT_SECONDS:g} s; its log says why",
            file=sys.stderr,
        )


def run_list(args: argparse.Namespace) -> int:
    from hexpsi.server.node.directory import Node

    node = Node(args.directory)
    peers = node.peers()
    if args.json:
        print(json.dumps([_summary(peer) for peer in peers], indent=2))
        return 0
    if not peers:
        print(f"no peers pinned; add one with: hexpsi peer add {node.directory} IDENTITY.json")
        return 0
    for peer in peers:
        budget = f"{peer.budget_km2:g} km2/{peer.window_hours:g} h"
        print(f"{peer.name:<20} {peer.address:<28} {budget:<20} {peer.certificate_sha256[:16]}")
    return 0


def changes_in_order(args: argparse.Namespace) -> tuple[object, object, object, object]:
    """The settings ``peer update`` may change, in ``peer_overrides``'s order."""
    return (args.address, args.budget_km2, args.window_hours, args.max_set_size)


def run_update(args: argparse.Namespace) -> int:
    from hexpsi.server.node.directory import Node
    from hexpsi.server.node.peers import peer_overrides

    changes = {
        key: value
        for key, value in (
            ("address", args.address),
            ("budget_km2", args.budget_km2),
            ("window_hours", args.window_hours),
            ("max_set_size", args.max_set_size),
            ("budget_km2h", args.budget_km2h),
        )
        if value is not None
    }
    node = Node(args.directory)
    if args.rotation:
        _check_stdin_once(args.rotation)
        node.peer(args.name)
        statements = _read_rotations(args.rotation)
        # A bad setting is refused before the peer is re-pinned: a refusal changes nothing.
        peer_overrides(*changes_in_order(args), where="peer", budget_km2h=args.budget_km2h)
        _rotate(node, args.name, statements)
        if not changes:
            _tell_servers(node)
            return 0
    peer = node.update_peer(args.name, **changes)  # nothing given: refused there
    print(
        f"updated {peer.name}: {peer.address}, {peer.budget_km2:g} km2 and "
        f"{peer.budget_km2h:g} km2h per {peer.window_hours:g} h, mutual sets up to "
        f"{peer.max_set_size:,} elements"
    )
    _log_change(node, "peer-updated", peer, changed=sorted(changes))
    _tell_servers(node)
    return 0


def _check_stdin_once(paths: list[str]) -> None:
    from hexpsi.protocol.errors import InputError
    from hexpsi.server.streams import STDIO

    if paths.count(STDIO) > 1:
        raise InputError("standard input (-) can be read once only")


def _read_rotations(paths: list[str]) -> list[SignedRotation]:
    from hexpsi.protocol.rotation import SignedRotation
    from hexpsi.server.streams import source_name

    return [SignedRotation.from_json(read_input(path), where=source_name(path)) for path in paths]


def _rotate(node: Node, name: str, statements: list[SignedRotation]) -> Peer:
    import time

    peer = node.apply_rotation(name, statements, now=time.time())
    for statement in sorted(statements, key=lambda s: s.rotation.sequence):
        rotation = statement.rotation
        print(f"applied rotation {rotation.sequence} of {peer.name} ({rotation.what})")
    print(f"  certificate sha256: {peer.certificate_sha256}")
    print(f"  signing key:        {peer.identity.signing_public_key.hex()}")
    print("  budget and spending carry on: they are kept by name")
    return peer


def run_remove(args: argparse.Namespace) -> int:
    from hexpsi.server.node.directory import Node

    node = Node(args.directory)
    peer = node.remove_peer(args.name)
    print(f"removed {peer.name} (certificate sha256 {peer.certificate_sha256[:16]}...)")
    _log_change(node, "peer-removed", peer)
    _tell_servers(node)
    return 0
