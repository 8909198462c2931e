"""Durable SQLite for a node's ledger and audit log: WAL, full sync, one lock, clear errors.

Both stores run on :class:`Database`; :class:`DatabaseOwner` gives the classes
built on one its lifetime (``close`` and ``with``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from hexpsi.protocol.errors import InputError, LocalProtocolError, Status
from hexpsi.server.node.files import SECRET_MODE

BUSY_TIMEOUT_SECONDS = 30.0


class Database:
    """One SQLite connection, safe to share between threads, with durable settings.

    ``schema`` (a list of statements) runs in one transaction when the database is
    new; ``version`` is kept in ``PRAGMA user_version`` so a file written by a
    newer hexpsi is refused rather than misread. ``migrations[v]`` holds the
    statements that take a file from format ``v`` to ``v + 1``; an older file is
    brought up to date in one transaction when it is opened, or left untouched.
    """

    def __init__(
        self,
        path: Path,
        *,
        schema: list[str],
        version: int,
        migrations: Mapping[int, list[str]] | None = None,
    ) -> None:
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
            self._prepare(schema, version, migrations or {})
        except BaseException:
            self._conn.close()
            raise

    def _prepare(
        self, schema: list[str], version: int, migrations: Mapping[int, list[str]]
    ) -> None:
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
            elif found < version and all(v in migrations for v in range(found, version)):
                for step in range(found, version):
                    for statement in migrations[step]:
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
