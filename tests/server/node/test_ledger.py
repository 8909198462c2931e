"""The ledger never overspends (per peer, node-wide, by count), keeps what was spent across
restarts, refuses replays, writes nothing for a refusal and migrates format 1 files."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from hexpsi.protocol.budget import Allowance
from hexpsi.protocol.errors import BudgetExhausted, InputError, RemoteProtocolError, Status
from hexpsi.server.node.ledger import NODE, Allowances, Ledger, Operation

DAY = 86400.0
NOW = 1_750_000_000.0
PEER_50 = Allowances(
    peer=Allowance(50.0, DAY, name="bravo's area budget"), node=Allowance(1e9, DAY)
)


def allowances(peer: float = 100.0, node: float = 1e9, mutual: int | None = None) -> Allowances:
    return Allowances(
        peer=Allowance(peer, DAY, name="bravo's area budget"),
        node=Allowance(node, DAY, name="the node's area budget"),
        mutual_calls=None if mutual is None else Allowance(mutual, DAY, unit="checks"),
    )


def charge(
    ledger: Ledger,
    peer: str,
    amount: float,
    *,
    now: float = NOW,
    limits: Allowances | None = None,
    operation: Operation = Operation.CHECK,
    session: bytes | None = None,
) -> float:
    admission = ledger.admit(
        peer,
        operation=operation,
        area_km2=amount,
        allowances=limits or allowances(),
        now=now,
        session_id=session,
    )
    ledger.confirm(admission.charge_id)
    return admission.charge.remaining


def test_charges_accumulate_until_the_limit(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        assert charge(ledger, "bravo", 40.0) == 60.0
        assert charge(ledger, "bravo", 60.0) == 0.0
        assert ledger.spent("bravo", now=NOW, window_seconds=DAY) == 100.0


def test_a_refused_charge_writes_nothing(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        charge(ledger, "bravo", 70.0)
        before = ledger.sizes()
        with pytest.raises(BudgetExhausted) as refused:
            ledger.admit(
                "bravo",
                operation=Operation.CHECK,
                area_km2=31.0,
                allowances=allowances(),
                now=NOW,
                session_id=bytes(16),
            )
        assert refused.value.remaining == 30.0
        assert refused.value.frees_at == NOW + DAY
        assert ledger.sizes() == before, "no charge and no session row for a refusal"
        assert ledger.spent("bravo", now=NOW, window_seconds=DAY) == 70.0


def test_windows_roll_so_a_boundary_gives_no_second_budget(tmp_path: Path) -> None:
    """A whole budget spent a minute ago still counts, whatever the clock says the day is."""
    midnight = (NOW // DAY + 1) * DAY
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        charge(ledger, "bravo", 100.0, now=midnight - 60)
        with pytest.raises(BudgetExhausted):
            charge(ledger, "bravo", 1.0, now=midnight + 60)
        assert charge(ledger, "bravo", 100.0, now=midnight - 60 + DAY) == 0.0


def test_peers_have_their_own_budgets_and_share_the_node_cap(tmp_path: Path) -> None:
    """Colluding peers, each within its own budget, are stopped by the node-wide cap."""
    limits = allowances(peer=100.0, node=150.0)
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        charge(ledger, "bravo", 100.0, limits=limits)
        with pytest.raises(BudgetExhausted, match="the node's area budget") as refused:
            charge(ledger, "charlie", 60.0, limits=limits)
        assert refused.value.remaining == 50.0
        assert charge(ledger, "charlie", 50.0, limits=limits) == 50.0
        assert ledger.spent(NODE, now=NOW, window_seconds=DAY) == 150.0


def test_mutual_calls_count_against_their_own_allowance(tmp_path: Path) -> None:
    limits = allowances(mutual=2)
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        for _ in range(2):
            charge(ledger, "bravo", 1.0, limits=limits, operation=Operation.MUTUAL)
        with pytest.raises(BudgetExhausted, match="checks"):
            charge(ledger, "bravo", 1.0, limits=limits, operation=Operation.MUTUAL)
        assert ledger.calls("bravo", Operation.MUTUAL, now=NOW, window_seconds=DAY) == 2
        charge(ledger, "bravo", 1.0, limits=limits, operation=Operation.CHECK)
        charge(ledger, "bravo", 1.0, limits=limits, operation=Operation.MUTUAL, now=NOW + DAY)


def test_spending_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        charge(ledger, "bravo", 90.0)
    with Ledger(path) as reopened:
        assert reopened.spent("bravo", now=NOW, window_seconds=DAY) == 90.0
        with pytest.raises(BudgetExhausted):
            charge(reopened, "bravo", 20.0, now=NOW + 1)


def test_a_refund_undoes_an_unrecorded_charge_only(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        pending = ledger.admit(
            "bravo", operation=Operation.CHECK, area_km2=30.0, allowances=allowances(), now=NOW
        )
        assert [c.charge_id for c in ledger.unrecorded()] == [pending.charge_id]
        ledger.refund(pending.charge_id)
        assert ledger.spent("bravo", now=NOW, window_seconds=DAY) == 0.0
        recorded = ledger.admit(
            "bravo", operation=Operation.CHECK, area_km2=30.0, allowances=allowances(), now=NOW
        )
        ledger.confirm(recorded.charge_id)
        ledger.refund(recorded.charge_id)
        assert ledger.spent("bravo", now=NOW, window_seconds=DAY) == 30.0
        assert ledger.unrecorded() == []


@pytest.mark.parametrize(
    "bad",
    [
        {"area_km2": -1.0},
        {"area_km2": float("nan")},
        {"allowances": "not allowances"},
    ],
)
def test_nonsense_charges_are_input_errors(tmp_path: Path, bad: dict[str, object]) -> None:
    arguments: dict[str, object] = {
        "operation": Operation.CHECK,
        "area_km2": 1.0,
        "allowances": allowances(),
        "now": NOW,
    }
    arguments.update(bad)
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        with pytest.raises((InputError, AttributeError)):
            ledger.admit("bravo", **arguments)  # type: ignore[arg-type]
        with pytest.raises(InputError):
            ledger.admit(
                "", operation=Operation.CHECK, area_km2=1.0, allowances=allowances(), now=NOW
            )
        assert ledger.spent("bravo", now=NOW, window_seconds=DAY) == 0.0


def _charge_repeatedly(path: str, attempts: int) -> int:
    """Worker: try ``attempts`` charges of 1 km² against a 50 km² limit; count approvals."""
    approved = 0
    with Ledger(Path(path)) as ledger:
        for _ in range(attempts):
            try:
                charge(ledger, "bravo", 1.0, limits=PEER_50)
            except BudgetExhausted:
                continue
            approved += 1
    return approved


def test_concurrent_threads_never_overspend(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    results: list[int] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        barrier.wait()
        results.append(_charge_repeatedly(str(path), 15))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results) == 50  # 90 attempts, exactly the limit approved
    with Ledger(path) as ledger:
        assert ledger.spent("bravo", now=NOW, window_seconds=DAY) == 50.0


def _charge_when_told(path: str, start_dir: str, attempts: int) -> int:
    """Process worker: report ready, wait for the shared start signal, then charge."""
    signals = Path(start_dir)
    (signals / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + 60
    while not (signals / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    return _charge_repeatedly(path, attempts)


def test_concurrent_processes_never_overspend(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    signals = tmp_path / "signals"
    signals.mkdir()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=3, mp_context=context) as pool:
        futures = [pool.submit(_charge_when_told, str(path), str(signals), 30) for _ in range(3)]
        deadline = time.monotonic() + 60
        while len(list(signals.glob("ready-*"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        (signals / "go").touch()
        results = [future.result() for future in futures]
    assert sum(results) == 50
    with Ledger(path) as ledger:
        assert ledger.spent("bravo", now=NOW, window_seconds=DAY) == 50.0


def test_a_session_id_can_be_claimed_once_per_peer(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    session = bytes(range(16))
    with Ledger(path) as ledger:
        charge(ledger, "bravo", 1.0, session=session)
        with pytest.raises(RemoteProtocolError, match="already used") as reused:
            charge(ledger, "bravo", 1.0, session=session, now=NOW + 1)
        assert reused.value.status is Status.ALREADY_EXISTS
        charge(ledger, "charlie", 1.0, session=session)
        assert ledger.spent("bravo", now=NOW + 1, window_seconds=DAY) == 1.0, (
            "a replay costs nothing"
        )
    with Ledger(path) as reopened, pytest.raises(RemoteProtocolError) as again:
        charge(reopened, "bravo", 1.0, session=session, now=NOW + 2)
    assert again.value.status is Status.ALREADY_EXISTS


def test_racing_claims_of_one_session_id_admit_exactly_one(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    outcomes: list[str] = []
    barrier = threading.Barrier(5)

    def claim() -> None:
        with Ledger(path) as ledger:
            barrier.wait()
            try:
                charge(ledger, "bravo", 1.0, session=b"s" * 32)
            except RemoteProtocolError:
                outcomes.append("refused")
            else:
                outcomes.append("claimed")

    threads = [threading.Thread(target=claim) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["claimed"] + ["refused"] * 4


def test_session_ids_must_be_long_enough(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        for bad in (b"", b"short", bytes(65)):
            with pytest.raises(RemoteProtocolError) as refused:
                charge(ledger, "bravo", 1.0, session=bad)
            assert refused.value.status is Status.INVALID_ARGUMENT


def test_pruning_forgets_old_charges_and_past_sessions_only(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        charge(ledger, "bravo", 10.0, now=NOW - 10 * DAY, session=bytes(16))
        charge(ledger, "bravo", 10.0, now=NOW, session=bytes(17))
        unfinished = ledger.admit(
            "bravo",
            operation=Operation.CHECK,
            area_km2=5.0,
            allowances=allowances(),
            now=NOW - 9 * DAY,
        )
        assert ledger.prune(charges_before=NOW - DAY, sessions_before=NOW - DAY) == (1, 1)
        assert [c.charge_id for c in ledger.unrecorded()] == [unfinished.charge_id]
        charge(ledger, "bravo", 1.0, session=bytes(16))
        with pytest.raises(RemoteProtocolError):
            charge(ledger, "bravo", 1.0, session=bytes(17))


def test_the_file_is_owner_only_and_durable(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_corrupt_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(InputError, match=r"ledger\.sqlite3"):
        Ledger(path)


def test_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(InputError, match="format 99"):
        Ledger(path)


def test_a_format_1_ledger_is_migrated_without_handing_budget_back(tmp_path: Path) -> None:
    """Totals per fixed window become charges at the window's start: they count until the
    old window would have ended, and session ids stay claimed."""
    path = tmp_path / "ledger.sqlite3"
    window_start = (NOW // DAY) * DAY
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE area_spent (peer TEXT, window_start REAL, spent_km2 REAL,
            PRIMARY KEY (peer, window_start)) WITHOUT ROWID;
        CREATE TABLE count_spent (peer TEXT, kind TEXT, window_start REAL, used INTEGER,
            PRIMARY KEY (peer, kind, window_start)) WITHOUT ROWID;
        CREATE TABLE sessions (peer TEXT, session_id BLOB, claimed_at REAL,
            PRIMARY KEY (peer, session_id)) WITHOUT ROWID;
        PRAGMA user_version = 1;
        """
    )
    conn.execute("INSERT INTO area_spent VALUES ('bravo', ?, 80.0)", (window_start,))
    conn.execute("INSERT INTO count_spent VALUES ('bravo', 'mutual', ?, 3)", (window_start,))
    conn.execute("INSERT INTO sessions VALUES ('bravo', ?, ?)", (bytes(16), window_start))
    conn.commit()
    conn.close()
    with Ledger(path) as ledger:
        assert ledger.spent("bravo", now=NOW, window_seconds=DAY) == 80.0
        assert ledger.calls("bravo", Operation.MUTUAL, now=NOW, window_seconds=DAY) == 3
        with pytest.raises(BudgetExhausted) as refused:
            charge(ledger, "bravo", 30.0)
        assert refused.value.frees_at == window_start + DAY
        with pytest.raises(RemoteProtocolError):
            charge(ledger, "bravo", 1.0, session=bytes(16))
