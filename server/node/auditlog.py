"""The responder's append-only, hash-chained, signed audit log (``audit.sqlite3``).

``protocol.audit`` defines the chain; this module stores it. Each append reads
the newest entry, signs the next one and moves the signed head in one
transaction, so two writers can never fork the chain. Triggers refuse UPDATE and
DELETE on entries, which stops accidents; deliberate tampering with the file
(dropping the triggers, editing rows) is what :meth:`AuditLog.verify` catches.

A key rotation (``node.rotations``) appends a ``key-rotation`` entry signed by
the old key and moves the head under the new key (:meth:`AuditLog.append_rotation`);
from then on only the new key may append. An append first checks that the head
verifies with the appender's key, so a process still holding the key a rotation
replaced (a server started before it) is refused rather than break the chain.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey, VerifyKey

from hexpsi.protocol.audit import (
    GENESIS_HASH,
    ROTATION_KIND,
    ChainBroken,
    Entry,
    Head,
    canonical_json,
    head_is_signed_by,
    rotation_details,
    sign_entry,
    sign_head,
    verify_chain,
)
from hexpsi.protocol.errors import FailedPrecondition, InputError, LocalProtocolError
from hexpsi.protocol.rotation import SignedRotation
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
        return self._append(kind, peer, canonical_json(details), now, self._signing_key)

    def append_rotation(self, statement: SignedRotation, new_key: SigningKey, now: float) -> Entry:
        """Record ``statement``: an entry signed by this log's (old) key, the head by ``new_key``.

        After it only ``new_key`` may append. ``statement`` must hand over from this
        log's key to ``new_key``.
        """
        rotation = statement.rotation
        if rotation.old_signing_key != bytes(self._signing_key.verify_key):
            raise LocalProtocolError("the rotation does not hand over from this log's key")
        if rotation.new_signing_key != bytes(new_key.verify_key):
            raise LocalProtocolError("the rotation does not hand over to the key given")
        details = canonical_json(rotation_details(statement))
        return self._append(ROTATION_KIND, "", details, now, new_key)

    def rotation_entry(self, sequence: int) -> Entry | None:
        """The ``key-rotation`` entry recording the node's rotation ``sequence``, if any."""
        for row in self._db.read(
            "SELECT seq, time, kind, peer, details, prev_hash, hash, signature FROM entries "
            "WHERE kind = ? ORDER BY seq",
            (ROTATION_KIND,),
        ):
            entry = _entry(row)
            try:
                recorded = entry.details_object().get("rotation")
            except (ValueError, InputError):
                continue
            if recorded == sequence:
                return entry
        return None

    def _append(
        self, kind: str, peer: str, encoded: bytes, now: float, head_key: SigningKey
    ) -> Entry:
        with self._db.transaction() as conn:
            self._check_head(conn)
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
            head = sign_head(entry.seq, entry.hash, head_key)
            conn.execute(
                "INSERT INTO head (id, seq, hash, signature) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
                "signature = excluded.signature",
                (head.seq, head.hash, head.signature),
            )
        return entry

    def _check_head(self, conn: sqlite3.Connection) -> None:
        """Refuse to append under a key the log was handed over from."""
        row = conn.execute("SELECT seq, hash, signature FROM head WHERE id = 1").fetchone()
        if row is None or head_is_signed_by(Head(*row), self._signing_key.verify_key):
            return
        raise FailedPrecondition(
            "the audit log's head is not signed by this process's signing key: the node's "
            "keys were rotated after it loaded them, or the log was tampered with",
            hint="restart the process (hexpsi serve) so it loads the node's current keys, "
            "and run hexpsi audit DIR --verify",
        )

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

    def verify(self, verify_keys: VerifyKey | Sequence[VerifyKey] | None = None) -> int:
        """Check the whole chain and the signed head; returns the number of entries.

        Raises :class:`hexpsi.protocol.audit.ChainBroken` naming the first bad entry.
        ``verify_keys`` is the node's first signing key or its keys first first
        (:func:`hexpsi.protocol.audit.verify_chain`), by default this log's own key.
        The chain must end under this log's own key: the newest entries and the head
        are the current key's.
        """
        keys = verify_keys if verify_keys is not None else self._signing_key.verify_key
        with self._db.transaction(write=False) as conn:
            rows = conn.execute(SELECT_ENTRIES).fetchall()
            head_rows = conn.execute("SELECT seq, hash, signature FROM head").fetchall()
        entries = [_entry(row) for row in rows]
        # An empty log has no head; entries without a head, or several heads, mean tampering.
        head = Head(*head_rows[0]) if len(head_rows) == 1 else Head(0, b"", b"")
        if not entries and not head_rows:
            return 0
        final = verify_chain(entries, keys, head=head)
        if bytes(final) != bytes(self._signing_key.verify_key):
            raise ChainBroken(
                max(len(entries), 1),
                f"the log ends under signing key {bytes(final).hex()[:16]}..., not under "
                "this node's current one",
            )
        return len(entries)
