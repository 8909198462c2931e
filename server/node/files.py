"""Crash-safe node state: atomic file writes, owner-only secrets, durable SQLite.

A node's keys and configuration are replaced atomically: the new content goes to
a temporary file in the same directory, is fsynced, then ``os.replace``-d over
the old name and the directory entry is fsynced too. A crash leaves either the
old file or the new one, never a torn mix. Secrets are created owner-only
(0600) from their first byte, and reading one that others could read is refused
the way ssh refuses a world-readable private key.

The ledger and the audit log are SQLite databases in WAL mode with
``synchronous=FULL``: every commit is fsynced to the WAL before it returns, so a
charge or an audit entry that was committed survives a power cut, not only a
process crash (``NORMAL`` in WAL mode may lose the newest commits on power loss,
which would hand a peer back budget it already spent). Every write goes through
``BEGIN IMMEDIATE`` so the read-decide-write of a charge holds the write lock
from its first read and concurrent writers (threads or processes) serialise.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from hexpsi.protocol.errors import InputError

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
PRIVATE_DIR_MODE = 0o700


def fsync_directory(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = PUBLIC_MODE) -> None:
    """Replace ``path`` with ``data`` so readers and crashes see old or new, never half."""
    directory = path.parent
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600, so a secret is never briefly readable by others.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    fsync_directory(directory)


def write_once(path: Path, data: bytes, *, mode: int = PUBLIC_MODE) -> bool:
    """Create ``path`` holding ``data`` unless it exists; False (nothing written) if it does.

    The content is written and fsynced under a temporary name, then hard-linked to
    ``path``: a link never replaces an existing name, so of two writers racing for
    one path exactly one wins, and no reader ever sees half a file.
    """
    directory = path.parent
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp_name, path)
        except FileExistsError:
            return False
    finally:
        Path(temp_name).unlink(missing_ok=True)
    fsync_directory(directory)
    return True


def write_secret(path: Path, data: bytes) -> None:
    """Atomically write a secret readable by its owner only."""
    atomic_write(path, data, mode=SECRET_MODE)


def make_private_dir(path: Path) -> None:
    """Create ``path`` as 0700 (the umask cannot widen it); it must not exist yet."""
    path.mkdir(mode=PRIVATE_DIR_MODE)
    path.chmod(PRIVATE_DIR_MODE)


def ensure_private_dir(path: Path) -> None:
    """``path`` as a 0700 directory, created if missing.

    Safe when several threads or processes get here at once: checking first and
    creating after would let two callers both see it missing and one fail.
    """
    try:
        make_private_dir(path)
    except FileExistsError:
        if not path.is_dir():
            raise


def read_bytes(path: Path, *, what: str) -> bytes:
    """Read a node file, turning a missing or unreadable one into an error that names it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"missing {what}", where=path.name) from None
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror}", where=path.name) from None


def read_secret(path: Path, *, what: str) -> bytes:
    """Read a secret, refusing one that group or others can access."""
    data = read_bytes(path, what=what)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InputError(
            f"{what} is accessible by other users (mode {mode:04o})",
            where=path.name,
            hint=f"run: chmod 600 {path}",
        )
    return data
