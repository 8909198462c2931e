"""Replays are refused: old messages, old epochs, reused session ids, on either side.

The responder remembers every session id a peer used (in its ledger, across
restarts and across both services) and answers only for the current epoch's
descriptor; the proposer remembers the newest descriptor sequence it accepted
from each peer and refuses an older one as a replay.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import grpc
import pytest

from hexpsi.protocol.errors import StaleError
from hexpsi.server.clients.check import run_check
from hexpsi.server.node.ledger import Operation
from hexpsi.server.node.snapshot_cache import SnapshotCache
from hexpsi.server.rpc.hexpsi.v1 import check_pb2, mutual_pb2, mutual_pb2_grpc
from tests.security.hostile_helpers import (
    ONE_GROUP_KM2,
    PROPOSER,
    RES,
    RESPONDER,
    STRIKES,
    Pair,
    check_stub,
    current_descriptor,
    drain,
    evaluate_request,
    make_epoch,
    make_pair,
    refused,
    serving,
    tls_channel,
)


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    return make_pair(tmp_path)


def spent_now(running: object, peer: str = PROPOSER) -> float:
    return float(running.ledger.spent(peer, now=time.time(), window_seconds=24 * 3600.0))  # type: ignore[attr-defined]


async def test_a_replayed_query_is_already_exists_and_charged_once(pair: Pair) -> None:
    """The very same request bytes, twice; then the same session id with other elements.

    Checked to fail without the protection: with the session claim in ``Ledger.admit`` a no-op,
    both replays were evaluated (and charged) again and ``refused`` failed.
    """
    async with serving(pair.responder) as running:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            stub = check_stub(channel)
            descriptor = await current_descriptor(stub, pair.responder)
            request = evaluate_request(descriptor.digest)
            first = await stub.Evaluate(request, timeout=10)
            again = await refused(stub.Evaluate(request, timeout=10))
            assert again.code() == grpc.StatusCode.ALREADY_EXISTS
            assert request.session_id.hex() in (again.details() or "")
            other = evaluate_request(descriptor.digest, session_id=request.session_id)
            reused = await refused(stub.Evaluate(other, timeout=10))
            assert reused.code() == grpc.StatusCode.ALREADY_EXISTS
        assert spent_now(running) == pytest.approx(ONE_GROUP_KM2)
        assert [e.kind for e in running.audit.entries()] == ["evaluate"]
    assert first.session_id == request.session_id
    # A restarted responder still remembers the session.
    async with serving(pair.responder), tls_channel(pair.responder, pair.proposer) as channel:
        error = await refused(check_stub(channel).Evaluate(request, timeout=10))
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_a_previous_epochs_query_fails_its_precondition(pair: Pair) -> None:
    """A query built for epoch 1, sent (with a fresh session id) once epoch 3 is current.

    (Epoch 2's replaced epoch, 1, would still be answered during the five-minute
    hand-over; ``services/test_check.py`` shows that hand-over and its end.)

    Checked to fail without the protection: with ``ResponderCheck`` no longer
    comparing the query's descriptor digest, the old query was evaluated under
    epoch 2's keys (OK) and ``refused`` failed.
    """
    async with serving(pair.responder) as running:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            stub = check_stub(channel)
            old = await current_descriptor(stub, pair.responder)
            await stub.Evaluate(evaluate_request(old.digest), timeout=10)
            make_epoch(pair.responder)
            make_epoch(pair.responder)
            error = await refused(stub.Evaluate(evaluate_request(old.digest), timeout=10))
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "another epoch descriptor" in (error.details() or "")
            snapshot = check_pb2.GetSnapshotRequest(epoch_id=old.descriptor.epoch_id)
            error = await refused(drain(stub.GetSnapshot(snapshot, timeout=10)))
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "not current" in (error.details() or "")
        assert spent_now(running) == pytest.approx(ONE_GROUP_KM2)


async def _mutual_start(
    channel: grpc.aio.Channel, digest: bytes, session_id: bytes
) -> grpc.aio.AioRpcError | mutual_pb2.MutualResponse:
    """Open a mutual check with ``session_id``: the refusal, or the responder's accept."""
    stub = mutual_pb2_grpc.MutualServiceStub(channel)
    call = stub.Mutual(None, timeout=10)
    start = mutual_pb2.MutualStart(
        session_id=session_id,
        descriptor_digest=digest,
        proposer_epoch_id=os.urandom(16),
        proposer_set_size=128,
    )
    await call.write(mutual_pb2.MutualRequest(start=start))
    try:
        reply = await call.read()
    except grpc.aio.AioRpcError as error:
        return error
    call.cancel()
    assert isinstance(reply, mutual_pb2.MutualResponse)
    return reply


