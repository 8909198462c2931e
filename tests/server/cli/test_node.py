"""``hexpsi init``, ``identity``, ``peer`` and ``audit`` run in-process through ``main``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from hexpsi.server.cli.main import main
from hexpsi.server.node.directory import Node, load_identity


def init(tmp_path: Path, name: str, port: int, *extra: str) -> Path:
    directory = tmp_path / name
    code = main(["init", str(directory), "--name", name, "--listen", f"127.0.0.1:{port}", *extra])
    assert code == 0
    return directory


def test_init_creates_a_node_and_says_what_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = init(tmp_path, "alpha", 7001, "--res", "8", "--res-min", "4")
    out = capsys.readouterr().out
    node = Node(directory)
    assert (node.config.res, node.config.res_min) == (8, 4)
    assert node.certificate_sha256 in out
    assert "hexpsi identity" in out


def test_init_refuses_an_existing_node_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = init(tmp_path, "alpha", 7001)
    capsys.readouterr()
    code = main(["init", str(directory), "--name", "alpha", "--listen", "127.0.0.1:7001"])
    err = capsys.readouterr().err
    assert code == 1
    assert "already holds a hexpsi node" in err
    assert err.count("\n") == 1


def test_init_reports_bad_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["init", str(tmp_path / "a"), "--name", "a", "--listen", "h:1", "--res", "20"])
    assert code == 1
    assert "res must be an integer 0..15" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_identity_goes_to_stdout_or_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = init(tmp_path, "alpha", 7001)
    capsys.readouterr()
    assert main(["identity", str(directory)]) == 0
    captured = capsys.readouterr()
    printed = load_identity(captured.out.encode())
    assert printed == Node(directory).own_identity()
    assert printed.certificate_sha256 in captured.err
    out_file = tmp_path / "alpha.json"
    assert main(["identity", str(directory), "-o", str(out_file)]) == 0
    assert load_identity(out_file.read_bytes()) == printed


def test_peer_add_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alpha = init(tmp_path, "alpha", 7001)
    bravo = init(tmp_path, "bravo", 7002)
    main(["identity", str(bravo), "-o", str(tmp_path / "bravo.json")])
    capsys.readouterr()
    code = main(
        [
            "peer",
            "add",
            str(alpha),
            str(tmp_path / "bravo.json"),
            "--address",
            "10.1.2.3:7002",
            "--budget-km2",
            "250",
            "--window-hours",
            "12",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    fingerprint = Node(bravo).certificate_sha256
    assert fingerprint in out
    peer = Node(alpha).peer("bravo")
    assert (peer.address, peer.budget_km2, peer.window_hours) == ("10.1.2.3:7002", 250.0, 12.0)

    assert main(["peer", "list", str(alpha)]) == 0
    line = capsys.readouterr().out
    assert "bravo" in line
    assert "250 km2/12 h" in line
    assert main(["peer", "list", str(alpha), "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["certificate_sha256"] == fingerprint
    assert listed["overrides"] == ["address", "budget_km2", "window_hours"]


def test_peer_add_refuses_a_repin_and_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alpha = init(tmp_path, "alpha", 7001)
    bravo = init(tmp_path, "bravo", 7002)
    identity = tmp_path / "bravo.json"
    main(["identity", str(bravo), "-o", str(identity)])
    assert main(["peer", "add", str(alpha), str(identity)]) == 0
    capsys.readouterr()
    assert main(["peer", "add", str(alpha), str(identity)]) == 1
    assert "already pinned" in capsys.readouterr().err
    assert main(["peer", "add", str(alpha), str(identity), "--replace"]) == 0
    broken = tmp_path / "broken.json"
    broken.write_text('{"version": 1}')
    capsys.readouterr()
    assert main(["peer", "add", str(alpha), str(broken)]) == 1
    assert "broken.json: identity is missing" in capsys.readouterr().err


def test_peer_list_when_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alpha = init(tmp_path, "alpha", 7001)
    capsys.readouterr()
    assert main(["peer", "list", str(alpha)]) == 0
    assert "no peers pinned" in capsys.readouterr().out


def _log_some(directory: Path) -> None:
    with Node(directory).open_audit_log() as log:
        log.append("evaluate", "bravo", {"area_km2": 12.5, "elements": 64}, 1_750_000_000.0)
        log.append("mutual", "bravo", {"resolution": 7}, 1_750_000_100.0)
        log.append("epoch", "", {"epoch": 3}, 1_750_000_200.0)


def test_audit_lists_and_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alpha = init(tmp_path, "alpha", 7001)
    _log_some(alpha)
    capsys.readouterr()
    assert main(["audit", str(alpha)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert "2025-06-15T15:06:40Z" in lines[0]
    assert "evaluate" in lines[0]
    assert '"area_km2": 12.5' in lines[0]
    assert main(["audit", str(alpha), "--json", "--verify"]) == 0
    captured = capsys.readouterr()
    entries = json.loads(captured.out)
    assert [e["kind"] for e in entries] == ["evaluate", "mutual", "epoch"]
    assert entries[1]["prev_hash"] == entries[0]["hash"]
    assert "verified: 3 entries" in captured.err


def test_audit_of_a_fresh_node_is_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alpha = init(tmp_path, "alpha", 7001)
    capsys.readouterr()
    assert main(["audit", str(alpha), "--verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert not (alpha / "audit.sqlite3").exists()


def test_audit_verify_fails_loudly_on_tampering(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alpha = init(tmp_path, "alpha", 7001)
    _log_some(alpha)
    conn = sqlite3.connect(alpha / "audit.sqlite3", isolation_level=None)
    conn.execute("DROP TRIGGER entries_append_only_update")
    conn.execute("UPDATE entries SET details = 'not json at all' WHERE seq = 2")
    conn.close()
    capsys.readouterr()
    assert main(["audit", str(alpha), "--verify"]) == 1
    captured = capsys.readouterr()
    assert "AUDIT LOG FAILED VERIFICATION at entry 2" in captured.err
    assert captured.out == ""
    # Without --verify the damaged log can still be listed for inspection.
    assert main(["audit", str(alpha)]) == 0
    assert "not json at all" in capsys.readouterr().out


def test_commands_on_a_missing_node_fail_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["identity"], ["peer", "list"], ["audit"]):
        assert main([*argv, str(tmp_path / "nowhere")]) == 1
        assert "not a hexpsi node directory" in capsys.readouterr().err
