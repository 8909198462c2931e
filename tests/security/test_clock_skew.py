"""A peer's clock is its word: dated statements hours off this node's clock are refused.

A receipt's ``issued_at`` is the responder's clock, a mutual statement's the
proposer's. Signed and inside the epoch, a statement dated 20 h away would still
date the check wrongly in the evidence and the logs built on it. So the proposer
of a check refuses a receipt dated more than ``[limits] clock_skew_seconds``
(default 300 s) from its own clock when the response arrives, and the responder
of a mutual check refuses to countersign a statement dated more than its own
configured skew from its clock; either way round. Real peers over mutual TLS on
loopback, the skewed side being the real servicer or client with its clock
shifted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from hexpsi.protocol.errors import HexpsiError, StaleError, Status
from hexpsi.server.clients.check import run_check
from hexpsi.server.clients.mutual import run_mutual
from hexpsi.server.node.directory import Node
from hexpsi.server.node.epochs import EpochStore
from hexpsi.server.node.mutual_records import MUTUAL_DIR
from hexpsi.server.services.check import CheckServicer
from tests.security.hostile_helpers import (
    PROTECTED,
    RESPONDER,
    STRIKES,
    Pair,
    assert_kept_nothing,
    audit_kinds,
    clock_after,
    edit_config,
    make_pair,
    serving,
)

STRIKE = STRIKES["direct"]
HOURS_20 = 20 * 3600.0
OFF = [(HOURS_20, "ahead of"), (-HOURS_20, "behind")]


def clock_off_by(seconds: float) -> type[CheckServicer]:
    """The real check servicer, its clock ``seconds`` off: its receipts are dated so."""

    class ClockOff(CheckServicer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, clock=clock_after(seconds), **kwargs)

    return ClockOff


def pair_for(root: Path, offset: float) -> Pair:
    """A pair whose responder epoch holds both clocks.

    When the skewed side runs behind, the epoch is built 21 h ago (valid for 24 h),
    so a statement dated 20 h back still lies inside it: the epoch's own validity
    checks cannot catch the skew, and the descriptor is fresh for both sides. The
    proposer's own epoch (for mutual checks) is built the same way, and neither
    server renews its epoch (that would start a new one at the real time).
    """
    pair = make_pair(root, epoch=False)
    built = time.time() - (21 * 3600 if offset < 0 else 0)
    for node, cells in ((pair.responder, PROTECTED), (pair.proposer, STRIKE)):
        edit_config(node.directory, renew_before_hours=0)
        EpochStore(node).create(cells, now=built, workers=1).blocks.close()
    return Pair(Node(pair.responder.directory), Node(pair.proposer.directory), pair.root)


def with_skew(node: Node, seconds: int) -> Node:
    edit_config(node.directory, limits={"clock_skew_seconds": seconds})
    return Node(node.directory)


# ---------------------------------------------------------------- receipts of a check


@pytest.mark.parametrize(("offset", "direction"), OFF)
async def test_a_receipt_dated_hours_off_the_proposers_clock_is_refused(
    tmp_path: Path, offset: float, direction: str
) -> None:
    """A responder 20 h ahead (or behind) signs a valid receipt inside its epoch, dated
    hours from when the check happened. The proposer refuses it, keeps no check
    directory and logs no "check" entry.

    Checked to fail without the protection: with the ``check_skew`` call removed from
    ``ProposerCheck._finish``, both checks were accepted, stored under ``checks/`` and
    logged (``pytest.raises`` failed).
    """
    pair = pair_for(tmp_path, offset)
    async with serving(pair.responder, servicer=clock_off_by(offset)):
        with pytest.raises(StaleError) as caught:
            await run_check(pair.proposer, RESPONDER, STRIKE)
    assert caught.value.message == (
        f"receipt dated 20 h 0 min {direction} this node's clock; "
        "at most 300 s of skew is accepted — check both clocks"
    )
    assert caught.value.status is Status.FAILED_PRECONDITION
    assert_kept_nothing(pair.proposer)


@pytest.mark.parametrize("offset", [200.0, -200.0])
async def test_a_receipt_within_the_skew_is_accepted_and_its_arrival_kept(
    tmp_path: Path, offset: float
) -> None:
    """200 s either way is within the default 300 s: the check completes as usual, and
    the report keeps when the response arrived by the proposer's own clock."""
    pair = pair_for(tmp_path, offset)
    async with serving(pair.responder, servicer=clock_off_by(offset)):
        before = time.time()
        report = await run_check(pair.proposer, RESPONDER, STRIKE)
        after = time.time()
    assert report.result.conflict
    assert before <= report.received_at <= after
    assert abs(report.result.receipt.issued_at - report.received_at - offset) < 10
    assert (report.directory / "evidence.json").exists()
    assert audit_kinds(pair.proposer).count("check") == 1


