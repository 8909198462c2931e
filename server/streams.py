"""Input and output as a command line uses them: a file, or a standard stream for ``-``.

Outputs replace their file atomically, so a reader never sees half a result and
a failed run leaves the old file as it was.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hexpsi.protocol.errors import InputError
from hexpsi.server.node.files import atomic_write

STDIO = "-"
"""As INPUT, read standard input; as an output path, write standard output."""


def source_name(path: str) -> str:
    """How messages name an input: its path, or ``<stdin>``."""
    return "<stdin>" if path == STDIO else path


def read_input(path: str) -> bytes:
    """The bytes of an input file (``-`` is stdin); a failure names the path."""
    if path == STDIO:
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path!r}: {exc.strerror or exc}") from exc


def write_output(text: str, path: str | None) -> None:
    """Print ``text`` to stdout, or replace ``path`` with it atomically."""
    if path is None or path == STDIO:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        atomic_write(Path(path), text.encode())
    except OSError as exc:
        raise InputError(f"cannot write {path!r}: {exc.strerror or exc}") from exc
