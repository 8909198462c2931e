"""A peer cannot exhaust a responder: message sizes, open calls and stalled downloads are bounded.

Each limit is exercised against the real server over mutual TLS, and after
each one an honest peer is still served: oversized messages are refused by
gRPC's receive limit (RESOURCE_EXHAUSTED); a peer holds at most
``max_sessions_per_peer`` calls, counted across all its connections and both
services, without touching anyone else's; a peer that opens a snapshot
download or a mutual check and stops reading costs a bounded number of
buffered chunks (gRPC flow control) and loses the call after the stall (or
idle) limit, which frees its slot; an expired epoch's snapshot is not
streamed at all.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hexpsi.protocol.crypto.group import hash_to_group
from hexpsi.protocol.mutual.messages import MAX_CHUNK_ELEMENTS, ElementChunk
from hexpsi.protocol.mutual.session import ResponderMutual
from hexpsi.server.clients.check import run_check
from hexpsi.server.node.directory import Node
from hexpsi.server.node.epochs import BlockFile
from hexpsi.server.rpc.hexpsi.v1 import check_pb2, mutual_pb2, mutual_pb2_grpc
from hexpsi.server.services.mutual import MutualServicer
from tests.security.hostile_helpers import (
    OUTSIDER,
    PROPOSER,
    RESPONDER,
    STRIKES,
    check_stub,
    clock_after,
    current_descriptor,
    drain,
    evaluate_request,
    make_epoch,
    make_nodes,
    outcome,
    refused,
    serving,
    tls_channel,
    wait_until,
)

SMALL_MESSAGES = 64 * 1024


def trio(root: Path, **limits: int) -> dict[str, Node]:
    """alpha serves (with ``limits``); bravo and charlie are pinned peers."""
    nodes = make_nodes(root, [RESPONDER, PROPOSER, OUTSIDER], limits=limits or None)
    make_epoch(nodes[RESPONDER])
    return nodes


async def honest_check_works(proposer: Node) -> None:
    report = await run_check(proposer, RESPONDER, STRIKES["direct"])
    assert report.result.conflict


# ---------------------------------------------------------------- message size


async def test_oversized_messages_are_resource_exhausted(tmp_path: Path) -> None:
    """One byte past the responder's receive limit, on every RPC that takes input.

    Checked to fail without the protection: with ``grpc.max_receive_message_length``
    dropped from ``server_options`` (gRPC's own 4 MiB default applies), the 64 KiB
    messages were read and answered INVALID_ARGUMENT or NOT_FOUND instead.
    """
    nodes = trio(tmp_path, max_message_bytes=SMALL_MESSAGES)
    alpha, bravo = nodes[RESPONDER], nodes[PROPOSER]
    huge = os.urandom(SMALL_MESSAGES + 1)
    async with serving(alpha), tls_channel(alpha, bravo) as channel:
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, alpha)
        query = evaluate_request(descriptor.digest)
        query.groups[0].elements = huge
        calls: dict[str, Any] = {
            "Evaluate": stub.Evaluate(query, timeout=10),
            "GetReceipt": stub.GetReceipt(
                check_pb2.GetReceiptRequest(receipt_id="a" * (SMALL_MESSAGES + 1)), timeout=10
            ),
            "GetSnapshot": drain(
                stub.GetSnapshot(check_pb2.GetSnapshotRequest(epoch_id=huge), timeout=10)
            ),
        }
        for name, call in calls.items():
            error = await refused(call)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, name
        mutual = mutual_pb2_grpc.MutualServiceStub(channel).Mutual(None, timeout=10)
        chunk = mutual_pb2.ElementChunk(index=0, elements=huge)
        await mutual.write(mutual_pb2.MutualRequest(blinded=chunk))
        error = await refused(mutual.read())
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await honest_check_works(bravo)


# ---------------------------------------------------------------- open calls


async def idle_mutual_call(channel: grpc.aio.Channel) -> Any:
    """A mutual call that never sends its start: it holds one of the caller's slots."""
    call = mutual_pb2_grpc.MutualServiceStub(channel).Mutual(None, timeout=60)
    await call.wait_for_connection()
    return call


async def test_a_peer_holding_all_its_calls_is_refused_more_and_no_one_else_is(
    tmp_path: Path,
) -> None:
    """bravo opens ``max_sessions_per_peer`` idle calls on separate connections; its next
    call, on yet another connection, is RESOURCE_EXHAUSTED while charlie is served;
    once bravo lets go it is served again.

    Checked to fail without the protection: with ``PeerGate.session_slot`` not
    counting, bravo's fourth call was served and ``refused`` failed.
    """
    limit = 3
    nodes = trio(tmp_path, max_sessions_per_peer=limit)
    alpha, bravo, charlie = nodes[RESPONDER], nodes[PROPOSER], nodes[OUTSIDER]
    async with serving(alpha) as running, AsyncExitStack() as stack:
        holders = []
        for _ in range(limit):
            channel = await stack.enter_async_context(tls_channel(alpha, bravo))
            holders.append(await idle_mutual_call(channel))
        await wait_until(lambda: running.servicer.gate.active(PROPOSER) == limit)
        async with tls_channel(alpha, bravo) as channel:
            stub = check_stub(channel)
            descriptor = await current_descriptor(stub, alpha)
            error = await refused(stub.Evaluate(evaluate_request(descriptor.digest), timeout=10))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert f"already has {limit} calls in progress" in (error.details() or "")
            await honest_check_works(charlie)
            for call in holders:
                call.cancel()
            await wait_until(lambda: running.servicer.gate.active(PROPOSER) == 0)
            await stub.Evaluate(evaluate_request(descriptor.digest), timeout=10)


# ---------------------------------------------------------------- stalled downloads


class Endless:
    """A snapshot far larger than any flow-control window, counting the chunks produced.

    Only downloads opened while ``armed`` are endless; later ones are the real snapshot.
    """

    def __init__(self, honest: Any) -> None:
        self.honest = honest
        self.produced = 0
        self.armed = True

    def chunks(self, blocks: BlockFile, start: int, max_bytes: int) -> Iterator[Any]:
        if not self.armed:
            yield from self.honest(blocks, start, max_bytes=max_bytes)
            return
        block = blocks.get(0)
        per_chunk = max(1, max_bytes // len(block))
        while True:
            self.produced += 1
            yield start, [block] * per_chunk


@pytest.fixture
def endless(monkeypatch: pytest.MonkeyPatch) -> Endless:
    snapshot = Endless(BlockFile.chunks)

    def chunks(self: BlockFile, start: int, *, max_bytes: int) -> Iterator[Any]:
        return snapshot.chunks(self, start, max_bytes)

    monkeypatch.setattr(BlockFile, "chunks", chunks)
    return snapshot


async def stalled_download(channel: grpc.aio.Channel, responder: Node) -> Any:
    """Open a snapshot download, take its first chunk, then read nothing more."""
    stub = check_stub(channel)
    descriptor = await current_descriptor(stub, responder)
    request = check_pb2.GetSnapshotRequest(epoch_id=descriptor.descriptor.epoch_id)
    call = stub.GetSnapshot(request, timeout=60)
    assert isinstance(await call.read(), check_pb2.GetSnapshotResponse)
    return call


async def test_a_stalled_reader_buffers_a_bounded_amount_and_blocks_no_one(
    tmp_path: Path, endless: Endless
) -> None:
    """While bravo's download of an endless snapshot is stalled, the server produces
    only a few chunks (flow control holds the rest back) and charlie is served.

    Checked to fail without the protection: with ``GetSnapshot`` queueing each
    chunk's ``context.write`` without awaiting it (10 ms apart), the count kept
    growing (44 chunks after half a second, 129 one second later).
    """
    nodes = trio(tmp_path)
    alpha, bravo, charlie = nodes[RESPONDER], nodes[PROPOSER], nodes[OUTSIDER]
    async with serving(alpha), tls_channel(alpha, bravo) as channel:
        call = await stalled_download(channel, alpha)
        endless.armed = False
        await asyncio.sleep(0.5)
        settled = endless.produced
        await asyncio.sleep(1.0)
        assert endless.produced == settled
        assert settled <= 16, f"{settled} chunks of about 1 MiB produced for a stalled reader"
        await honest_check_works(charlie)
        call.cancel()


async def test_a_stalled_download_is_ended_and_frees_its_slot(
    tmp_path: Path, endless: Endless
) -> None:
    """With one call allowed per peer, bravo's stalled download would lock bravo out
    for as long as its own deadline says; the server ends it after the stall limit.

    Checked to fail without the protection: with ``GetSnapshot``'s write no longer
    bounded by ``snapshot_stall_seconds``, the slot stayed taken and ``wait_until``
    timed out.
    """
    nodes = trio(tmp_path, max_sessions_per_peer=1)
    alpha, bravo = nodes[RESPONDER], nodes[PROPOSER]
    async with serving(alpha) as running, tls_channel(alpha, bravo) as channel:
        running.servicer.snapshot_stall_seconds = 0.5
        started = time.monotonic()
        call = await stalled_download(channel, alpha)
        await wait_until(lambda: running.servicer.gate.active(PROPOSER) == 0, timeout=10)
        assert time.monotonic() - started < 5
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, alpha)
        await stub.Evaluate(evaluate_request(descriptor.digest), timeout=10)
        # The stalled reader, once it reads on, learns why its download ended.
        code, details = await outcome(read_to_end(call))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "resume from block" in details


class EndlessMutualSet:
    """A responder set far larger than any flow-control window, counting chunks produced."""

    def __init__(self) -> None:
        self.produced = 0
        self.element = hash_to_group(b"endless", b"hexpsi/tests/element")

    def chunks(self) -> Iterator[ElementChunk]:
        index = 0
        while True:
            self.produced += 1
            yield ElementChunk(index, (self.element,) * MAX_CHUNK_ELEMENTS)
            index += 1


async def accepted_mutual(channel: grpc.aio.Channel, digest: bytes) -> Any:
    """A mutual check whose start the responder accepted; nothing more is read or sent."""
    call = mutual_pb2_grpc.MutualServiceStub(channel).Mutual(None, timeout=60)
    start = mutual_pb2.MutualStart(
        session_id=os.urandom(16),
        descriptor_digest=digest,
        proposer_epoch_id=os.urandom(16),
        proposer_set_size=128,
    )
    await call.write(mutual_pb2.MutualRequest(start=start))
    accept = await call.read()
    assert isinstance(accept, mutual_pb2.MutualResponse)
    assert accept.WhichOneof("step") == "accept"
    return call


async def test_a_stalled_mutual_reader_is_ended_and_frees_its_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bravo starts a mutual check and never reads the responder's set: the server
    buffers a bounded number of chunks, then ends the call after its idle limit,
    which frees bravo's only slot.

    Checked to fail without the protection: with ``MutualServicer.Mutual`` yielding
    its answers (a generator cannot time out while suspended in ``yield``), the
    slot stayed taken and ``wait_until`` timed out.
    """
    endless = EndlessMutualSet()
    monkeypatch.setattr(ResponderMutual, "own_chunks", lambda self: endless.chunks())
    monkeypatch.setattr(MutualServicer, "__init__", _short_idle(MutualServicer.__init__))
    nodes = trio(tmp_path, max_sessions_per_peer=1)
    alpha, bravo = nodes[RESPONDER], nodes[PROPOSER]
    async with serving(alpha) as running, tls_channel(alpha, bravo) as channel:
        descriptor = await current_descriptor(check_stub(channel), alpha)
        call = await accepted_mutual(channel, descriptor.digest)
        await wait_until(lambda: running.servicer.gate.active(PROPOSER) == 0, timeout=10)
        assert endless.produced <= 32, f"{endless.produced} chunks of 512 KiB produced"
        stub = check_stub(channel)
        await stub.Evaluate(evaluate_request(descriptor.digest), timeout=10)
        call.cancel()


def _short_idle(init: Any) -> Any:
    def with_short_idle(self: MutualServicer, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **{**kwargs, "idle_seconds": 0.5})

    return with_short_idle


async def test_abandoned_streams_leave_no_errors_in_the_responders_log(
    tmp_path: Path,
    endless: Endless,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Downloads and mutual checks cancelled mid-stream, again and again: each frees its
    slot and is one INFO line, not an ERROR with a traceback (a peer could otherwise
    flood the operator's log with them).

    Checked to fail without the protection: with ``GetSnapshot`` and
    ``MutualServicer.Mutual`` back in their async-generator form, every cancel
    logged "ExecuteBatchError raised in core by servicer method" at ERROR; without
    the done callback on the mutual check's receiving lane, "Task exception was
    never retrieved".
    """
    monkeypatch.setattr(ResponderMutual, "own_chunks", lambda self: EndlessMutualSet().chunks())
    nodes = trio(tmp_path)
    alpha, bravo = nodes[RESPONDER], nodes[PROPOSER]
    caplog.set_level(logging.INFO)
    async with serving(alpha) as running, tls_channel(alpha, bravo) as channel:
        descriptor = await current_descriptor(check_stub(channel), alpha)
        for pause in (0.0, 0.2) * 4:  # at once, or once writes wait on flow control
            call = await stalled_download(channel, alpha)
            mutual = await accepted_mutual(channel, descriptor.digest)
            await asyncio.sleep(pause)
            call.cancel()
            mutual.cancel()
            await wait_until(lambda: running.servicer.gate.active(PROPOSER) == 0)
        gc.collect()  # asyncio reports a lost task error when the task is collected
        await asyncio.sleep(0.1)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


async def read_to_end(call: Any) -> None:
    while isinstance(await call.read(), check_pb2.GetSnapshotResponse):
        pass


async def test_an_expired_epoch_is_not_streamed(tmp_path: Path) -> None:
    """Once the current epoch has expired its snapshot is refused (nobody can use it),
    with a message that tells the responder's operator what to do.

    Checked to fail without the protection: with ``GetSnapshot`` taking the epoch
    from ``self.epochs.get()`` without the expiry test, the whole snapshot was
    streamed and ``refused`` failed.
    """
    nodes = trio(tmp_path)
    alpha, bravo = nodes[RESPONDER], nodes[PROPOSER]
    async with serving(alpha) as running, tls_channel(alpha, bravo) as channel:
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, alpha)
        running.servicer.clock = clock_after(2 * 86400)
        request = check_pb2.GetSnapshotRequest(epoch_id=descriptor.descriptor.epoch_id)
        error = await refused(drain(stub.GetSnapshot(request, timeout=10)))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "expired" in (error.details() or "")
        assert "set its positions again" in (error.details() or "")


