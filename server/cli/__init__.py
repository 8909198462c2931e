"""The ``hexpsi`` command line: one module per subcommand, wired up in ``main``.

Each subcommand module exposes ``register(subparsers)``, which adds its parser
and sets ``func(args) -> int`` as the handler. Results go to stdout (or a file
given with ``-o``), logs and progress to stderr.

Start-up is kept short: scripts call ``hexpsi encode`` in loops, and building
the parser must not pay for gRPC, libsodium or the certificate code. A
subcommand module imports only the standard library at module level and its
dependencies inside ``run`` (``tests/server/cli/test_startup.py`` holds it).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def add_radius_option(parser: argparse.ArgumentParser) -> None:
    """``--radius-m``: the default radius or buffer for features that give none."""
    parser.add_argument(
        "--radius-m",
        type=float,
        default=0.0,
        metavar="M",
        help="radius or buffer in metres for features that give none (default 0)",
    )
