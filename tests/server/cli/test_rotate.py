"""``hexpsi rotate``, ``peer update --rotation``, ``audit --verify`` through rotations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hexpsi.protocol.rotation import SignedRotation
from hexpsi.server.cli.main import main
from hexpsi.server.node.directory import Node, load_identity


def init(tmp_path: Path, name: str, port: int) -> Path:
    directory = tmp_path / name
    assert main(["init", str(directory), "--name", name, "--listen", f"127.0.0.1:{port}"]) == 0
    return directory


@pytest.fixture
def nodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """alpha and bravo, each pinning the other."""
    alpha, bravo = init(tmp_path, "alpha", 7001), init(tmp_path, "bravo", 7002)
    for node, other in ((alpha, bravo), (bravo, alpha)):
        identity = tmp_path / f"{other.name}.json"
        assert main(["identity", str(other), "-o", str(identity)]) == 0
        assert main(["peer", "add", str(node), str(identity)]) == 0
    capsys.readouterr()
    return alpha, bravo


def test_rotate_writes_the_statement_and_the_node_takes_its_new_identity(
    nodes: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alpha, _ = nodes
    before = Node(alpha).own_identity()
    out = tmp_path / "rotation.json"
    assert main(["rotate", str(alpha), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    statement = SignedRotation.from_json(out.read_bytes())
    assert statement.rotation.what == "signing key and TLS certificate"
    assert statement.rotation.old_signing_key == before.signing_public_key
    assert "rotation 1" in err
    assert "hexpsi peer update" in err
    assert main(["identity", str(alpha)]) == 0
    now = load_identity(capsys.readouterr().out.encode())
    assert now.signing_public_key == statement.rotation.new_signing_key
    assert now.certificate_sha256 == statement.rotation.new_certificate_sha256.hex()
    assert (alpha / "rotations" / "1.json").read_bytes() == out.read_bytes()


def test_rotate_prints_the_statement_without_an_output_file(
    nodes: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    alpha, _ = nodes
    assert main(["rotate", str(alpha), "--signing"]) == 0
    statement = SignedRotation.from_json(capsys.readouterr().out.encode())
    assert statement.rotation.what == "signing key"


def test_a_peer_follows_two_rotations_by_hand_and_refuses_them_again(
    nodes: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alpha, bravo = nodes
    first, second = tmp_path / "r1.json", tmp_path / "r2.json"
    assert main(["rotate", str(alpha), "--tls", "-o", str(first)]) == 0
    assert main(["rotate", str(alpha), "--signing", "-o", str(second)]) == 0
    capsys.readouterr()
    argv = ["peer", "update", str(bravo), "alpha", "--rotation", str(second)]
    assert main([*argv, "--rotation", str(first), "--budget-km2", "12"]) == 0
    out = capsys.readouterr().out
    assert "applied rotation 1 of alpha (TLS certificate)" in out
    assert "applied rotation 2 of alpha (signing key)" in out
    pinned = Node(bravo).peer("alpha")
    assert pinned.identity.signing_public_key == Node(alpha).own_identity().signing_public_key
    assert pinned.certificate_sha256 == Node(alpha).certificate_sha256
    assert pinned.budget_km2 == 12
    assert main(["peer", "list", str(bravo), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["rotations"] == [1, 2]
    peer_file = bravo / "peers" / "alpha.json"
    kept = peer_file.read_bytes()
    assert main(argv) == 1
    assert "already applied: a replayed statement" in capsys.readouterr().err
    assert peer_file.read_bytes() == kept
    with Node(bravo).open_audit_log() as audit:
        entries = audit.entries()
    kinds = [
        (entry.kind, entry.peer, entry.details_object()["via"])
        for entry in entries
        if entry.kind == "peer-rotation"
    ]
    assert kinds == [("peer-rotation", "alpha", "statement")] * 2
    assert [e.kind for e in entries if e.kind != "peer-rotation"] == ["peer-pinned", "peer-updated"]


def test_audit_verify_follows_rotations_from_the_first_key(
    nodes: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    alpha, _ = nodes
    first = Node(alpha).own_identity().signing_public_key.hex()
    with Node(alpha).open_audit_log() as audit:
        audit.append("evaluate", "bravo", {"area_km2": 1.0}, 1000.0)
    assert main(["rotate", str(alpha), "-o", "-"]) == 0
    assert main(["rotate", str(alpha), "--signing"]) == 0
    with Node(alpha).open_audit_log() as audit:
        audit.append("evaluate", "bravo", {"area_km2": 2.0}, 2000.0)
    current = Node(alpha).own_identity().signing_public_key.hex()
    capsys.readouterr()
    # 5: the peer-pinned entry of the fixture, two evaluations, two rotations.
    assert main(["audit", str(alpha), "--verify"]) == 0
    assert "5 entries, hash chain, signatures and head intact, through 2 key rotations" in (
        capsys.readouterr().err
    )
    assert main(["audit", str(alpha), "--verify", "--signing-key", first]) == 0
    capsys.readouterr()
    assert main(["audit", str(alpha), "--verify", "--signing-key", current]) == 1
    err = capsys.readouterr().err
    assert "AUDIT LOG FAILED VERIFICATION at entry 1" in err
    assert err.count("\n") == 1
