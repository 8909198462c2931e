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
import sqlite3
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from protocol.errors import InputError, LocalProtocolError, Status

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


def write_secret(path: Path, data: bytes) -> None:
    """Atomically write a secret readable by its owner only."""
    atomic_write(path, data, mode=SECRET_MODE)


def make_private_dir(path: Path) -> None:
    """Create ``path`` as 0700 (the umask cannot widen it); it must not exist yet."""
    path.mkdir(mode=PRIVATE_DIR_MODE)
    path.chmod(PRIVATE_DIR_MODE)


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


BUSY_TIMEOUT_SECONDS = 30.0


class Database:
    """One SQLite connection, safe to share between threads, with durable settings.

    ``schema`` (a list of statements) runs in one transaction when the database is
    new; ``version`` is kept in ``PRAGMA user_version`` so a file written by a
    newer hexpsi is refused rather than misread.
    """

    def __init__(self, path: Path, *, schema: list[str], version: int) -> None:
        self.path = path
        self._lock = threading.Lock()
        if not path.exists():
            # Create the file owner-only; SQLite gives its -wal and -shm files the same mode.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, SECRET_MODE))
        try:
            self._conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise InputError(f"cannot open database ({exc})", where=path.name) from None
        try:
            self._prepare(schema, version)
        except BaseException:
            self._conn.close()
            raise

    def _prepare(self, schema: list[str], version: int) -> None:
        try:
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise InputError(
                f"not a usable SQLite database ({exc})", where=self.path.name
            ) from None
        if mode != "wal":
            raise InputError(f"cannot switch to WAL mode (got {mode})", where=self.path.name)
        self._conn.execute("PRAGMA synchronous=FULL")
        with self.transaction() as conn:
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            if found == 0:
                for statement in schema:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={int(version)}")
            elif found != version:
                raise InputError(
                    f"database format {found} is not the supported format {version}",
                    where=self.path.name,
                    hint="it was written by a different hexpsi version",
                )

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back if the body raises.

        ``write=False`` opens a deferred (read-only) transaction instead: one
        consistent snapshot that does not block writers in WAL mode.

        Storage failures (a locked or broken file) become one error naming the file,
        with status UNAVAILABLE, instead of escaping as a raw sqlite3 exception.
        """
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
            except sqlite3.Error as exc:
                raise self._storage_error(exc) from None
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise self._storage_error(exc) from None
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def read(self, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one query in its own snapshot and return every row."""
        with self._lock:
            try:
                return list(self._conn.execute(sql, parameters).fetchall())
            except sqlite3.Error as exc:
                raise self._storage_error(exc) from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _storage_error(self, exc: sqlite3.Error) -> LocalProtocolError:
        return LocalProtocolError(f"{self.path.name}: {exc}", status=Status.UNAVAILABLE)


class DatabaseOwner:
    """Shared lifetime of the classes built on one :class:`Database`: close, ``with``."""

    _db: Database

    @property
    def path(self) -> Path:
        return self._db.path

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
