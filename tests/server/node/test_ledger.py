"""The ledger never overspends, keeps what was spent across restarts, and refuses replays."""

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

from hexpsi.protocol.errors import BudgetExhausted, InputError, RemoteProtocolError, Status
from hexpsi.server.node.ledger import Ledger

DAY = 86400.0
NOW = 1_750_000_000.0  # mid-window: floor(NOW / DAY) * DAY is the window start
WINDOW_START = (NOW // DAY) * DAY


def test_charges_accumulate_until_the_limit(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        first = ledger.charge_area("bravo", 40.0, limit_km2=100.0, window_seconds=DAY, now=NOW)
        second = ledger.charge_area("bravo", 60.0, limit_km2=100.0, window_seconds=DAY, now=NOW)
        assert (first.spent_before, first.remaining) == (0.0, 60.0)
        assert (second.spent_before, second.remaining) == (40.0, 0.0)
        assert ledger.spent("bravo", WINDOW_START) == 100.0


def test_a_refused_charge_records_nothing_and_says_when_it_resets(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        ledger.charge_area("bravo", 70.0, limit_km2=100.0, window_seconds=DAY, now=NOW)
        with pytest.raises(BudgetExhausted) as refused:
            ledger.charge_area("bravo", 31.0, limit_km2=100.0, window_seconds=DAY, now=NOW)
        assert refused.value.remaining == pytest.approx(30.0)
        assert refused.value.resets_at == WINDOW_START + DAY
        assert refused.value.status is Status.RESOURCE_EXHAUSTED
        assert ledger.spent("bravo", WINDOW_START) == 70.0


def test_peers_have_separate_budgets(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        ledger.charge_area("bravo", 100.0, limit_km2=100.0, window_seconds=DAY, now=NOW)
        ledger.charge_area("charlie", 100.0, limit_km2=100.0, window_seconds=DAY, now=NOW)
        assert ledger.spent("charlie", WINDOW_START) == 100.0


def test_spending_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        ledger.charge_area("bravo", 90.0, limit_km2=100.0, window_seconds=DAY, now=NOW)
    with Ledger(path) as reopened:
        assert reopened.spent("bravo", WINDOW_START) == 90.0
        with pytest.raises(BudgetExhausted):
            reopened.charge_area("bravo", 20.0, limit_km2=100.0, window_seconds=DAY, now=NOW + 1)


def test_the_next_window_starts_from_zero(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        ledger.charge_area("bravo", 100.0, limit_km2=100.0, window_seconds=DAY, now=NOW)
        with pytest.raises(BudgetExhausted):
            ledger.charge_area("bravo", 1.0, limit_km2=100.0, window_seconds=DAY, now=NOW)
        later = ledger.charge_area(
            "bravo", 100.0, limit_km2=100.0, window_seconds=DAY, now=WINDOW_START + DAY
        )
        assert later.spent_before == 0.0
        assert later.window.start == WINDOW_START + DAY
        assert ledger.spent("bravo", WINDOW_START) == 100.0


def test_bad_charges_are_refused(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        with pytest.raises(InputError):
            ledger.charge_area("bravo", -1.0, limit_km2=100.0, window_seconds=DAY, now=NOW)
        with pytest.raises(InputError):
            ledger.charge_area("bravo", 1.0, limit_km2=float("nan"), window_seconds=DAY, now=NOW)
        with pytest.raises(InputError):
            ledger.charge_area("bravo", 1.0, limit_km2=100.0, window_seconds=0, now=NOW)
        with pytest.raises(InputError):
            ledger.charge_area("", 1.0, limit_km2=100.0, window_seconds=DAY, now=NOW)
        assert ledger.spent("bravo", WINDOW_START) == 0.0


def _charge_repeatedly(path: str, attempts: int) -> int:
    """Worker: try ``attempts`` charges of 1 km² against a 50 km² limit; count approvals."""
    approved = 0
    with Ledger(Path(path)) as ledger:
        for _ in range(attempts):
            try:
                ledger.charge_area("bravo", 1.0, limit_km2=50.0, window_seconds=DAY, now=NOW)
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
        assert ledger.spent("bravo", WINDOW_START) == 50.0


def test_threads_sharing_one_ledger_never_overspend(tmp_path: Path) -> None:
    approved: list[int] = []
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:

        def worker() -> None:
            for _ in range(20):
                try:
                    ledger.charge_area("bravo", 1.0, limit_km2=50.0, window_seconds=DAY, now=NOW)
                except BudgetExhausted:
                    continue
                approved.append(1)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(approved) == 50
        assert ledger.spent("bravo", WINDOW_START) == 50.0


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
        assert ledger.spent("bravo", WINDOW_START) == 50.0


def test_mutual_checks_are_counted_per_kind_and_window(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        for _ in range(2):
            ledger.charge_count("bravo", "mutual", limit=2, window_seconds=DAY, now=NOW)
        with pytest.raises(BudgetExhausted, match="used 2 of its 2 mutual checks") as refused:
            ledger.charge_count("bravo", "mutual", limit=2, window_seconds=DAY, now=NOW)
        assert refused.value.resets_at == WINDOW_START + DAY
        assert ledger.used("bravo", "mutual", WINDOW_START) == 2
        ledger.charge_count("bravo", "other", limit=2, window_seconds=DAY, now=NOW)
        ledger.charge_count("bravo", "mutual", limit=2, window_seconds=DAY, now=NOW + DAY)
        assert ledger.used("bravo", "mutual", WINDOW_START + DAY) == 1


def test_a_session_id_can_be_claimed_once_per_peer(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    session = bytes(range(16))
    with Ledger(path) as ledger:
        ledger.claim_session("bravo", session, NOW)
        with pytest.raises(RemoteProtocolError, match="already used") as reused:
            ledger.claim_session("bravo", session, NOW + 1)
        assert reused.value.status is Status.ALREADY_EXISTS
        ledger.claim_session("charlie", session, NOW)
    with Ledger(path) as reopened, pytest.raises(RemoteProtocolError) as again:
        reopened.claim_session("bravo", session, NOW + 2)
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
                ledger.claim_session("bravo", b"s" * 32, NOW)
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
                ledger.claim_session("bravo", bad, NOW)
            assert refused.value.status is Status.INVALID_ARGUMENT


def test_pruning_forgets_only_old_sessions(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        ledger.claim_session("bravo", bytes(16), NOW - 10 * DAY)
        ledger.claim_session("bravo", bytes(17), NOW)
        assert ledger.prune_sessions(NOW - DAY) == 1
        ledger.claim_session("bravo", bytes(16), NOW)
        with pytest.raises(RemoteProtocolError):
            ledger.claim_session("bravo", bytes(17), NOW)


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
