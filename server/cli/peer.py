"""``hexpsi peer``: pin a peer's identity, list pinned peers.

Pinning trusts exactly one certificate for one name. The fingerprint printed by
``peer add`` should be compared with the one the peer's ``hexpsi identity``
printed, over a channel both sides trust, before any check is run.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from hexpsi.server.streams import read_input

if TYPE_CHECKING:
    from hexpsi.server.cli import Subparsers
    from hexpsi.server.node.directory import Peer


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
    add.add_argument("--address", metavar="HOST:PORT", help="dial this instead of its own address")
    add.add_argument(
        "--budget-km2",
        type=float,
        metavar="X",
        help="how much of this node's map the peer may probe per window, in km²: cells x H3's "
        "average cell area at the charged resolution (real cells vary with latitude, so what "
        "it bounds is a number of cells); checks and mutual checks both spend it",
    )
    add.add_argument(
        "--window-hours", type=float, metavar="H", help="its rolling budget window, in hours"
    )
    add.add_argument(
        "--max-set-size",
        type=int,
        metavar="N",
        help="largest padded set a mutual check with this peer may use, either side's",
    )
    add.add_argument("--replace", action="store_true", help="re-pin a name that is already pinned")

    listing = actions.add_parser("list", help="list pinned peers")
    listing.add_argument("directory", metavar="DIR", help="this node's directory")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    handlers = {"add": run_add, "list": run_list}
    return handlers[args.peer_command](args)


def _summary(peer: Peer) -> dict[str, object]:
    return {
        "name": peer.name,
        "address": peer.address,
        "budget_km2": peer.budget_km2,
        "window_hours": peer.window_hours,
        "certificate_sha256": peer.certificate_sha256,
        "signing_public_key": peer.identity.signing_public_key.hex(),
        "overrides": sorted(peer.overrides),
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
    )
    print(f"pinned {peer.name} at {peer.address}")
    print(f"  certificate sha256: {peer.certificate_sha256}")
    print(f"  signing key:        {peer.identity.signing_public_key.hex()}")
    print(f"  budget:             {peer.budget_km2:g} km2 per {peer.window_hours:g} h")
    print("compare the fingerprint with the one the peer printed, over a channel you trust")
    return 0


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