async def test_a_session_id_is_never_accepted_twice_across_services(pair: Pair) -> None:
    """A check's session id reused to open a mutual check, and a mutual session id reused.

    Checked to fail without the protection: with the session claim in ``Ledger.admit`` a no-op,
    both reused starts were accepted and ``isinstance(..., AioRpcError)`` failed.
    """
    async with serving(pair.responder) as running:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            stub = check_stub(channel)
            descriptor = await current_descriptor(stub, pair.responder)
            request = evaluate_request(descriptor.digest, {RES: 8})
            await stub.Evaluate(request, timeout=10)
            reused = await _mutual_start(channel, descriptor.digest, request.session_id)
            assert isinstance(reused, grpc.aio.AioRpcError)
            assert reused.code() == grpc.StatusCode.ALREADY_EXISTS
            fresh = os.urandom(16)
            accepted = await _mutual_start(channel, descriptor.digest, fresh)
            assert isinstance(accepted, mutual_pb2.MutualResponse)
            assert accepted.accept.session_id == fresh
            again = await _mutual_start(channel, descriptor.digest, fresh)
            assert isinstance(again, grpc.aio.AioRpcError)
            assert again.code() == grpc.StatusCode.ALREADY_EXISTS
        # Only the accepted start was charged against the mutual allowance.
        for _ in range(100):
            if running.servicer.gate.active(PROPOSER) == 0:
                break
            await asyncio.sleep(0.02)
        assert (
            running.ledger.calls(
                PROPOSER, Operation.MUTUAL, now=time.time(), window_seconds=24 * 3600.0
            )
            == 1
        )


async def test_a_mutual_start_for_an_old_descriptor_fails_its_precondition(pair: Pair) -> None:
    """Checked to fail without the protection: with the descriptor-digest comparison
    removed from ``ResponderMutual.receive_start``, the old start was accepted.
    Two epochs on, so the old one is past its hand-over."""
    async with serving(pair.responder), tls_channel(pair.responder, pair.proposer) as channel:
        old = await current_descriptor(check_stub(channel), pair.responder)
        make_epoch(pair.responder)
        make_epoch(pair.responder)
        answer = await _mutual_start(channel, old.digest, os.urandom(16))
    assert isinstance(answer, grpc.aio.AioRpcError)
    assert answer.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_proposer_refuses_a_descriptor_older_than_one_it_accepted(pair: Pair) -> None:
    """A responder restored from a backup serves an epoch older than the proposer has seen.

    Checked to fail without the protection: with ``SnapshotCache.latest_sequence``
    always None (no memory of sequences), the restored epoch 1 was checked against.
    """
    async with serving(pair.responder):
        await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
    # The proposer had (in the meantime) accepted sequence 5 from this peer.
    signer = pair.proposer.peer(RESPONDER).identity.signing_public_key
    SnapshotCache(pair.proposer.directory).accept_sequence(RESPONDER, 5, signer)
    async with serving(pair.responder):
        with pytest.raises(StaleError, match="older than 5 already seen: a replay"):
            await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
