"""The stored audit log: survives reopening, refuses edits, and verify catches tampering."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from hexpsi.protocol.audit import ROTATION_KIND, ChainBroken
from hexpsi.protocol.errors import FailedPrecondition, InputError, LocalProtocolError
from hexpsi.protocol.rotation import Rotation, SignedRotation
from hexpsi.server.cli.main import main
from hexpsi.server.node.auditlog import AuditLog
from hexpsi.server.node.directory import init_node

KEY = SigningKey(bytes(range(32)))


def filled_log(path: Path, count: int = 5) -> AuditLog:
    log = AuditLog(path, KEY)
    for seq in range(1, count + 1):
        log.append("evaluate", "bravo", {"area_km2": seq * 2.5, "session": f"s{seq}"}, 1000.0 + seq)
    return log


def raw(path: Path) -> sqlite3.Connection:
    """A direct connection, as someone editing the file would use, with the guards dropped."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER entries_append_only_update")
    conn.execute("DROP TRIGGER entries_append_only_delete")
    return conn


def tamper(path: Path, *statements: str) -> None:
    conn = raw(path)
    for statement in statements:
        conn.execute(statement)
    conn.close()


def test_appended_entries_come_back_in_order_and_verify(tmp_path: Path) -> None:
    with filled_log(tmp_path / "audit.sqlite3") as log:
        entries = log.entries()
        assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
        assert entries[2].details_object() == {"area_km2": 7.5, "session": "s3"}
        assert entries[2].peer == "bravo"
        assert log.verify(KEY.verify_key) == 5


def test_the_chain_continues_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    filled_log(path, 3).close()
    with AuditLog(path, KEY) as log:
        entry = log.append("epoch", "", {"epoch": 7}, 2000.0)
        assert entry.seq == 4
        assert entry.prev_hash == log.entries()[2].hash
        assert log.verify() == 4


def test_an_empty_log_verifies(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.sqlite3", KEY) as log:
        assert log.entries() == []
        assert log.verify() == 0


def test_a_log_verified_with_another_nodes_key_fails(tmp_path: Path) -> None:
    with filled_log(tmp_path / "audit.sqlite3", 2) as log, pytest.raises(ChainBroken):
        log.verify(SigningKey(bytes(32)).verify_key)


def test_the_database_refuses_updates_and_deletes(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    filled_log(path, 2).close()
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE entries SET peer = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM entries WHERE seq = 2")
    conn.close()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("time", 999.0),
        ("kind", "mutual"),
        ("peer", "charlie"),
        ("details", b'{"area_km2":0.0,"session":"s3"}'),
        ("details", '{"area_km2":7.5,"session":"s3"}'),  # same text, stored as TEXT
        ("prev_hash", bytes(32)),
        ("hash", bytes(32)),
        ("signature", bytes(64)),
    ],
)
def test_editing_any_column_is_caught(tmp_path: Path, column: str, value: object) -> None:
    path = tmp_path / "audit.sqlite3"
    filled_log(path).close()
    conn = raw(path)
    conn.execute(f"UPDATE entries SET {column} = ? WHERE seq = 3", (value,))
    conn.close()
    with AuditLog(path, KEY) as log, pytest.raises(ChainBroken) as caught:
        log.verify()
    assert caught.value.seq == 3


def test_deleting_a_middle_entry_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    filled_log(path).close()
    tamper(path, "DELETE FROM entries WHERE seq = 2")
    with AuditLog(path, KEY) as log, pytest.raises(ChainBroken, match="missing") as caught:
        log.verify()
    assert caught.value.seq == 2


def test_deleting_the_newest_entries_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    filled_log(path).close()
    tamper(path, "DELETE FROM entries WHERE seq >= 4")
    with AuditLog(path, KEY) as log, pytest.raises(ChainBroken) as caught:
        log.verify()
    assert caught.value.seq == 4


def test_deleting_the_head_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    filled_log(path).close()
    tamper(path, "DELETE FROM head")
    with AuditLog(path, KEY) as log, pytest.raises(ChainBroken, match="head"):
        log.verify()


def test_truncating_and_rolling_the_head_back_needs_a_head_nobody_has(tmp_path: Path) -> None:
    """Rewriting the head for a shorter log without the key fails its signature."""
    path = tmp_path / "audit.sqlite3"
    filled_log(path).close()
    conn = raw(path)
    (hash3,) = conn.execute("SELECT hash FROM entries WHERE seq = 3").fetchone()
    conn.execute("DELETE FROM entries WHERE seq > 3")
    conn.execute("UPDATE head SET seq = 3, hash = ?", (hash3,))
    conn.close()
    with AuditLog(path, KEY) as log, pytest.raises(ChainBroken, match="head"):
        log.verify()


def test_swapping_two_entries_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    filled_log(path).close()
    tamper(
        path,
        "UPDATE entries SET seq = -2 WHERE seq = 2",
        "UPDATE entries SET seq = 2 WHERE seq = 3",
        "UPDATE entries SET seq = 3 WHERE seq = -2",
    )
    with AuditLog(path, KEY) as log, pytest.raises(ChainBroken) as caught:
        log.verify()
    assert caught.value.seq == 2


