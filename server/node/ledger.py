"""What each peer has spent, persisted: every charge with its time, and used session ids.

The decisions are ``protocol.budget``'s; this module makes them durable and
atomic. Admitting a request claims its session id and records its charge
against the peer's budget, the node-wide budget and (for mutual checks) the
peer's call allowance inside one ``BEGIN IMMEDIATE`` transaction, so concurrent
requests (threads, processes, replicas sharing the file) cannot both see the
same remainder, and a refused request writes nothing at all.

A charge is *unrecorded* until its receipt and audit entry exist
(:meth:`Ledger.confirm`); a request that fails before then is refunded
(:meth:`Ledger.refund`), so a charge never stands without its record. A process
killed in between leaves the charge unrecorded; :meth:`Ledger.unrecorded` lists
such charges for the server to log when it starts, and the area stays spent.

Everything committed survives a crash (WAL with ``synchronous=FULL``, see
:class:`hexpsi.server.node.sqlite.Database`), so restarting the server never
hands a peer its budget back. Charges older than the longest window and session
ids of past epochs are pruned (:meth:`Ledger.prune`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hexpsi.protocol.budget import Allowance, Charge, Spending, decide_charge
from hexpsi.protocol.errors import InputError, RemoteProtocolError, Status
from hexpsi.server.node.sqlite import Database, DatabaseOwner

LEDGER_FORMAT = 3
SESSION_ID_MIN_BYTES = 16
"""A session id is a fresh random nonce; fewer than 128 bits invites accidental reuse."""
SESSION_ID_MAX_BYTES = 64
NODE = ""
"""The peer name under which node-wide totals are looked up (no node name is empty)."""


class Operation(enum.StrEnum):
    """What a charge paid for."""

    CHECK = "check"
    """A peer's check against this node's map."""
    MUTUAL = "mutual"
    """A peer's mutual check against this node (also counted against its call allowance)."""
    MUTUAL_OUT = "mutual-out"
    """This node's mutual check against a peer: the peer could learn that many of our cells."""


_CHARGES_FORMAT_2 = """CREATE TABLE charges (
        id INTEGER PRIMARY KEY,
        peer TEXT NOT NULL,
        operation TEXT NOT NULL,
        at REAL NOT NULL,
        area_km2 REAL NOT NULL,
        session_id BLOB,
        recorded INTEGER NOT NULL
    )"""
