"""``hexpsi serve``: run the node's gRPC server until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hexpsi.server.cli import Subparsers

HEALTH_LISTEN_ENV = "HEXPSI_HEALTH_LISTEN"
METRICS_LISTEN_ENV = "HEXPSI_METRICS_LISTEN"


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve checks to pinned peers (mutual TLS) until stopped",
        description=(
            "Serve the node's current epoch to its pinned peers over gRPC with mutual TLS, "
            "with gRPC health checking and reflection. Stops gracefully on SIGTERM/SIGINT. "
            "--health-listen and --metrics-listen add plaintext health checking and "
            "Prometheus metrics on loopback, for local monitoring."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the node directory")
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="no TLS, callers name themselves with metadata (loopback addresses only)",
    )
    parser.add_argument(
        "--health-listen",
        metavar="HOST:PORT",
        default=os.environ.get(HEALTH_LISTEN_ENV) or None,
        help=(
            "also serve gRPC health checking, plaintext, for a local probe "
            f"(loopback only; also: {HEALTH_LISTEN_ENV})"
        ),
    )
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        default=os.environ.get(METRICS_LISTEN_ENV) or None,
        help=f"also serve Prometheus metrics over HTTP (loopback only; also: {METRICS_LISTEN_ENV})",
    )
    parser.set_defaults(func=run, libsodium=True)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from hexpsi.server.node.directory import Node
    from hexpsi.server.services.app import serve

    node = Node(args.directory)
    root = logging.getLogger()
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    for handler in root.handlers:
        handler.setLevel(min(handler.level or logging.INFO, logging.INFO))
    asyncio.run(
        serve(
            node,
            plaintext=args.plaintext,
            health_listen=args.health_listen,
            metrics_listen=args.metrics_listen,
        )
    )
    return 0