async def test_the_skew_a_check_accepts_is_the_proposers_configured_one(tmp_path: Path) -> None:
    """A proposer that allows a day (``[limits] clock_skew_seconds = 86400``) accepts the
    receipt one with the default refuses."""
    pair = pair_for(tmp_path, HOURS_20)
    tolerant = with_skew(pair.proposer, 86_400)
    async with serving(pair.responder, servicer=clock_off_by(HOURS_20)):
        with pytest.raises(StaleError):
            await run_check(pair.proposer, RESPONDER, STRIKE)
        report = await run_check(tolerant, RESPONDER, STRIKE)
    assert report.result.conflict
    assert report.result.receipt.issued_at - report.received_at > HOURS_20 - 60


# ---------------------------------------------------------------- mutual statements


def mutual_kept(node: Node) -> list[Path]:
    directory = node.directory / MUTUAL_DIR
    return sorted(directory.iterdir()) if directory.exists() else []


def mutual_outcomes(node: Node) -> list[str]:
    if not node.audit_path.exists():
        return []
    with node.open_audit_log() as audit:
        return [e.details_object()["outcome"] for e in audit.entries() if e.kind == "mutual"]


@pytest.mark.parametrize(("offset", "direction"), OFF)
async def test_a_mutual_statement_dated_hours_off_the_responders_clock_is_refused(
    tmp_path: Path, offset: float, direction: str
) -> None:
    """A proposer 20 h ahead (or behind) signs its statement with its own time; the
    responder refuses to countersign, so neither side holds a receipt, and both log
    the session as failed.

    Checked to fail without the protection: with the ``check_skew`` call removed from
    ``ResponderMutual.countersign``, both sessions were countersigned and the receipts
    stored on both sides (``pytest.raises`` failed).
    """
    pair = pair_for(tmp_path, offset)
    async with serving(pair.responder):
        with pytest.raises(HexpsiError) as caught:
            await run_mutual(pair.proposer, RESPONDER, now=clock_after(offset))
    assert caught.value.status is Status.FAILED_PRECONDITION
    assert (
        f"the proposer's statement dated 20 h 0 min {direction} this node's clock; "
        "at most 300 s of skew is accepted — check both clocks"
    ) in caught.value.message
    assert mutual_kept(pair.responder) == mutual_kept(pair.proposer) == []
    assert mutual_outcomes(pair.responder) == mutual_outcomes(pair.proposer) == ["failed"]


async def test_the_skew_a_mutual_check_accepts_is_the_responders_configured_one(
    tmp_path: Path,
) -> None:
    """The responder's own ``[limits] clock_skew_seconds`` decides, not the protocol's
    default: set to a day, it countersigns the statement of a proposer 20 h ahead."""
    pair = pair_for(tmp_path, HOURS_20)
    tolerant = with_skew(pair.responder, 86_400)
    async with serving(tolerant):
        report = await run_mutual(pair.proposer, RESPONDER, now=clock_after(HOURS_20))
    assert report.result.shared_cells == len(STRIKE & PROTECTED) > 0
    assert report.result.receipt.statement.issued_at > time.time() + HOURS_20 - 60
    assert mutual_outcomes(tolerant) == ["completed"]