SCHEMA = [
    """CREATE TABLE charges (
        id INTEGER PRIMARY KEY,
        peer TEXT NOT NULL,
        operation TEXT NOT NULL,
        at REAL NOT NULL,
        area_km2 REAL NOT NULL,
        session_id BLOB,
        recorded INTEGER NOT NULL,
        volume_km2h REAL NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX charges_by_peer ON charges (peer, at)",
    "CREATE INDEX charges_by_time ON charges (at)",
    """CREATE TABLE sessions (
        peer TEXT NOT NULL,
        session_id BLOB NOT NULL,
        claimed_at REAL NOT NULL,
        PRIMARY KEY (peer, session_id)
    ) WITHOUT ROWID""",
]
MIGRATIONS = {
    # Format 1 kept totals per fixed window; each becomes one charge at its window's
    # start, which leaves a rolling window exactly when the fixed window ended.
    1: [
        _CHARGES_FORMAT_2,
        *SCHEMA[1:3],
        "INSERT INTO charges (peer, operation, at, area_km2, session_id, recorded) "
        "SELECT peer, 'check', window_start, spent_km2, NULL, 1 FROM area_spent",
        "WITH RECURSIVE counted(peer, kind, at, n) AS ("
        " SELECT peer, kind, window_start, used FROM count_spent WHERE used > 0"
        " UNION ALL SELECT peer, kind, at, n - 1 FROM counted WHERE n > 1) "
        "INSERT INTO charges (peer, operation, at, area_km2, session_id, recorded) "
        "SELECT peer, kind, at, 0.0, NULL, 1 FROM counted",
        "DROP TABLE area_spent",
        "DROP TABLE count_spent",
    ],
    # Format 3 charges timed elements by space-time volume beside the area.
    2: ["ALTER TABLE charges ADD COLUMN volume_km2h REAL NOT NULL DEFAULT 0"],
}


@dataclass(frozen=True, slots=True)
class Allowances:
    """Everything one request is charged against."""

    peer: Allowance
    node: Allowance
    mutual_calls: Allowance | None = None
    """For a peer's mutual checks: how many it may make per window (each counts 1)."""
    peer_volume: Allowance | None = None
    """The peer's space-time budget (km²·h) for timed elements."""
    node_volume: Allowance | None = None
    """The node-wide space-time budget."""


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted request: its charge (unrecorded until confirmed) and what is left."""

    charge_id: int
    charge: Charge
    node_charge: Charge
    volume_charge: Charge | None = None
    node_volume_charge: Charge | None = None


@dataclass(frozen=True, slots=True)
class UnrecordedCharge:
    """A charge whose request never got its receipt and audit entry (a crash between)."""

    charge_id: int
    peer: str
    operation: str
    at: float
    area_km2: float
    session_id: bytes | None


HistoryReader = Callable[[str, float, "Operation | None", str], list[Spending]]
"""``history(peer, since, operation, column)``: the charges after ``since`` (``NODE``:
everyone's), their area or volume."""


_SELECT_SPENDING = {
    column: f"SELECT at, {column} FROM charges WHERE at > ?"  # noqa: S608 - fixed names
    for column in ("area_km2", "volume_km2h")
}


def _history_query(
    peer: str, since: float, operation: Operation | None, column: str = "area_km2"
) -> tuple[str, tuple[object, ...]]:
    sql = _SELECT_SPENDING[column]
    parameters: tuple[object, ...] = (since,)
    if peer != NODE:
        sql += " AND peer = ?"
        parameters += (peer,)
    if operation is not None:
        sql += " AND operation = ?"
        parameters += (operation.value,)
    return sql, parameters


def _spendings(rows: Iterable[tuple[Any, ...]]) -> list[Spending]:
    return [Spending(float(at), float(area)) for at, area in rows]


def _check_peer(peer: str) -> None:
    if not isinstance(peer, str) or not peer:
        raise InputError(f"peer must be a non-empty name, got {peer!r}")


def _check_session_id(session_id: bytes) -> None:
    if not isinstance(session_id, bytes) or not (
        SESSION_ID_MIN_BYTES <= len(session_id) <= SESSION_ID_MAX_BYTES
    ):
        size = len(session_id) if isinstance(session_id, bytes) else type(session_id).__name__
        raise RemoteProtocolError(
            f"session id must be {SESSION_ID_MIN_BYTES}..{SESSION_ID_MAX_BYTES} bytes, got {size}"
        )


class Ledger(DatabaseOwner):
    """The budget and session ledger of one node (``ledger.sqlite3``)."""

    def __init__(self, path: Path) -> None:
        self._db = Database(path, schema=SCHEMA, version=LEDGER_FORMAT, migrations=MIGRATIONS)

    # -- reading

    def _history(
        self,
        peer: str,
        since: float,
        operation: Operation | None = None,
        column: str = "area_km2",
    ) -> list[Spending]:
        """Charges after ``since``: one peer's, or every peer's for ``NODE``."""
        return _spendings(self._db.read(*_history_query(peer, since, operation, column)))

    def spent(self, peer: str, *, now: float, window_seconds: float) -> float:
        """Area charged to ``peer`` (``NODE``: to everyone) over the last window (km²)."""
        return sum(s.amount for s in self._history(peer, now - window_seconds))

    def spent_volume(self, peer: str, *, now: float, window_seconds: float) -> float:
        """Space-time volume charged to ``peer`` (``NODE``: everyone) over the window (km²·h)."""
        history = self._history(peer, now - window_seconds, None, "volume_km2h")
        return sum(s.amount for s in history)

    def calls(self, peer: str, operation: Operation, *, now: float, window_seconds: float) -> int:
        """How many ``operation`` charges ``peer`` made over the last window."""
        return len(self._history(peer, now - window_seconds, operation))

    def last_charge(self, peer: str, operation: Operation) -> float | None:
        """When ``peer`` was last charged for ``operation``, if ever."""
        rows = self._db.read(
            "SELECT MAX(at) FROM charges WHERE peer = ? AND operation = ?",
            (peer, operation.value),
        )
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    # -- deciding

    def _decide(
        self,
        history: HistoryReader,
        peer: str,
        *,
        operation: Operation,
        area_km2: float,
        volume_km2h: float,
        allowances: Allowances,
        now: float,
        what: str,
    ) -> list[Charge]:
        """Every allowance the request is charged against, or the first refusal.

        A mutual check counts 1 against the peer's call allowance; every request
        counts its area against the peer's budget and the node-wide one, and its
        space-time volume (if any) against the peer's and the node's volume
        budgets. Returns the peer's and node's area charges, then the volume ones.
        """
        decisions: list[tuple[Allowance, str, Operation | None, float, str]] = [
            (allowances.peer, peer, None, area_km2, "area_km2"),
            (allowances.node, NODE, None, area_km2, "area_km2"),
        ]
        if volume_km2h > 0:
            if allowances.peer_volume is None or allowances.node_volume is None:
                raise InputError("a timed request needs space-time budgets to be charged against")
            decisions += [
                (allowances.peer_volume, peer, None, volume_km2h, "volume_km2h"),
                (allowances.node_volume, NODE, None, volume_km2h, "volume_km2h"),
            ]
        if allowances.mutual_calls is not None:
            decisions.insert(0, (allowances.mutual_calls, peer, operation, 1.0, "area_km2"))
        charges = []
        for allowance, who, counted, amount, column in decisions:
            past = history(who, now - allowance.window_seconds, counted, column)
            if counted is not None:
                past = [Spending(s.at, 1.0) for s in past]
            charges.append(
                decide_charge(amount=amount, history=past, allowance=allowance, now=now, what=what)
            )
        return charges[1:] if allowances.mutual_calls is not None else charges

    def check(
        self,
        peer: str,
        *,
        operation: Operation,
        area_km2: float,
        allowances: Allowances,
        now: float,
        what: str = "this request",
        volume_km2h: float = 0.0,
    ) -> None:
        """Refuse (``BudgetExhausted``) a request that would not be admitted; writes nothing.

        For refusing early, before the request is even decoded; :meth:`admit`
        decides again, atomically.
        """
        _check_peer(peer)
        self._decide(
            self._history,
            peer,
            operation=operation,
            area_km2=area_km2,
            volume_km2h=volume_km2h,
            allowances=allowances,
            now=now,
            what=what,
        )

    def admit(
        self,
        peer: str,
        *,
        operation: Operation,
        area_km2: float,
        allowances: Allowances,
        now: float,
        session_id: bytes | None = None,
        what: str = "this request",
        volume_km2h: float = 0.0,
    ) -> Admission:
        """Claim ``session_id`` and charge ``area_km2``, both or neither, or raise.

        Raises ``BudgetExhausted`` if any allowance cannot pay, ALREADY_EXISTS if
        ``peer`` used the session id before; either way nothing is written.
        """
        _check_peer(peer)
        if session_id is not None:
            _check_session_id(session_id)
        with self._db.transaction() as conn:

            def history(
                who: str, since: float, op: Operation | None, column: str
            ) -> list[Spending]:
                return _spendings(conn.execute(*_history_query(who, since, op, column)))

            charges = self._decide(
                history,
                peer,
                operation=operation,
                area_km2=area_km2,
                volume_km2h=volume_km2h,
                allowances=allowances,
                now=now,
                what=what,
            )
            if session_id is not None:
                inserted = conn.execute(
                    "INSERT INTO sessions (peer, session_id, claimed_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (peer, session_id) DO NOTHING",
                    (peer, session_id, now),
                ).rowcount
                if inserted != 1:
                    raise RemoteProtocolError(
                        f"session id {session_id.hex()} was already used by peer {peer}",
                        status=Status.ALREADY_EXISTS,
                        hint="every request needs a fresh random session id",
                    )
            cursor = conn.execute(
                "INSERT INTO charges "
                "(peer, operation, at, area_km2, session_id, recorded, volume_km2h) "
                "VALUES (?, ?, ?, ?, ?, 0, ?)",
                (peer, operation.value, now, area_km2, session_id, volume_km2h),
            )
            assert cursor.lastrowid is not None
            volume: list[Charge | None] = [*charges[2:]] or [None, None]
            return Admission(int(cursor.lastrowid), charges[0], charges[1], volume[0], volume[1])

    # -- after the request

    def confirm(self, charge_id: int) -> None:
        """The charge's receipt and audit entry exist: it is recorded."""
        with self._db.transaction() as conn:
            conn.execute("UPDATE charges SET recorded = 1 WHERE id = ?", (charge_id,))

    def refund(self, charge_id: int) -> None:
        """Undo a charge whose request failed before anything was answered or logged.

        The session id stays claimed: a retry takes a fresh one.
        """
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM charges WHERE id = ? AND recorded = 0", (charge_id,))

    def unrecorded(self) -> list[UnrecordedCharge]:
        """Charges left unrecorded by a process that stopped between charge and record."""
        rows = self._db.read(
            "SELECT id, peer, operation, at, area_km2, session_id FROM charges "
            "WHERE recorded = 0 ORDER BY id"
        )
        return [
            UnrecordedCharge(
                int(i), str(p), str(o), float(a), float(area), None if s is None else bytes(s)
            )
            for i, p, o, a, area, s in rows
        ]

    def prune(self, *, charges_before: float, sessions_before: float) -> tuple[int, int]:
        """Drop recorded charges no window can count any more, and session ids of past epochs.

        A session id only matters while its epoch is current (a request names the
        epoch's descriptor digest), so ``sessions_before`` is the current epoch's
        start; ``charges_before`` is ``now`` minus the longest window in use.
        """
        with self._db.transaction() as conn:
            charges = conn.execute(
                "DELETE FROM charges WHERE at < ? AND recorded = 1", (charges_before,)
            ).rowcount
            sessions = conn.execute(
                "DELETE FROM sessions WHERE claimed_at < ?", (sessions_before,)
            ).rowcount
        return int(charges), int(sessions)

    def sizes(self) -> tuple[int, int]:
        """How many charges and session ids the ledger holds (for tests and status)."""
        (charges,) = self._db.read("SELECT COUNT(*) FROM charges")[0]
        (sessions,) = self._db.read("SELECT COUNT(*) FROM sessions")[0]
        return int(charges), int(sessions)
