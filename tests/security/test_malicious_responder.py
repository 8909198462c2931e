"""A responder that cheats is caught by the proposer, which then reports no result at all.

Each hostile responder below is the real ``CheckServicer`` with one thing bent,
served behind the real application (mutual TLS, limits, interceptors): it
evaluates some elements under another key, proves a group under the wrong
resolution's key, serves a tampered or stale snapshot, replays an old or
expired descriptor, or signs a receipt that does not match the check. The
proposer's ``run_check`` must raise, and keep no result, receipt, evidence or
"check" audit entry: a cheated check must never look like a CLEAR.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from nacl.signing import SigningKey

from hexpsi.protocol.check.messages import EvaluatedGroup, Query, Receipt, transcript_hash
from hexpsi.protocol.check.session import MODE
from hexpsi.protocol.crypto.keys import epoch_key
from hexpsi.protocol.crypto.oprf import blind_evaluate, generate_proof
from hexpsi.protocol.encoding import Writer
from hexpsi.protocol.errors import (
    HexpsiError,
    RemoteProtocolError,
    StaleError,
    Status,
    VerificationError,
)
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS
from hexpsi.server.clients.check import run_check
from hexpsi.server.node.epochs import EpochStore, ServedEpoch
from hexpsi.server.rpc.check_convert import (
    message_to_response,
    request_to_query,
    response_to_message,
)
from hexpsi.server.rpc.hexpsi.v1 import check_pb2
from hexpsi.server.services.check import CheckServicer
from tests.security.hostile_helpers import (
    RES,
    RES_MIN,
    RESPONDER,
    STRIKES,
    Pair,
    assert_kept_nothing,
    audit_kinds,
    make_epoch,
    make_pair,
    serving,
)

STRIKE = STRIKES["direct"]
"""Hits the garrison: a responder that could make it come back CLEAR would hide a conflict."""


class BentResponse(CheckServicer):
    """Evaluates honestly, then ``bend`` rewrites the answer and it is re-signed.

    Re-signing with the responder's own key means the proposer cannot lean on
    the signature: only the check that ``bend`` targets can catch the lie.
    """

    def bend(
        self, epoch: ServedEpoch, query: Query, groups: list[EvaluatedGroup]
    ) -> list[EvaluatedGroup]:
        return groups

    def bend_receipt(self, receipt: Receipt, epoch: ServedEpoch) -> Receipt:
        return receipt

    def sign(self, receipt: Receipt) -> Receipt:
        return receipt.signed(self.node.signing_key)

    async def Evaluate(
        self,
        request: check_pb2.EvaluateRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> check_pb2.EvaluateResponse:
        honest = message_to_response(await super().Evaluate(request, context))
        epoch = self.epochs.get()
        query = request_to_query(request)
        groups = tuple(self.bend(epoch, query, list(honest.groups)))
        receipt = replace(
            honest.receipt,
            transcript_hash=transcript_hash(
                descriptor_digest=epoch.descriptor.digest,
                proposer=honest.receipt.proposer,
                query=query,
                groups=groups,
                timed_groups=honest.timed_groups,
            ),
        )
        receipt = self.sign(self.bend_receipt(receipt, epoch))
        return response_to_message(replace(honest, groups=groups, receipt=receipt))


class SomeElementsUnderAnotherKey(BentResponse):
    """Every other element of each group evaluated under a key nobody published."""

    def bend(
        self, epoch: ServedEpoch, query: Query, groups: list[EvaluatedGroup]
    ) -> list[EvaluatedGroup]:
        other = epoch_key(b"\x01" * 32, epoch.descriptor.descriptor.epoch_id, RES)
        bent = []
        for sent, group in zip(query.groups, groups, strict=True):
            key = epoch.keys[group.resolution]
            blinded = sent.elements
            elements = [
                blind_evaluate(other, [b])[0] if i % 2 == 0 else e
                for i, (b, e) in enumerate(zip(blinded, group.elements, strict=True))
            ]
            proof = generate_proof(key, blinded, elements, MODE, self.rng)
            bent.append(EvaluatedGroup(group.resolution, tuple(elements), proof))
        return bent


class AnotherResolutionsKey(BentResponse):
    """Each group evaluated, and validly proven, under the key of a different resolution."""

    def bend(
        self, epoch: ServedEpoch, query: Query, groups: list[EvaluatedGroup]
    ) -> list[EvaluatedGroup]:
        bent = []
        for sent, group in zip(query.groups, groups, strict=True):
            other = epoch.keys[RES_MIN if group.resolution != RES_MIN else RES]
            blinded = sent.elements
            elements = blind_evaluate(other, blinded)
            proof = generate_proof(other, blinded, elements, MODE, self.rng)
            bent.append(EvaluatedGroup(group.resolution, tuple(elements), proof))
        return bent


def _receipt_bender(change: Callable[[Receipt, ServedEpoch], Receipt]) -> type[BentResponse]:
    class Bent(BentResponse):
        def bend_receipt(self, receipt: Receipt, epoch: ServedEpoch) -> Receipt:
            return change(receipt, epoch)

    return Bent


class SignedByAnotherKey(BentResponse):
    def sign(self, receipt: Receipt) -> Receipt:
        return receipt.signed(SigningKey(b"\x02" * 32))


RECEIPT_LIES: dict[str, type[CheckServicer]] = {
    "area understated": _receipt_bender(lambda r, e: replace(r, area_km2=r.area_km2 / 2)),
    "area overstated": _receipt_bender(lambda r, e: replace(r, area_km2=r.area_km2 * 2)),
    "another proposer": _receipt_bender(lambda r, e: replace(r, proposer="charlie")),
    "another responder": _receipt_bender(lambda r, e: replace(r, responder="delta")),
    "another session": _receipt_bender(lambda r, e: replace(r, session_id=bytes(16))),
    "another epoch": _receipt_bender(lambda r, e: replace(r, epoch_id=bytes(16))),
    "another transcript": _receipt_bender(lambda r, e: replace(r, transcript_hash=bytes(32))),
    "issued after the epoch": _receipt_bender(
        lambda r, e: replace(r, issued_at=e.descriptor.descriptor.valid_until + 1)
    ),
    "issued before the epoch": _receipt_bender(
        lambda r, e: replace(r, issued_at=e.descriptor.descriptor.created_at - 1)
    ),
    "dated beyond the clock skew": _receipt_bender(
        lambda r, e: replace(r, issued_at=r.issued_at + CLOCK_SKEW_SECONDS + 60)
    ),
    "signed by another key": SignedByAnotherKey,
}


class NonFiniteReceipt(CheckServicer):
    """A receipt whose time or area is NaN or infinite, written by hand and signed.

    The library refuses to encode such numbers, so the bytes are patched in place.
    """

    field = "issued_at"
    value = math.nan

    async def Evaluate(
        self,
        request: check_pb2.EvaluateRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> check_pb2.EvaluateResponse:
        answer = await super().Evaluate(request, context)
        receipt = Receipt.decode(answer.receipt)
        body = receipt.body()
        honest = struct.pack(">d", getattr(receipt, self.field))
        assert body.count(honest) == 1
        body = body.replace(honest, struct.pack(">d", self.value))
        signature = self.node.signing_key.sign(body).signature
        answer.receipt = Writer().blob(body).fixed(signature, len(signature)).getvalue()
        return answer


def _non_finite(field: str, value: float) -> type[CheckServicer]:
    return type(f"NonFinite_{field}", (NonFiniteReceipt,), {"field": field, "value": value})


NON_FINITE = {
    "issued at NaN": _non_finite("issued_at", math.nan),
    "issued at infinity": _non_finite("issued_at", math.inf),
    "area NaN": _non_finite("area_km2", math.nan),
    "area infinite": _non_finite("area_km2", math.inf),
    "area negative infinite": _non_finite("area_km2", -math.inf),
}


class ReplaysAnEarlierResponse(CheckServicer):
    """Answers every check after the first with the first one's (genuine) response."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first: check_pb2.EvaluateResponse | None = None

    async def Evaluate(
        self,
        request: check_pb2.EvaluateRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> check_pb2.EvaluateResponse:
        answer = await super().Evaluate(request, context)
        if self.first is None:
            self.first = answer
        return self.first


class TamperedSnapshot(CheckServicer):
    """Streams its snapshot with ``tamper`` applied to the list of blocks."""

    def tamper(self, epoch: ServedEpoch, blocks: list[bytes]) -> list[bytes]:
        return blocks

    async def GetSnapshot(  # type: ignore[override]
        self,
        request: check_pb2.GetSnapshotRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> AsyncIterator[check_pb2.GetSnapshotResponse]:
        epoch = self.epochs.get()
        honest = [epoch.blocks.get(i) for i in range(epoch.blocks.count)]
        blocks = self.tamper(epoch, honest)
        start = int(request.start_block)
        yield check_pb2.GetSnapshotResponse(
            first_block=start, blocks=blocks[start:], block_count=len(blocks)
        )


class FlippedBit(TamperedSnapshot):
    def tamper(self, epoch: ServedEpoch, blocks: list[bytes]) -> list[bytes]:
        last = bytearray(blocks[-1])
        last[len(last) // 2] ^= 0x10
        return [*blocks[:-1], bytes(last)]


class PreviousEpochsBlocks(TamperedSnapshot):
    """Well-formed blocks, same parameters, but the previous epoch's values."""

    def tamper(self, epoch: ServedEpoch, blocks: list[bytes]) -> list[bytes]:
        previous = EpochStore(self.node).load(epoch.sequence - 1)
        try:
            return [previous.blocks.get(i) for i in range(previous.blocks.count)]
        finally:
            previous.blocks.close()


class ExtraBlock(TamperedSnapshot):
    """More blocks than the signed parameters allow: a download that would never end."""

    def tamper(self, epoch: ServedEpoch, blocks: list[bytes]) -> list[bytes]:
        return [*blocks, blocks[0]]


class DroppedBlock(TamperedSnapshot):
    def tamper(self, epoch: ServedEpoch, blocks: list[bytes]) -> list[bytes]:
        return blocks[:-1]


class FirstDescriptorForever(CheckServicer):
    """Keeps serving epoch 1's genuine, signed descriptor whatever is current."""

    async def GetDescriptor(
        self,
        request: check_pb2.GetDescriptorRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> check_pb2.GetDescriptorResponse:
        first = EpochStore(self.node).load(1)
        first.blocks.close()
        return check_pb2.GetDescriptorResponse(
            descriptor=first.descriptor.encoded, signature=first.descriptor.signature
        )


async def refused_check(pair: Pair, servicer: type[CheckServicer]) -> HexpsiError:
    """Run the proposer's check against ``servicer``; it must raise and keep nothing."""
    async with serving(pair.responder, servicer=servicer):
        with pytest.raises(HexpsiError) as caught:
            await run_check(pair.proposer, RESPONDER, STRIKE)
    assert_kept_nothing(pair.proposer)
    return caught.value


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    return make_pair(tmp_path)


async def test_the_honest_responder_is_accepted(pair: Pair) -> None:
    """The baseline every hostile variant departs from: a stored, conflicting result."""
    async with serving(pair.responder, servicer=BentResponse):
        report = await run_check(pair.proposer, RESPONDER, STRIKE)
    assert report.result.conflict
    assert (report.directory / "evidence.json").exists()


@pytest.mark.parametrize("servicer", [SomeElementsUnderAnotherKey, AnotherResolutionsKey])
async def test_evaluations_under_another_key_are_caught_by_the_proof(
    pair: Pair, servicer: type[CheckServicer]
) -> None:
    """Checked to fail without the protection: with the ``verify_proof`` call removed
    from ``hexpsi.protocol.check.session.verify_response``, both hostile responders' checks were
    accepted and stored (``pytest.raises`` failed)."""
    error = await refused_check(pair, servicer)
    assert isinstance(error, VerificationError)
    assert error.status is Status.PERMISSION_DENIED


@pytest.mark.parametrize("lie", sorted(RECEIPT_LIES))
async def test_a_receipt_that_does_not_match_the_check_is_refused(pair: Pair, lie: str) -> None:
    """Checked to fail without the protection: with the receipt checks (signature,
    fields, validity, area) removed from ``hexpsi.protocol.check.session.verify_response``, every
    bent receipt was accepted and stored; with the ``check_skew`` call removed from
    ``ProposerCheck.finish``, so was the receipt dated (inside the epoch) ahead of the
    proposer's clock."""
    error = await refused_check(pair, RECEIPT_LIES[lie])
    # A receipt from the wrong time is stale (FAILED_PRECONDITION), every other lie fails
    # verification.
    expected = StaleError if lie == "dated beyond the clock skew" else VerificationError
    assert isinstance(error, expected)


@pytest.mark.parametrize("lie", sorted(NON_FINITE))
async def test_a_receipt_with_non_finite_numbers_is_refused(pair: Pair, lie: str) -> None:
    """Checked to fail without the protection: with ``Reader.f64`` accepting non-finite
    numbers and the receipt checks removed from ``verify_response``, every such
    receipt was accepted and stored."""
    error = await refused_check(pair, NON_FINITE[lie])
    assert isinstance(error, RemoteProtocolError)
    assert "non-finite" in error.message or isinstance(error, VerificationError)


async def test_a_replayed_earlier_response_is_refused(pair: Pair) -> None:
    """The first check is genuine; the second gets the first one's signed answer back.

    Checked to fail without the protection: with the session-id comparison and the
    receipt checks removed from ``verify_response``, the replay was accepted.
    """
    async with serving(pair.responder, servicer=ReplaysAnEarlierResponse):
        await run_check(pair.proposer, RESPONDER, STRIKE)
        kept = sorted((pair.proposer.directory / "checks").iterdir())
        with pytest.raises(VerificationError, match="another session"):
            await run_check(pair.proposer, RESPONDER, STRIKES["far"])
    assert sorted((pair.proposer.directory / "checks").iterdir()) == kept


@pytest.mark.parametrize("servicer", [FlippedBit, PreviousEpochsBlocks, DroppedBlock, ExtraBlock])
async def test_a_tampered_snapshot_is_refused(pair: Pair, servicer: type[CheckServicer]) -> None:
    """A second epoch exists so the stale-blocks variant has well-formed blocks to serve.

    Checked to fail without the protection: with ``SnapshotReader.finish`` no longer
    comparing the Merkle root, the flipped-bit and previous-epoch snapshots were
    accepted and their results stored; the dropped and the extra block are caught
    earlier, by the block count the signed parameters fix.
    """
    make_epoch(pair.responder)
    error = await refused_check(pair, servicer)
    assert error.status in {Status.INVALID_ARGUMENT, Status.PERMISSION_DENIED}


async def test_a_replayed_older_descriptor_is_stale(pair: Pair) -> None:
    """The proposer saw epoch 2; the responder then serves epoch 1's signed descriptor.

    Checked to fail without the protection: with ``run_check`` passing
    ``newer_than=None``, the old epoch was checked against and the result stored.
    """
    make_epoch(pair.responder)
    async with serving(pair.responder):
        seen = await run_check(pair.proposer, RESPONDER, STRIKE)
    assert seen.descriptor.descriptor.sequence == 2
    checks_before = sorted((pair.proposer.directory / "checks").iterdir())
    async with serving(pair.responder, servicer=FirstDescriptorForever):
        with pytest.raises(StaleError, match="older than 2"):
            await run_check(pair.proposer, RESPONDER, STRIKE)
    assert sorted((pair.proposer.directory / "checks").iterdir()) == checks_before
    assert audit_kinds(pair.proposer).count("check") == 1


class ClockHeldBack(CheckServicer):
    """Believes it is still three days ago, so it serves and signs for an expired epoch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, clock=lambda: time.time() - 3 * 86400, **kwargs)


async def test_an_expired_descriptor_is_stale(tmp_path: Path) -> None:
    """An epoch built three days ago (valid for one), served by a responder whose clock
    says it is still current: the proposer refuses the descriptor as expired.

    Checked to fail without the protection: with the ``now > valid_until`` test
    removed from ``SignedDescriptor.verify``, the expired epoch was checked
    against and the result stored (``pytest.raises`` failed).
    """
    pair = make_pair(tmp_path, epoch=False)
    old = EpochStore(pair.responder).create(set(STRIKE), now=time.time() - 3 * 86400, workers=1)
    old.blocks.close()
    error = await refused_check(pair, ClockHeldBack)
    assert isinstance(error, StaleError)
    assert "has expired" in error.message
