"""Key rotation over real peers: a forged hand-over is refused, a real one keeps budgets and audit.

A node hands its identity over to new keys with a statement its old signing key
signs (``hexpsi rotate``). A peer accepts the new identity on that statement
alone, so the statement is the attack surface: whoever forges one re-pins the
peer to keys of their own. The attacks here: a statement signed by another key
naming the pinned one as old, a statement consistent in itself but from keys
never pinned, both handed to the operator (``peer update --rotation``) and both
presented over the wire by a thief who stole the node's TLS key but not its
signing key and serves as the node. Each is refused, the peer stays pinned to
the old identity and keeps working with the real node. Then real rotations of
alpha: a TLS rotation handed over by statement, a signing-key rotation followed
automatically from the descriptor; bravo's checks keep working, alpha's ledger
counts bravo's spending across the rotation in one window, bravo's own rotation
leaves it one budget at alpha, and alpha's audit log verifies as one chain from
its first key. Real gRPC over mutual TLS on loopback.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import h3.api.basic_int as h3
import pytest
from nacl.signing import SigningKey

from hexpsi.protocol.audit import ROTATION_KIND
from hexpsi.protocol.errors import HexpsiError
from hexpsi.protocol.geo.shapes import Circle, Feature
from hexpsi.protocol.geo.zone import StrikeZone
from hexpsi.protocol.rotation import ACCEPTANCE_LABEL, Rotation, SignedRotation
from hexpsi.server.cli.main import main
from hexpsi.server.clients.check import run_check
from hexpsi.server.node import tls
from hexpsi.server.node.descriptors import Equivocation, equivocations
from hexpsi.server.node.directory import Node
from hexpsi.server.node.peer_rotations import PEER_ROTATION_AUDIT_KIND
from hexpsi.server.services.check import CheckServicer
from tests.security.hostile_helpers import (
    PROPOSER,
    PROTECTED,
    RESPONDER,
    STRIKES,
    Pair,
    audit_kinds,
    make_epoch,
    make_pair,
    serving,
)
from tests.server.conftest import CENTER

STRIKE = STRIKES["direct"]
GARRISON_ZONE = StrikeZone((Feature("garrison", (Circle(h3.cell_to_latlng(CENTER), 1000.0),)),))


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    return make_pair(tmp_path)


def forge(
    victim: Node, *, signer: SigningKey, new_key: SigningKey, names_pinned_key: bool
) -> SignedRotation:
    """A statement handing ``victim`` over to ``new_key``, signed by ``signer``.

    It names as old either the victim's pinned key (and so does not verify: the signer
    is not the victim) or the signer's own (consistent in itself: an outsider's). The
    certificate stays the victim's, as a thief of its TLS key would keep it.
    """
    der = tls.certificate_der(tls.load_certificate(victim.tls_certificate_pem))
    fingerprint = bytes.fromhex(victim.certificate_sha256)
    old_key = victim.signing_key.verify_key if names_pinned_key else signer.verify_key
    rotation = Rotation(
        node=victim.name,
        sequence=1,
        rotated_at=time.time(),
        old_signing_key=bytes(old_key),
        new_signing_key=bytes(new_key.verify_key),
        old_certificate_sha256=fingerprint,
        new_certificate_sha256=fingerprint,
        new_certificate=der,
    )
    encoded = rotation.encode()
    return SignedRotation(
        rotation,
        encoded,
        signer.sign(encoded).signature,
        new_key.sign(ACCEPTANCE_LABEL + encoded).signature,
    )


def pinned_state(node: Node) -> dict[str, bytes]:
    """Every peer file of ``node``, byte for byte."""
    return {path.name: path.read_bytes() for path in (node.directory / "peers").iterdir()}


def spent(responder: Node, peer: str) -> float:
    with responder.open_ledger() as ledger:
        window = responder.peer(peer).window_seconds
        return ledger.spent(peer, now=time.time(), window_seconds=window)


async def test_a_forged_hand_over_is_refused_and_the_old_identity_keeps_working(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Handed to bravo's operator: a statement naming alpha's pinned key as old but signed
    by the forger's key, and one consistent in itself, from the forger's own key. Both are
    refused in one line, nothing changes, and bravo's next check with alpha works.

    Checked to fail without the protection: with ``SignedRotation.verify`` returning at
    once, the first statement was applied and bravo re-pinned alpha to the forger's key
    (the command exited 0 and the check against the real alpha then failed).
    """
    forger = SigningKey.generate()
    wrong_signer = forge(pair.responder, signer=forger, new_key=forger, names_pinned_key=True)
    outsider = forge(
        pair.responder, signer=forger, new_key=SigningKey.generate(), names_pinned_key=False
    )
    before = pinned_state(pair.proposer)
    for name, statement, reason in (
        ("wrong-signer.json", wrong_signer, "not signed by the old signing key it names"),
        ("outsider.json", outsider, "not from the one pinned for alpha"),
    ):
        path = tmp_path / name
        path.write_bytes(statement.to_json())
        capsys.readouterr()
        argv = ["peer", "update", str(pair.proposer.directory), RESPONDER, "--rotation", str(path)]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert reason in err, err
        assert err.count("\n") == 1
    assert pinned_state(pair.proposer) == before
    assert PEER_ROTATION_AUDIT_KIND not in audit_kinds(pair.proposer)
    async with serving(pair.responder):
        report = await run_check(Node(pair.proposer.directory), RESPONDER, STRIKE)
    assert report.result.conflict


