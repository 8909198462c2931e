"""Rotating a node's keys: all or nothing on disk, old keys kept, one audit chain, epochs kept.

A rotation is staged, decided by one rename and finished idempotently; the
crash tests stop it at each step and load the node again, which must see the
node either before the rotation or after it, never a mix.
"""

from __future__ import annotations

import json
import os
import stat
import time
import types
from pathlib import Path

import pytest

from hexpsi.protocol.audit import ROTATION_KIND
from hexpsi.protocol.epoch.descriptor import SignedDescriptor
from hexpsi.protocol.errors import FailedPrecondition, InputError
from hexpsi.protocol.rotation import SignedRotation
from hexpsi.server.node import rotations
from hexpsi.server.node.directory import Node, init_node
from hexpsi.server.node.epochs import EpochStore
from hexpsi.server.node.rotate import rotate_keys
from tests.server.conftest import PROTECTED

NOW = time.time()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def make(tmp_path: Path, *, epoch: bool = True) -> Node:
    node = init_node(tmp_path / "alpha", name="alpha", listen="127.0.0.1:7443", now=NOW)
    if epoch:
        EpochStore(node).create(PROTECTED, now=NOW, workers=1).blocks.close()
    with node.open_audit_log() as audit:
        audit.append("evaluate", "bravo", {"area_km2": 1.5}, NOW)
    return Node(node.directory)


def key_files(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in ("signing.key", "tls.key", "tls.crt")}


def test_a_full_rotation_switches_every_key_and_keeps_the_old_ones(tmp_path: Path) -> None:
    node = make(tmp_path)
    before = key_files(node.directory)
    statement = rotate_keys(node, signing=True, tls_identity=True, now=NOW + 60)
    after = Node(node.directory)
    rotation = statement.rotation
    assert rotation.sequence == 1
    assert rotation.old_signing_key == bytes(node.signing_key.verify_key)
    assert rotation.new_signing_key == bytes(after.signing_key.verify_key)
    assert rotation.new_certificate_sha256.hex() == after.certificate_sha256
    assert after.own_identity().certificate_sha256 != node.certificate_sha256
    assert all(key_files(node.directory)[name] != data for name, data in before.items())
    kept = node.directory / "rotated" / "1"
    assert mode(kept) == 0o700
    for name, data in before.items():
        assert (kept / name).read_bytes() == data
        assert mode(kept / name) == 0o600
    for name in ("signing.key", "tls.key"):
        assert mode(node.directory / name) == 0o600
    assert after.rotations() == [statement]
    assert SignedRotation.from_json((node.directory / "rotations" / "1.json").read_bytes()) == (
        statement
    )
    assert not (node.directory / "rotating").exists()
    assert not list(node.directory.glob(".rotating-*"))


@pytest.mark.parametrize(("signing", "tls"), [(True, False), (False, True)])
def test_a_partial_rotation_replaces_only_what_it_names(
    tmp_path: Path, signing: bool, tls: bool
) -> None:
    node = make(tmp_path)
    before = key_files(node.directory)
    statement = rotate_keys(node, signing=signing, tls_identity=tls, now=NOW + 60)
    after = key_files(node.directory)
    assert (after["signing.key"] != before["signing.key"]) is signing
    assert (after["tls.crt"] != before["tls.crt"]) is tls
    assert (after["tls.key"] != before["tls.key"]) is tls
    kept = sorted(path.name for path in (node.directory / "rotated" / "1").iterdir())
    assert kept == (["signing.key"] if signing else ["tls.crt", "tls.key"])
    assert statement.rotation.changes_signing_key is signing
    assert statement.rotation.changes_certificate is tls


def test_the_epoch_being_served_stays_the_same_epoch_under_the_new_key(tmp_path: Path) -> None:
    node = make(tmp_path)
    old = EpochStore(node).current()
    assert old is not None
    old.blocks.close()
    rotate_keys(node, signing=True, tls_identity=False, now=NOW + 60)
    after = Node(node.directory)
    epoch = EpochStore(after).current()
    assert epoch is not None
    epoch.blocks.close()
    assert epoch.descriptor.encoded == old.descriptor.encoded
    assert epoch.descriptor.signature != old.descriptor.signature
    SignedDescriptor.verify_without_freshness(
        epoch.descriptor.encoded, epoch.descriptor.signature, after.signing_key.verify_key
    )


def test_the_audit_log_is_one_chain_through_rotations(tmp_path: Path) -> None:
    node = make(tmp_path)
    first_key = node.signing_key.verify_key
    for when, (signing, tls) in enumerate([(True, True), (False, True), (True, False)]):
        rotate_keys(Node(node.directory), signing=signing, tls_identity=tls, now=NOW + when)
        with Node(node.directory).open_audit_log() as audit:
            audit.append("evaluate", "bravo", {"area_km2": 2.0 + when}, NOW + when)
    after = Node(node.directory)
    keys = after.signing_keys()
    assert len(keys) == 3
    assert bytes(keys[0]) == bytes(first_key)
    assert bytes(keys[-1]) == bytes(after.signing_key.verify_key)
    with after.open_audit_log() as audit:
        assert audit.verify(keys) == 7
        assert audit.verify(first_key) == 7
        kinds = [entry.kind for entry in audit.entries()]
        assert kinds == ["evaluate", *[ROTATION_KIND, "evaluate"] * 3]
        assert audit.rotation_entry(2) is not None
        with pytest.raises(Exception, match="audit entry 1"):
            audit.verify()


