"""``hexpsi rotate``: new keys for this node, handed over by a statement the old key signs.

With ``--signing`` a new Ed25519 signing key, with ``--tls`` a new TLS key and
self-signed certificate, with neither both. The node directory switches to the
new keys all at once (``node.rotations``), keeps the replaced ones in
``rotated/<n>/`` and the statement in ``rotations/<n>.json``, and records the
rotation in its audit log, which carries on as one chain. The statement goes
to ``-o FILE`` (or stdout) for the operators of its peers:
``hexpsi peer update THEIR_DIR NAME --rotation FILE``. A peer also follows a
signing-key rotation by itself, from the statements this node presents with
its epoch descriptor; a TLS rotation it cannot, since it cannot reach this node
until it pinned the new certificate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hexpsi.protocol.errors import InputError
from hexpsi.server.streams import STDIO, write_output

if TYPE_CHECKING:
    from hexpsi.server.cli import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "rotate",
        help="rotate this node's signing key and/or TLS certificate",
        description=(
            "Make new keys for the node in DIR and a rotation statement signed by the old "
            "signing key (and accepted by the new one), for peers to re-pin by. Without "
            "--signing or --tls both are rotated. Budgets, the ledger and the audit chain "
            "carry on; restart hexpsi serve afterwards."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the node directory")
    parser.add_argument("--signing", action="store_true", help="rotate the Ed25519 signing key")
    parser.add_argument(
        "--tls", action="store_true", help="rotate the TLS key and self-signed certificate"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="ROTATION.json",
        help="write the statement to this file (replaced atomically; default stdout)",
    )
    parser.set_defaults(func=run)


def _check_output(path: str | None) -> None:
    """Refuse an output that cannot be written before anything is rotated."""
    if path is None or path == STDIO:
        return
    target = Path(path)
    if target.is_dir():
        raise InputError(f"cannot write {path!r}: it is a directory")
    if not target.parent.is_dir():
        raise InputError(f"cannot write {path!r}: {target.parent} is not a directory")


def run(args: argparse.Namespace) -> int:
    import time

    from hexpsi.server.node.directory import Node
    from hexpsi.server.node.rotate import rotate_keys
    from hexpsi.server.node.rotations import ROTATED_DIR, statement_path

    _check_output(args.output)
    node = Node(args.directory)
    both = not (args.signing or args.tls)
    statement = rotate_keys(
        node, signing=args.signing or both, tls_identity=args.tls or both, now=time.time()
    )
    rotation = statement.rotation
    kept = statement_path(node.directory, rotation.sequence)
    try:
        write_output(statement.to_json().decode("ascii"), args.output)
    except InputError as error:
        raise InputError(
            f"{node.name} is rotated, but {error.message}",
            hint=f"the statement is kept in {kept}; hand that file to the peers",
        ) from None
    fresh = Node(node.directory)
    print(
        f"rotated the {rotation.what} of {node.name} (rotation {rotation.sequence}); "
        f"old keys kept in {node.directory / ROTATED_DIR / str(rotation.sequence)}",
        file=sys.stderr,
    )
    print(f"  certificate sha256: {fresh.certificate_sha256}", file=sys.stderr)
    print(f"  signing key:        {bytes(fresh.signing_key.verify_key).hex()}", file=sys.stderr)
    print(
        f"hand the statement to every peer: hexpsi peer update THEIR_DIR {node.name} "
        "--rotation ROTATION.json; restart hexpsi serve to serve with the new keys",
        file=sys.stderr,
    )
    return 0
