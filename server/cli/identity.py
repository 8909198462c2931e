"""``hexpsi identity``: print the identity document peers pin this node by."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from hexpsi.server.streams import write_output

if TYPE_CHECKING:
    from hexpsi.server.cli import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "identity",
        help="print this node's identity (name, address, certificate, signing key)",
        description=(
            "Print the JSON identity a peer needs to pin this node: name, address, "
            "TLS certificate and Ed25519 signing public key. It holds no secrets."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the node directory")
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (replaced atomically)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hexpsi.server.node.directory import Node

    node = Node(args.directory)
    write_output(node.own_identity().to_bytes().decode("ascii"), args.output)
    print(
        f"identity of {node.name}: certificate sha256 {node.certificate_sha256}",
        file=sys.stderr,
    )
    return 0