def test_a_process_still_holding_the_old_key_cannot_write_to_the_log(tmp_path: Path) -> None:
    """A server started before the rotation keeps the old key in memory; its next audit
    entry would break the chain, so it is refused until the server is restarted."""
    stale = make(tmp_path)
    rotate_keys(stale, signing=True, tls_identity=False, now=NOW + 60)
    with stale.open_audit_log() as audit, pytest.raises(FailedPrecondition, match="rotated"):
        audit.append("evaluate", "bravo", {"area_km2": 1.0}, NOW + 61)
    with Node(stale.directory).open_audit_log() as audit:
        audit.append("evaluate", "bravo", {"area_km2": 1.0}, NOW + 61)
        assert audit.verify(Node(stale.directory).signing_keys()) == 3


def test_a_rotation_interrupted_before_it_was_decided_leaves_the_old_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = make(tmp_path)
    before = key_files(node.directory)
    real_rename = os.rename

    def crash(source: object, target: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(rotations, "os", types.SimpleNamespace(rename=crash, replace=os.replace))
    with pytest.raises(KeyboardInterrupt):
        rotate_keys(node, signing=True, tls_identity=True, now=NOW + 60)
    monkeypatch.setattr(
        rotations, "os", types.SimpleNamespace(rename=real_rename, replace=os.replace)
    )
    assert key_files(node.directory) == before
    assert not (node.directory / "rotating").exists()
    assert Node(node.directory).rotations() == []
    # Had the process died instead, its staging directory would be left: the next rotation
    # removes it and goes ahead.
    (node.directory / ".rotating-deadbeef").mkdir(mode=0o700)
    rotate_keys(Node(node.directory), signing=True, tls_identity=False, now=NOW + 61)
    assert not list(node.directory.glob(".rotating-*"))
    assert len(Node(node.directory).rotations()) == 1


@pytest.mark.parametrize("moves_before_crash", [0, 1, 2, 3])
def test_a_decided_rotation_is_finished_by_the_next_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moves_before_crash: int
) -> None:
    """Crash after the decision, with 0..3 of the replacement files (key, TLS key,
    certificate, epoch signature) moved into place: loading the node finishes the job."""
    node = make(tmp_path)
    done = 0

    def replace(source: object, target: object) -> None:
        nonlocal done
        if done == moves_before_crash:
            raise KeyboardInterrupt
        done += 1
        os.replace(source, target)  # type: ignore[arg-type]

    monkeypatch.setattr(rotations, "os", types.SimpleNamespace(rename=os.rename, replace=replace))
    with pytest.raises(KeyboardInterrupt):
        rotate_keys(node, signing=True, tls_identity=True, now=NOW + 60)
    monkeypatch.undo()
    assert (node.directory / "rotating").is_dir()
    after = Node(node.directory)
    assert not (node.directory / "rotating").exists()
    [statement] = after.rotations()
    assert statement.rotation.new_signing_key == bytes(after.signing_key.verify_key)
    assert statement.rotation.new_certificate_sha256.hex() == after.certificate_sha256
    with after.open_audit_log() as audit:
        assert audit.verify(after.signing_keys()) == 2
    epoch = EpochStore(after).current()
    assert epoch is not None
    epoch.blocks.close()


def test_damaged_rotation_records_are_refused_in_one_error(tmp_path: Path) -> None:
    node = make(tmp_path, epoch=False)
    rotate_keys(node, signing=True, tls_identity=True, now=NOW + 60)
    path = node.directory / "rotations" / "1.json"
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, "node": "bravo"}))
    with pytest.raises(InputError, match="does not match the signed statement"):
        Node(node.directory).rotations()
    path.write_text(json.dumps(document))
    (node.directory / "rotations" / "3.json").write_text(json.dumps(document))
    with pytest.raises(InputError, match="rotation 2 is missing"):
        Node(node.directory).rotations()


def test_rotation_records_that_do_not_end_at_the_keys_are_refused(tmp_path: Path) -> None:
    node = make(tmp_path, epoch=False)
    rotate_keys(node, signing=True, tls_identity=False, now=NOW + 60)
    (node.directory / "signing.key").write_bytes(
        (node.directory / "rotated/1/signing.key").read_bytes()
    )
    with pytest.raises(InputError, match="not the current one"):
        Node(node.directory).rotations()


def test_rotating_needs_something_to_rotate(tmp_path: Path) -> None:
    node = make(tmp_path, epoch=False)
    with pytest.raises(InputError, match="must change"):
        rotate_keys(node, signing=False, tls_identity=False, now=NOW)