def presenting(statements: list[SignedRotation]) -> type[CheckServicer]:
    """The check service of a node that presents ``statements`` with its descriptor."""

    class Presenting(CheckServicer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.rotations = [statement.signed_message for statement in statements]

    return Presenting


def impostor(pair: Pair) -> tuple[Node, SigningKey]:
    """alpha as served by a thief holding its TLS key and certificate but not its signing
    key: the same name, address and certificate, a signing key of its own, its own epoch."""
    directory = pair.root / "impostor"
    shutil.copytree(pair.responder.directory, directory)
    shutil.rmtree(directory / "epochs")
    (directory / "audit.sqlite3").unlink(missing_ok=True)
    key = SigningKey.generate()
    (directory / "signing.key").write_bytes(bytes(key))
    node = Node(directory)
    make_epoch(node)
    return Node(directory), key


@pytest.mark.parametrize("forgery", ["wrong signer", "outsider"])
async def test_a_thief_of_the_tls_key_cannot_rotate_the_identity_over_the_wire(
    pair: Pair, forgery: str
) -> None:
    """The thief passes bravo's TLS pin (it has alpha's TLS key) and presents a statement
    handing alpha over to its own signing key. bravo refuses the descriptor, keeps no
    result, does not re-pin, and still checks against the real alpha afterwards.

    Checked to fail without the protection: with ``SignedRotation.verify`` returning at
    once, the wrong-signer statement re-pinned alpha to the thief's key and the check
    against the thief completed; with the comparison with the pinned signing key taken
    out of ``follow`` and ``check_hands_over`` (``protocol.rotation``), so did the
    outsider's.
    """
    thief, key = impostor(pair)
    if forgery == "wrong signer":
        statement = forge(pair.responder, signer=key, new_key=key, names_pinned_key=True)
        refusal = "presents a rotation statement that does not verify"
    else:
        other = SigningKey.generate()
        statement = forge(pair.responder, signer=other, new_key=key, names_pinned_key=False)
        refusal = "epoch descriptor signature does not verify"
    before = pinned_state(pair.proposer)
    async with serving(thief, servicer=presenting([statement])):
        with pytest.raises(HexpsiError, match=refusal):
            await run_check(Node(pair.proposer.directory), RESPONDER, STRIKE)
    assert pinned_state(pair.proposer) == before
    assert PEER_ROTATION_AUDIT_KIND not in audit_kinds(pair.proposer)
    assert not (pair.proposer.directory / "checks").exists()
    async with serving(pair.responder):
        report = await run_check(Node(pair.proposer.directory), RESPONDER, STRIKE)
    assert report.result.conflict


async def test_a_tls_rotation_is_handed_over_by_statement_and_everything_carries_on(
    pair: Pair, tmp_path: Path
) -> None:
    """alpha rotates its TLS key and certificate. Until bravo applies the statement it
    cannot reach alpha at all (its TLS pin no longer matches); after ``peer update
    --rotation`` its checks work, alpha's ledger counts both checks in bravo's one window,
    and alpha's audit log verifies as one chain with the rotation in it.

    What it guards against: before rotations, new keys meant a new node directory, which
    started alpha's ledger (bravo's budget) and its audit chain afresh.
    """
    alpha_dir, bravo_dir = pair.responder.directory, pair.proposer.directory
    async with serving(pair.responder):
        first = await run_check(pair.proposer, RESPONDER, STRIKE)
    statement = tmp_path / "alpha-rotation.json"
    assert main(["rotate", str(alpha_dir), "--tls", "-o", str(statement)]) == 0
    alpha = Node(alpha_dir)
    before = pinned_state(pair.proposer)
    async with serving(alpha):
        with pytest.raises(HexpsiError, match="unreachable"):
            await run_check(Node(bravo_dir), RESPONDER, STRIKE)
        assert pinned_state(Node(bravo_dir)) == before
        argv = ["peer", "update", str(bravo_dir), RESPONDER, "--rotation", str(statement)]
        assert main(argv) == 0
        second = await run_check(Node(bravo_dir), RESPONDER, STRIKE)
    assert first.result.conflict
    assert second.result.conflict
    assert spent(alpha, PROPOSER) == pytest.approx(first.area_km2 + second.area_km2)
    kinds = audit_kinds(alpha)
    assert kinds == ["evaluate", ROTATION_KIND, "evaluate"]
    assert main(["audit", str(alpha_dir), "--verify"]) == 0


async def test_a_signing_rotation_is_followed_from_the_descriptor(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """alpha rotates its signing key only; bravo's next check finds a descriptor its pinned
    key does not verify, follows alpha's statement to the new key, re-pins, records it,
    and the check works: same epoch (re-signed), evidence verifying with alpha's new
    identity, both checks in one window of alpha's ledger, alpha's audit one chain.

    Checked to fail without the protection it relies on (the statement): with the
    rotations left out of the descriptor response, bravo's check failed with
    "epoch descriptor signature does not verify".
    """
    alpha_dir, bravo_dir = pair.responder.directory, pair.proposer.directory
    async with serving(pair.responder):
        first = await run_check(pair.proposer, RESPONDER, STRIKE)
    assert main(["rotate", str(alpha_dir), "--signing", "-o", str(tmp_path / "r.json")]) == 0
    alpha = Node(alpha_dir)
    async with serving(alpha):
        second = await run_check(Node(bravo_dir), RESPONDER, GARRISON_ZONE)
    assert second.result.conflict
    assert second.descriptor.encoded == first.descriptor.encoded
    bravo = Node(bravo_dir)
    pinned = bravo.peer(RESPONDER)
    assert pinned.identity == alpha.own_identity()
    assert [s.rotation.sequence for s in pinned.rotations] == [1]
    with bravo.open_audit_log() as audit:
        [entry] = [e for e in audit.entries() if e.kind == PEER_ROTATION_AUDIT_KIND]
    assert entry.details_object()["via"] == "descriptor"
    identity = tmp_path / "alpha-now.json"
    identity.write_bytes(alpha.own_identity().to_bytes())
    evidence = second.directory / "evidence.json"
    capsys.readouterr()
    assert main(["evidence", "verify", str(evidence), "--responder", str(identity)]) == 0
    assert spent(alpha, PROPOSER) == pytest.approx(first.area_km2 + second.area_km2)
    assert audit_kinds(alpha) == ["evaluate", ROTATION_KIND, "evaluate"]
    assert main(["audit", str(alpha_dir), "--verify"]) == 0


async def test_a_peer_that_rotates_keeps_its_one_budget(pair: Pair, tmp_path: Path) -> None:
    """bravo spends at alpha, rotates both its keys, alpha re-pins it by statement and sets
    its budget to 1.5 checks' worth: bravo's next check is refused, because its spending
    from before the rotation counts in the same window. Budgets are kept by peer name,
    and a rotation keeps the name (re-pinning by ``peer remove`` and ``peer add`` would
    too, but would need a new fingerprint comparison out of band; the statement is what
    vouches for the new keys here).
    """
    alpha_dir, bravo_dir = pair.responder.directory, pair.proposer.directory
    async with serving(pair.responder):
        first = await run_check(pair.proposer, RESPONDER, STRIKE)
    statement = tmp_path / "bravo-rotation.json"
    assert main(["rotate", str(bravo_dir), "-o", str(statement)]) == 0
    budget = f"{1.5 * first.area_km2:.6f}"
    argv = ["peer", "update", str(alpha_dir), PROPOSER, "--rotation", str(statement)]
    assert main([*argv, "--budget-km2", budget]) == 0
    alpha = Node(alpha_dir)
    assert alpha.peer(PROPOSER).identity == Node(bravo_dir).own_identity()
    async with serving(alpha):
        with pytest.raises(HexpsiError, match="bravo's area budget"):
            await run_check(Node(bravo_dir), RESPONDER, STRIKE)
    assert spent(alpha, PROPOSER) == pytest.approx(first.area_km2)


async def test_a_rotation_does_not_hide_an_equivocation(pair: Pair, tmp_path: Path) -> None:
    """After bravo accepted alpha's epoch 1 under alpha's first key, a fork of the rotated
    alpha signs another map as epoch 1 with the new key. bravo follows the rotation (the
    statement is genuine) and then refuses the second descriptor as an equivocation: the
    keys of one chain of rotations are one identity.

    Checked to fail without the protection: with ``earlier_keys`` not passed to
    ``AcceptedDescriptors.accept``, the descriptor kept under the old key was replaced and
    the check against the fork came back CLEAR.
    """
    alpha_dir = pair.responder.directory
    async with serving(pair.responder):
        first = await run_check(pair.proposer, RESPONDER, STRIKE)
    assert first.result.conflict
    assert main(["rotate", str(alpha_dir), "--signing", "-o", str(tmp_path / "r.json")]) == 0
    fork_dir = pair.root / "alpha-fork"
    shutil.copytree(alpha_dir, fork_dir)
    shutil.rmtree(fork_dir / "epochs")
    fork = Node(fork_dir)
    assert make_epoch(fork, PROTECTED - STRIKE) == 1
    async with serving(Node(fork_dir)):
        with pytest.raises(Equivocation):
            await run_check(Node(pair.proposer.directory), RESPONDER, STRIKE)
    [record] = equivocations(pair.proposer.directory)
    assert record.sequence == 1
