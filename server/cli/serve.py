"""``hexpsi serve``: run the node's gRPC server until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hexpsi.server.cli import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve checks to pinned peers (mutual TLS) until stopped",
        description=(
            "Serve the node's current epoch to its pinned peers over gRPC with mutual TLS, "
            "with gRPC health checking and reflection. Stops gracefully on SIGTERM/SIGINT."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the node directory")
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="no TLS, callers name themselves with metadata (loopback addresses only)",
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
    asyncio.run(serve(node, plaintext=args.plaintext))
    return 0
