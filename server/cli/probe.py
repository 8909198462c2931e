"""``hexpsi probe HOST:PORT``: is the node behind a local health endpoint serving? One line.

Prints the status (``SERVING``, ``NOT_SERVING``) on stdout and exits 0 only
for ``SERVING``; an endpoint that does not answer is one error line on stderr
and exit 1. For container HEALTHCHECKs and service probes.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hexpsi.server.cli import Subparsers

TIMEOUT_SECONDS = 5.0


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 and at most 3600")
    return value


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "probe",
        help="ask a node's local health endpoint whether it serves (exit 0 if it does)",
        description=(
            "Ask the plaintext health endpoint that hexpsi serve --health-listen opened "
            "(standard gRPC health checking) whether the node serves. Prints SERVING or "
            "NOT_SERVING and exits 0 only for SERVING; an endpoint that does not answer is "
            "one error line and exit 1. Needs no node directory."
        ),
    )
    parser.add_argument("address", metavar="HOST:PORT", help="the --health-listen address")
    parser.add_argument(
        "--service",
        default="",
        help="a service to ask about, e.g. hexpsi.v1.CheckService (default: the whole server)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"give up after this long (default {TIMEOUT_SECONDS:g})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hexpsi.server.clients.health import SERVING, health_status

    status = health_status(args.address, service=args.service, timeout=args.timeout)
    print(status)
    return 0 if status == SERVING else 1
