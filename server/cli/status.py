"""``hexpsi status``: the node, its servers, epochs, peers' budgets and equivocations."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hexpsi.server.cli import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show the node: servers, current and next epoch, peers' budgets, equivocations",
        description=(
            "Show what an operator watches: whether a server runs and applied the peer "
            "files, the epoch served and the next one (times in UTC), when the epoch is "
            "renewed, what each peer spent and has left in its rolling window, when it last "
            "checked, the epoch cached of it, and the equivocations kept. Reads the node "
            "directory only."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the node directory")
    parser.add_argument("--json", action="store_true", help="print JSON (keys in the README)")
    parser.set_defaults(func=run, libsodium=True)


def run(args: argparse.Namespace) -> int:
    import time

    from hexpsi.server.node.directory import Node
    from hexpsi.server.node.status import node_status

    status = node_status(Node(args.directory), now=time.time())
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print("\n".join(describe(status)))
    return 0


def _epoch_line(label: str, epoch: dict[str, Any] | None) -> str:
    if epoch is None:
        return f"{label:<9} none"
    if "error" in epoch:
        return f"{label:<9} {epoch['sequence']}: cannot be loaded: {epoch['error']}"
    changed = [f["path"] for f in epoch.get("sources") or () if f["now"] != "unchanged"]
    note = f"; sources changed since: {', '.join(changed)}" if changed else ""
    return (
        f"{label:<9} {epoch['sequence']} ({epoch['id'][:16]}…): {epoch['cells']} cells, "
        f"{epoch['padded']} padded, from {epoch['created']} until {epoch['valid_until']}{note}"
    )


def describe(status: dict[str, Any]) -> list[str]:
    """The text form: one line per fact, peers as a table."""
    lines = [
        f"node      {status['name']} (certificate sha256 {status['fingerprint']})",
        f"listen    {status['listen']} (peers dial {status['address']})",
    ]
    if not status["servers"]:
        lines.append("server    not running")
    for server in status["servers"]:
        applied = "" if server["peers_applied"] else ", peer files changed and not yet applied"
        lines.append(
            f"server    running on {server['listen']} (pid {server['pid']}, since "
            f"{server['started']}{applied})"
        )
    lines.append(_epoch_line("epoch", status.get("epoch")))
    if status.get("next_epoch") is not None:
        lines.append(_epoch_line("next", status["next_epoch"]))
    renewal = status.get("renewal") or {}
    if renewal.get("next"):
        lines.append(
            f"renewal   at {renewal['next']} ({renewal['renew_before_hours']:g} h before expiry)"
        )
    if status.get("gap"):
        lines.append(
            f"warning   no epoch is served from {status['gap']['from']} "
            f"until {status['gap']['until']}"
        )
    budget = status["budget"]
    lines.append(
        f"budget    all peers: {budget['spent_km2']:g} of {budget['budget_km2']:g} km² and "
        f"{budget['spent_km2h']:g} of {budget['budget_km2h']:g} km²·h spent in "
        f"{budget['window_hours']:g} h, {budget['left_km2']:g} km² and "
        f"{budget['left_km2h']:g} km²·h left"
    )
    if status["peers"]:
        lines.append(
            f"{'peer':<16} {'address':<24} {'spent/budget km²':<20} {'left':>10}  "
            f"{'last check':<21} {'their epoch'}"
        )
    for peer in status["peers"]:
        cached = peer["cached_epoch"]
        theirs = "-"
        if cached is not None:
            state = "expired" if cached["expired"] else "until"
            theirs = f"{cached['sequence']} {state} {cached['valid_until']}"
        spent = f"{peer['spent_km2']:g}/{peer['budget_km2']:g}"
        lines.append(
            f"{peer['name']:<16} {peer['address']:<24} {spent:<20} {peer['left_km2']:>10g}  "
            f"{peer['last_check'] or 'never':<21} {theirs}"
        )
    for record in status["equivocations"]:
        lines.append(
            f"equivocation by {record['peer']} at sequence {record['sequence']}: "
            f"proof in {record['proof']}"
        )
    if not status["equivocations"]:
        lines.append("equivocations: none seen")
    return lines
