"""What each peer has spent, persisted: area per window, mutual checks, session ids.

The decisions are ``protocol.budget``'s; this module makes them durable and
atomic. A charge reads what the peer spent in the window, decides and records
the new total inside one ``BEGIN IMMEDIATE`` transaction, so concurrent
evaluations (threads, processes, replicas sharing the file) cannot both see the
same remainder and overspend it. Everything committed survives a crash
(WAL with ``synchronous=FULL``, see :class:`hexpsi.server.node.files.Database`), so
restarting the server never hands a peer its budget back.
"""

from __future__ import annotations

import math
from pathlib import Path

from hexpsi.protocol.budget import Charge, Window, decide_charge
from hexpsi.protocol.errors import BudgetExhausted, InputError, RemoteProtocolError, Status
from hexpsi.server.node.sqlite import Database, DatabaseOwner

LEDGER_FORMAT = 1
SESSION_ID_MIN_BYTES = 16
"""A session id is a fresh random nonce; fewer than 128 bits invites accidental reuse."""
SESSION_ID_MAX_BYTES = 64

SCHEMA = [
    """CREATE TABLE area_spent (
        peer TEXT NOT NULL,
        window_start REAL NOT NULL,
        spent_km2 REAL NOT NULL,
        PRIMARY KEY (peer, window_start)
    ) WITHOUT ROWID""",
    """CREATE TABLE count_spent (
        peer TEXT NOT NULL,
        kind TEXT NOT NULL,
        window_start REAL NOT NULL,
        used INTEGER NOT NULL,
        PRIMARY KEY (peer, kind, window_start)
    ) WITHOUT ROWID""",
    """CREATE TABLE sessions (
        peer TEXT NOT NULL,
        session_id BLOB NOT NULL,
        claimed_at REAL NOT NULL,
        PRIMARY KEY (peer, session_id)
    ) WITHOUT ROWID""",
]


def _check_peer(peer: str) -> None:
    if not isinstance(peer, str) or not peer:
        raise InputError(f"peer must be a non-empty name, got {peer!r}")


def _check_limit(limit: float, what: str) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int | float):
        raise InputError(f"{what} must be a number, got {limit!r}")
    if not (math.isfinite(limit) and limit >= 0):
        raise InputError(f"{what} must be a finite number >= 0, got {limit}")


class Ledger(DatabaseOwner):
    """The budget and session ledger of one node (``ledger.sqlite3``)."""

    def __init__(self, path: Path) -> None:
        self._db = Database(path, schema=SCHEMA, version=LEDGER_FORMAT)

    def charge_area(
        self,
        peer: str,
        amount_km2: float,
        *,
        limit_km2: float,
        window_seconds: float,
        now: float,
    ) -> Charge:
        """Charge ``amount_km2`` to ``peer`` in the window containing ``now``, or raise.

        Raises :class:`BudgetExhausted` (and records nothing) if the amount does not
        fit in what is left of ``limit_km2``.
        """
        _check_peer(peer)
        _check_limit(limit_km2, "area limit")
        window = Window.containing(now, window_seconds)
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT spent_km2 FROM area_spent WHERE peer = ? AND window_start = ?",
                (peer, window.start),
            ).fetchone()
            spent = float(row[0]) if row else 0.0
            charge = decide_charge(
                amount=amount_km2, spent_in_window=spent, limit=limit_km2, window=window
            )
            conn.execute(
                "INSERT INTO area_spent (peer, window_start, spent_km2) VALUES (?, ?, ?) "
                "ON CONFLICT (peer, window_start) DO UPDATE SET spent_km2 = excluded.spent_km2",
                (peer, window.start, spent + charge.amount),
            )
        return charge

    def spent(self, peer: str, window_start: float) -> float:
        """Area charged to ``peer`` in the window starting at ``window_start`` (km²)."""
        rows = self._db.read(
            "SELECT spent_km2 FROM area_spent WHERE peer = ? AND window_start = ?",
            (peer, window_start),
        )
        return float(rows[0][0]) if rows else 0.0

    def charge_count(
        self, peer: str, kind: str, *, limit: int, window_seconds: float, now: float
    ) -> Charge:
        """Count one ``kind`` operation (e.g. ``"mutual"``) against ``peer``'s allowance.

        Mutual checks reveal a count over both whole maps, so they are rationed by
        number rather than by area.
        """
        _check_peer(peer)
        _check_limit(limit, f"{kind} limit")
        if not isinstance(kind, str) or not kind:
            raise InputError(f"kind must be a non-empty name, got {kind!r}")
        window = Window.containing(now, window_seconds)
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT used FROM count_spent WHERE peer = ? AND kind = ? AND window_start = ?",
                (peer, kind, window.start),
            ).fetchone()
            used = int(row[0]) if row else 0
            try:
                charge = decide_charge(
                    amount=1.0, spent_in_window=float(used), limit=float(limit), window=window
                )
            except BudgetExhausted as exc:
                raise BudgetExhausted(
                    f"peer {peer} has used {used} of its {limit:g} {kind} checks in this "
                    f"window; the window resets at {window.end:.0f} (Unix time)",
                    remaining=exc.remaining,
                    resets_at=exc.resets_at,
                ) from None
            conn.execute(
                "INSERT INTO count_spent (peer, kind, window_start, used) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (peer, kind, window_start) DO UPDATE SET used = excluded.used",
                (peer, kind, window.start, used + 1),
            )
        return charge

    def used(self, peer: str, kind: str, window_start: float) -> int:
        """How many ``kind`` operations ``peer`` made in the window starting at ``window_start``."""
        rows = self._db.read(
            "SELECT used FROM count_spent WHERE peer = ? AND kind = ? AND window_start = ?",
            (peer, kind, window_start),
        )
        return int(rows[0][0]) if rows else 0

    def claim_session(self, peer: str, session_id: bytes, now: float) -> None:
        """Record a session id as used; raise ALREADY_EXISTS if ``peer`` used it before.

        A replayed query would otherwise be evaluated (and charged) twice under a
        transcript the peer already holds a receipt for.
        """
        _check_peer(peer)
        if not isinstance(session_id, bytes) or not (
            SESSION_ID_MIN_BYTES <= len(session_id) <= SESSION_ID_MAX_BYTES
        ):
            size = len(session_id) if isinstance(session_id, bytes) else type(session_id).__name__
            raise RemoteProtocolError(
                f"session id must be {SESSION_ID_MIN_BYTES}..{SESSION_ID_MAX_BYTES} bytes, "
                f"got {size}"
            )
        with self._db.transaction() as conn:
            inserted = conn.execute(
                "INSERT INTO sessions (peer, session_id, claimed_at) VALUES (?, ?, ?) "
                "ON CONFLICT (peer, session_id) DO NOTHING",
                (peer, session_id, now),
            ).rowcount
        if inserted != 1:
            raise RemoteProtocolError(
                f"session id {session_id.hex()} was already used by peer {peer}",
                status=Status.ALREADY_EXISTS,
                hint="every query needs a fresh random session id",
            )

    def prune_sessions(self, before: float) -> int:
        """Forget session ids claimed before ``before``; returns how many were dropped.

        Only safe for sessions whose epoch has expired (a replay would then fail as
        stale anyway): pass a time at least one epoch validity in the past.
        """
        with self._db.transaction() as conn:
            return int(
                conn.execute("DELETE FROM sessions WHERE claimed_at < ?", (before,)).rowcount
            )
