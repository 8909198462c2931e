"""A responder that signs two maps as one epoch is caught by a proposer that saw both.

The fork: a copy of the responder's node directory (same keys, same certificate,
same address) publishes its own epoch with the same sequence number as the
honest node's, over a map without the garrison the strike hits. A proposer that
already accepted the honest descriptor must refuse the fork's as an
equivocation, in the check and in the mutual check alike: no CLEAR, nothing
stored as a result, and both signed descriptors kept under its node directory,
each verifying with the responder's pinned key. Real peers over mutual TLS on
loopback.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hexpsi.protocol.errors import Status
from hexpsi.server.clients.check import CHECKS_DIR, run_check
from hexpsi.server.clients.mutual import run_mutual
from hexpsi.server.node.descriptors import EQUIVOCATION_AUDIT_KIND, Equivocation, equivocations
from hexpsi.server.node.directory import Node
from tests.security.hostile_helpers import (
    PROTECTED,
    RESPONDER,
    STRIKES,
    Pair,
    audit_kinds,
    make_epoch,
    make_pair,
    serving,
)

STRIKE = STRIKES["direct"]
FORKED_MAP = PROTECTED - STRIKE
"""The fork's map: everything but the cells the strike hits."""


def fork(pair: Pair) -> tuple[Node, Node]:
    """The honest responder and its fork, both at epoch sequence 1 over different maps."""
    copy = pair.root / "alpha-fork"
    shutil.copytree(pair.responder.directory, copy)
    honest, forked = pair.responder, Node(copy)
    assert make_epoch(honest, PROTECTED) == make_epoch(forked, FORKED_MAP) == 1
    return honest, forked


def checks_kept(node: Node) -> list[Path]:
    directory = node.directory / CHECKS_DIR
    return sorted(directory.iterdir()) if directory.exists() else []


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    pair = make_pair(tmp_path, epoch=False)
    make_epoch(pair.proposer, STRIKE)  # its own map, for the mutual check
    return pair


@pytest.mark.parametrize("second", ["check", "mutual"])
async def test_a_forked_responders_second_descriptor_is_an_equivocation(
    pair: Pair, second: str
) -> None:
    """The fork's answer would be CLEAR; the proposer never gets that far.

    Checked to fail without the protection: with ``AcceptedDescriptors.accept``
    returning at once (no kept descriptor compared), the check against the fork
    came back CLEAR and was stored, and the mutual check completed (``pytest.raises``
    failed for both).
    """
    honest, forked = fork(pair)
    async with serving(honest):
        first = await run_check(pair.proposer, RESPONDER, STRIKE)
    assert first.result.conflict
    kept = checks_kept(pair.proposer)
    async with serving(forked):
        call = (
            run_check(pair.proposer, RESPONDER, STRIKE)
            if second == "check"
            else run_mutual(pair.proposer, RESPONDER)
        )
        with pytest.raises(Equivocation) as caught:
            await call
    error = caught.value
    assert error.status is Status.PERMISSION_DENIED
    proof = pair.proposer.directory / "equivocations" / RESPONDER / "1"
    assert f"peer {RESPONDER} signed two different epoch descriptors with sequence 1" in (
        error.message
    )
    assert str(proof) in error.message
    assert checks_kept(pair.proposer) == kept
    assert audit_kinds(pair.proposer).count("check") == 1
    assert "mutual" not in audit_kinds(pair.proposer)
    # Both signed descriptors are on disk and verify with the responder's pinned key.
    key = pair.proposer.peer(RESPONDER).identity.verify_key
    honest_descriptor = first.descriptor
    forked_epoch = forked.directory / "epochs" / "000001"
    assert key.verify((proof / "first.bin").read_bytes()) == honest_descriptor.encoded
    assert (
        key.verify((proof / "second.bin").read_bytes())
        == (forked_epoch / "descriptor").read_bytes()
    )
    (record,) = equivocations(pair.proposer.directory)
    assert (record.peer, record.sequence) == (RESPONDER, 1)
    assert record.first_digest == honest_descriptor.digest != record.second_digest
    assert audit_kinds(pair.proposer).count(EQUIVOCATION_AUDIT_KIND) == 1


async def test_the_fork_is_refused_again_and_the_honest_node_too_until_a_new_epoch(
    pair: Pair,
) -> None:
    """Nobody can tell which of the two was the real epoch 1, so neither is used; the
    next epoch is a new question. The proof is written and logged once."""
    honest, forked = fork(pair)
    async with serving(honest):
        await run_check(pair.proposer, RESPONDER, STRIKE)
    async with serving(forked):
        for _ in range(2):
            with pytest.raises(Equivocation):
                await run_check(pair.proposer, RESPONDER, STRIKE)
    async with serving(honest):
        with pytest.raises(Equivocation) as caught:
            await run_check(pair.proposer, RESPONDER, STRIKE)
        assert not caught.value.newly_found
        make_epoch(honest, PROTECTED)
        report = await run_check(pair.proposer, RESPONDER, STRIKE)
    assert report.result.conflict
    assert report.descriptor.descriptor.sequence == 2
    assert audit_kinds(pair.proposer).count(EQUIVOCATION_AUDIT_KIND) == 1
    assert len(equivocations(pair.proposer.directory)) == 1


async def test_the_same_descriptor_twice_and_a_newer_one_are_accepted(pair: Pair) -> None:
    """The honest baseline: repeated checks of one epoch, then the next epoch, and a
    mutual check, all go through the same acceptance without complaint."""
    make_epoch(pair.responder, PROTECTED)
    async with serving(pair.responder):
        for _ in range(2):
            assert (await run_check(pair.proposer, RESPONDER, STRIKE)).result.conflict
        await run_mutual(pair.proposer, RESPONDER)
        make_epoch(pair.responder, PROTECTED)
        report = await run_check(pair.proposer, RESPONDER, STRIKE)
        await run_mutual(pair.proposer, RESPONDER)
    assert report.descriptor.descriptor.sequence == 2
    kept = pair.proposer.directory / "descriptors" / RESPONDER
    assert sorted(path.name for path in kept.iterdir()) == ["1.bin", "2.bin"]
    assert equivocations(pair.proposer.directory) == []
    assert EQUIVOCATION_AUDIT_KIND not in audit_kinds(pair.proposer)