def test_a_log_rewritten_with_another_key_is_caught(tmp_path: Path) -> None:
    """Someone who replaces the whole file with a chain of their own cannot sign as the node."""
    path = tmp_path / "audit.sqlite3"
    forged = AuditLog(path, SigningKey(bytes(32)))
    forged.append("evaluate", "bravo", {"area_km2": 1}, 1.0)
    forged.close()
    with AuditLog(path, KEY) as log, pytest.raises(ChainBroken) as caught:
        log.verify()
    assert caught.value.seq == 1


def test_details_that_are_not_json_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.sqlite3", KEY) as log:
        with pytest.raises(InputError):
            log.append("evaluate", "bravo", {"blob": b"\x00"}, 1.0)
        with pytest.raises(InputError):
            log.append("Not A Kind", "bravo", {}, 1.0)
        assert log.entries() == []
        assert log.verify() == 0


def test_concurrent_appenders_keep_one_linear_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    AuditLog(path, KEY).close()
    logs = [AuditLog(path, KEY) for _ in range(4)]
    barrier = threading.Barrier(len(logs))

    def append_many(log: AuditLog, index: int) -> None:
        barrier.wait()
        for n in range(10):
            log.append("evaluate", f"peer-{index}", {"n": n}, float(n))

    threads = [threading.Thread(target=append_many, args=(log, i)) for i, log in enumerate(logs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for log in logs:
        log.close()
    with AuditLog(path, KEY) as log:
        assert log.verify() == 40
        assert sorted(e.peer for e in log.entries()).count("peer-0") == 10


def test_a_file_that_is_not_a_database_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InputError, match=r"audit\.sqlite3"):
        AuditLog(path, KEY)


def test_rows_spliced_in_from_a_restored_copy_fail_at_the_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy of the log taken after entry 2 and later restored goes on differently
    (3', 4'), signed by the node's own key. Someone splices the copy's entry 4' and its
    signed head into the original: every row carries a correct hash and signature and
    the head matches the newest row, so only the link from 4' to the original 3 is
    wrong, and ``hexpsi audit DIR --verify`` says so in one line.

    Checked to fail without the protection: with the ``prev_hash`` comparison removed
    from ``_verify_entry`` in ``hexpsi.protocol.audit``, the spliced log verified and
    the command exited 0.
    """
    node = init_node(tmp_path / "alpha", name="alpha", listen="127.0.0.1:7443", now=1000.0)
    with node.open_audit_log() as log:
        for seq in (1, 2):
            log.append("evaluate", "bravo", {"session": f"s{seq}"}, 1000.0 + seq)
    backup = tmp_path / "backup.sqlite3"
    shutil.copyfile(node.audit_path, backup)
    for path, note in ((node.audit_path, "original"), (backup, "restored")):
        with AuditLog(path, node.signing_key) as log:
            for seq in (3, 4):
                log.append("evaluate", "bravo", {"session": f"{note}-{seq}"}, 1000.0 + seq)
            assert log.verify() == 4
    fork = sqlite3.connect(backup)
    row4 = fork.execute("SELECT * FROM entries WHERE seq = 4").fetchone()
    head = fork.execute("SELECT seq, hash, signature FROM head").fetchone()
    fork.close()
    conn = raw(node.audit_path)
    conn.execute("DELETE FROM entries WHERE seq = 4")
    conn.execute(f"INSERT INTO entries VALUES ({', '.join('?' * len(row4))})", row4)
    conn.execute("UPDATE head SET seq = ?, hash = ?, signature = ?", head)
    conn.close()
    assert main(["audit", str(node.directory), "--verify"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert (
        "AUDIT LOG FAILED VERIFICATION at entry 4: does not link to the previous entry's hash"
        in captured.err
    )


def test_a_rotation_hands_the_log_over_to_the_new_key(tmp_path: Path) -> None:
    """The rotation entry is the old key's, the head and every later entry the new key's;
    the old key can no longer append, and the log verifies from its first key."""
    path = tmp_path / "audit.sqlite3"
    new_key = SigningKey(bytes(range(5, 37)))
    certificate = b"alpha's certificate"
    rotation = Rotation(
        node="alpha",
        sequence=1,
        rotated_at=1010.0,
        old_signing_key=bytes(KEY.verify_key),
        new_signing_key=bytes(new_key.verify_key),
        old_certificate_sha256=hashlib.sha256(certificate).digest(),
        new_certificate_sha256=hashlib.sha256(certificate).digest(),
        new_certificate=certificate,
    )
    statement = SignedRotation.sign(rotation, KEY, new_key)
    with filled_log(path, 2) as old:
        with pytest.raises(LocalProtocolError, match="from this log's key"):
            AuditLog(path, new_key).append_rotation(statement, new_key, 1010.0)
        entry = old.append_rotation(statement, new_key, 1010.0)
        assert entry.kind == ROTATION_KIND
        assert old.rotation_entry(1) == entry
        assert old.rotation_entry(2) is None
        with pytest.raises(FailedPrecondition, match="rotated"):
            old.append("evaluate", "bravo", {"area_km2": 1.0}, 1011.0)
    with AuditLog(path, new_key) as log:
        log.append("evaluate", "bravo", {"area_km2": 1.0}, 1011.0)
        assert log.verify(KEY.verify_key) == 4
        assert log.verify([KEY.verify_key, new_key.verify_key]) == 4
        with pytest.raises(ChainBroken) as caught:
            log.verify()
        assert caught.value.seq == 1
    with AuditLog(path, KEY) as log, pytest.raises(ChainBroken, match="not under this node's"):
        log.verify()
