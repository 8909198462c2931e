"""The responder's append-only, hash-chained, signed audit log (``audit.sqlite3``).

``protocol.audit`` defines the chain; this module stores it. Each append reads
the newest entry, signs the next one and moves the signed head in one
transaction, so two writers can never fork the chain. Triggers refuse UPDATE and
DELETE on entries, which stops accidents; deliberate tampering with the file
(dropping the triggers, editing rows) is what :meth:`AuditLog.verify` catches.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey, VerifyKey

from hexpsi.protocol.audit import (
    GENESIS_HASH,
    Entry,
    Head,
    canonical_json,
    sign_entry,
    sign_head,
    verify_chain,
)
from hexpsi.server.node.sqlite import Database, DatabaseOwner

AUDIT_FORMAT = 1

SCHEMA = [
    """CREATE TABLE entries (
        seq INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        peer TEXT NOT NULL,
        details BLOB NOT NULL,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL,
        signature BLOB NOT NULL
    )""",
    """CREATE TABLE head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL,
        signature BLOB NOT NULL
    )""",
    """CREATE TRIGGER entries_append_only_update BEFORE UPDATE ON entries
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER entries_append_only_delete BEFORE DELETE ON entries
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
]

SELECT_ENTRIES = (
    "SELECT seq, time, kind, peer, details, prev_hash, hash, signature FROM entries ORDER BY seq"
)
INSERT_ENTRY = (
    "INSERT INTO entries (seq, time, kind, peer, details, prev_hash, hash, signature) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _entry(row: tuple[Any, ...]) -> Entry:
    return Entry(*row)


class AuditLog(DatabaseOwner):
    """Append and read a node's audit log; entries are signed with ``signing_key``."""

    def __init__(self, path: Path, signing_key: SigningKey) -> None:
        self._signing_key = signing_key
        self._db = Database(path, schema=SCHEMA, version=AUDIT_FORMAT)

    def append(self, kind: str, peer: str, details: Mapping[str, Any], now: float) -> Entry:
        """Sign and store the next entry; ``details`` must be plain JSON."""
        encoded = canonical_json(details)
        with self._db.transaction() as conn:
            row = conn.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
            last_seq, prev_hash = (int(row[0]), bytes(row[1])) if row else (0, GENESIS_HASH)
            entry = sign_entry(
                seq=last_seq + 1,
                time=now,
                kind=kind,
                peer=peer,
                details=encoded,
                prev_hash=prev_hash,
                signing_key=self._signing_key,
            )
            conn.execute(
                INSERT_ENTRY,
                (
                    entry.seq,
                    entry.time,
                    entry.kind,
                    entry.peer,
                    entry.details,
                    entry.prev_hash,
                    entry.hash,
                    entry.signature,
                ),
            )
            head = sign_head(entry.seq, entry.hash, self._signing_key)
            conn.execute(
                "INSERT INTO head (id, seq, hash, signature) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
                "signature = excluded.signature",
                (head.seq, head.hash, head.signature),
            )
        return entry

    def entries(self) -> list[Entry]:
        """Every entry in sequence order."""
        return [_entry(row) for row in self._db.read(SELECT_ENTRIES)]

    def last_time(self, kind: str, peer: str) -> float | None:
        """When the newest ``kind`` entry about ``peer`` was written, if any."""
        rows = self._db.read(
            "SELECT MAX(time) FROM entries WHERE kind = ? AND peer = ?", (kind, peer)
        )
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    def head(self) -> Head | None:
        """The signed newest position, or None for a log nothing was appended to."""
        rows = self._db.read("SELECT seq, hash, signature FROM head WHERE id = 1")
        return Head(*rows[0]) if rows else None

    def verify(self, verify_key: VerifyKey | None = None) -> int:
        """Check the whole chain and the signed head; returns the number of entries.

        Raises :class:`hexpsi.protocol.audit.ChainBroken` naming the first bad entry.
        ``verify_key`` defaults to this node's own key.
        """
        key = verify_key if verify_key is not None else self._signing_key.verify_key
        with self._db.transaction(write=False) as conn:
            rows = conn.execute(SELECT_ENTRIES).fetchall()
            head_rows = conn.execute("SELECT seq, hash, signature FROM head").fetchall()
        entries = [_entry(row) for row in rows]
        # An empty log has no head; entries without a head, or several heads, mean tampering.
        head = Head(*head_rows[0]) if len(head_rows) == 1 else Head(0, b"", b"")
        if not entries and not head_rows:
            return 0
        verify_chain(entries, key, head=head)
        return len(entries)