async def test_health_watch_and_reflection_streams_take_call_slots(tmp_path: Path) -> None:
    """Streams of gRPC's own services count toward a peer's open calls like ours do:
    two held health ``Watch`` streams and one reflection stream leave bravo no room.

    Checked to fail without the protection: without ``CountStreams`` among the
    server's interceptors, bravo's check was served beside its three held streams.
    """
    limit = 3
    nodes = trio(tmp_path, max_sessions_per_peer=limit)
    alpha, bravo = nodes[RESPONDER], nodes[PROPOSER]
    async with serving(alpha) as running, AsyncExitStack() as stack:
        channel = await stack.enter_async_context(tls_channel(alpha, bravo))
        watches = [
            health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=30
            )
            for _ in range(2)
        ]
        for watch in watches:
            await watch.read()
        info = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(timeout=30)
        await info.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        await info.read()
        await wait_until(lambda: running.servicer.gate.active(PROPOSER) == limit)
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, alpha)
        error = await refused(stub.Evaluate(evaluate_request(descriptor.digest), timeout=10))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"already has {limit} calls in progress" in (error.details() or "")
        for watch in watches:
            watch.cancel()
        await info.done_writing()
        info.cancel()
        await wait_until(lambda: running.servicer.gate.active(PROPOSER) == 0)
        await stub.Evaluate(evaluate_request(descriptor.digest), timeout=10)
