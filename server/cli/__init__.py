"""The ``hexpsi`` command line: one module per subcommand, wired up in ``main``.

Each subcommand module exposes ``register(subparsers)``, which adds its parser
and sets ``func(args) -> int`` as the handler. Results go to stdout (or a file
given with ``-o``), logs and progress to stderr. The helpers here are what every
subcommand shares: reading an input file and writing a result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from protocol.errors import InputError
from server.fsutil import atomic_write

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

STDIO = "-"
"""As INPUT, read standard input; as an output path, write standard output."""


def add_radius_option(parser: argparse.ArgumentParser) -> None:
    """``--radius-m``: the default radius or buffer for features that give none."""
    parser.add_argument(
        "--radius-m",
        type=float,
        default=0.0,
        metavar="M",
        help="radius or buffer in metres for features that give none (default 0)",
    )


def read_input(path: str) -> bytes:
    """The bytes of an input file (``-`` is stdin); a failure names the path."""
    if path == STDIO:
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path!r}: {exc.strerror or exc}") from exc


def write_output(text: str, path: str | None) -> None:
    """Print ``text`` to stdout, or replace ``path`` with it atomically.

    The file is written to a temporary name beside it and renamed over the old
    one, so a reader never sees half a result and a failed run leaves the old
    file as it was.
    """
    if path is None or path == STDIO:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        atomic_write(Path(path), text.encode())
    except OSError as exc:
        raise InputError(f"cannot write {path!r}: {exc.strerror or exc}") from exc
