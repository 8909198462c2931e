"""The mutual check over real gRPC with mutual TLS: exact counts, records, and every refusal.

The honest runs compare maps of about a thousand cells a side. The hostile
ones drive the stream by hand with a raw stub against the small ``PROTECTED``
map (padded to 128 elements) and check that each bad input ends the call with
its deliberate status and a message, never UNKNOWN or INTERNAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.budget import cell_area_km2
from hexpsi.protocol.crypto.group import IDENTITY
from hexpsi.protocol.errors import HexpsiError, LocalProtocolError, Status
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS
from hexpsi.protocol.mutual.messages import MutualFinish, MutualReceipt
from hexpsi.protocol.mutual.session import ProposerMutual
from hexpsi.server.bench.mutual import maps as bench_maps
from hexpsi.server.clients.mutual import run_mutual
from hexpsi.server.node.directory import Node
from hexpsi.server.node.epochs import CELLS_FILE, EpochStore
from hexpsi.server.node.ledger import Operation
from hexpsi.server.node.mutual_records import load_receipt
from hexpsi.server.rpc.hexpsi.v1 import mutual_pb2, mutual_pb2_grpc
from hexpsi.server.rpc.mutual_convert import (
    accept_response,
    chunk_request,
    chunk_response,
    commitment_request,
    countersignature_response,
    finish_request,
    read_accept,
    read_commitment,
    read_countersignature,
    read_finish,
    read_request_chunk,
    read_response_chunk,
    read_start,
    start_request,
)
from hexpsi.server.services.app import start_server
from tests.protocol.helpers import NOW
from tests.protocol.mutual_helpers import mutual_pair
from tests.server.conftest import (
    CENTER,
    DELIBERATE,
    PROPOSER,
    PROTECTED,
    RESPONDER,
    Pair,
    check_stub,
    current_descriptor,
    edit_config,
    make_epoch,
    make_pair,
    random_elements,
    tls_channel,
)

NEAR = h3.grid_ring(CENTER, 20)[0]
RESPONDER_MAP = frozenset(h3.grid_disk(CENTER, 18))  # 1027 cells
PROPOSER_MAP = frozenset(h3.grid_disk(NEAR, 18))
NON_CANONICAL = b"\xff" * 32


def audit_entries(node: Node, kind: str = "mutual") -> list[dict[str, Any]]:
    with node.open_audit_log() as audit:
        return [json.loads(e.details) for e in audit.entries() if e.kind == kind]


def with_mutual_allowance(pair: Pair, checks: int) -> Pair:
    edit_config(pair.responder.directory, budget={"mutual_checks_per_window": checks})
    return Pair(Node(pair.responder.directory), pair.proposer, pair.root)


@pytest.fixture
def maps(tmp_path: Path) -> Pair:
    pair = make_pair(tmp_path, epoch=False)
    make_epoch(pair.responder, RESPONDER_MAP)
    make_epoch(pair.proposer, PROPOSER_MAP)
    return pair


async def test_an_honest_pair_counts_exactly_the_shared_cells(maps: Pair) -> None:
    running = await start_server(maps.responder)
    try:
        report = await run_mutual(maps.proposer, RESPONDER)
    finally:
        await running.stop(grace=1.0)
    shared = len(RESPONDER_MAP & PROPOSER_MAP)
    assert report.result.shared_cells == shared > 0
    assert report.result.own_cells == len(PROPOSER_MAP)
    receipt = report.result.receipt
    receipt.verify(
        proposer_key=maps.proposer.signing_key.verify_key,
        responder_key=maps.responder.signing_key.verify_key,
    )
    # Both sides keep the same receipt on disk and in their audit logs.
    assert load_receipt(maps.responder, report.receipt_id) == receipt
    assert load_receipt(maps.proposer, report.receipt_id) == receipt
    (responder_entry,) = audit_entries(maps.responder)
    (proposer_entry,) = audit_entries(maps.proposer)
    for entry, role in ((responder_entry, "responder"), (proposer_entry, "proposer")):
        assert entry["role"] == role
        assert entry["outcome"] == "completed"
        assert entry["shared_cells"] == shared
        assert MutualReceipt.decode(bytes.fromhex(entry["receipt"])) == receipt
    # Each side was charged the other's padded set size in cells at the agreed resolution.
    res = receipt.statement.res
    assert responder_entry["area_km2"] == pytest.approx(
        receipt.statement.proposer_set_size * cell_area_km2(res)
    )
    with maps.responder.open_ledger() as ledger:
        now = receipt.statement.issued_at
        day = maps.responder.peer(PROPOSER).window_seconds
        assert ledger.calls(PROPOSER, Operation.MUTUAL, now=now, window_seconds=day) == 1
        assert ledger.spent(PROPOSER, now=now, window_seconds=day) == pytest.approx(
            responder_entry["area_km2"]
        )
    with maps.proposer.open_ledger() as ledger:
        charged = ledger.spent(RESPONDER, now=now, window_seconds=day)
        assert charged == pytest.approx(receipt.statement.responder_set_size * cell_area_km2(res))


async def test_checks_beyond_the_allowance_are_refused(maps: Pair) -> None:
    pair = with_mutual_allowance(maps, 1)
    running = await start_server(pair.responder)
    try:
        await run_mutual(pair.proposer, RESPONDER)
        with pytest.raises(
            HexpsiError, match=r"bravo's mutual-check allowance \(1 per 24 h\) is left"
        ) as caught:
            await run_mutual(pair.proposer, RESPONDER)
        assert caught.value.status is Status.RESOURCE_EXHAUSTED
    finally:
        await running.stop(grace=1.0)
    assert [e["outcome"] for e in audit_entries(pair.responder)] == ["completed"]
    assert [e["outcome"] for e in audit_entries(pair.proposer)] == ["completed", "failed"]
    assert audit_entries(pair.proposer)[1]["status"] == "RESOURCE_EXHAUSTED"


async def test_a_proposer_without_positions_is_told_before_dialling(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    with pytest.raises(LocalProtocolError, match="no protected positions"):
        await run_mutual(pair.proposer, RESPONDER)


# --- hostile streams, by hand ---------------------------------------------------------------


Call = grpc.aio.StreamStreamCall[mutual_pb2.MutualRequest, mutual_pb2.MutualResponse]


@asynccontextmanager
async def raw_call(pair: Pair) -> AsyncIterator[tuple[Call, bytes]]:
    """A mutual call from the proposer's pinned certificate, and the current descriptor digest.

    The digest is all zeros when the responder has no epoch yet.
    """
    running = await start_server(pair.responder)
    try:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            digest = bytes(32)
            if EpochStore(pair.responder).current_sequence() is not None:
                descriptor = await current_descriptor(check_stub(channel), pair.responder)
                digest = descriptor.digest
            call = mutual_pb2_grpc.MutualServiceStub(channel).Mutual(None, timeout=30)
            try:
                yield call, digest
            finally:
                call.cancel()
    finally:
        await running.stop(grace=1.0)


def start(digest: bytes, *, size: int = 128, session_id: bytes | None = None) -> Any:
    return mutual_pb2.MutualRequest(
        start=mutual_pb2.MutualStart(
            session_id=session_id or os.urandom(16),
            descriptor_digest=digest,
            proposer_epoch_id=os.urandom(16),
            proposer_set_size=size,
        )
    )


def chunk(index: int, elements: bytes) -> mutual_pb2.MutualRequest:
    return mutual_pb2.MutualRequest(blinded=mutual_pb2.ElementChunk(index=index, elements=elements))


async def send(call: Call, message: mutual_pb2.MutualRequest) -> None:
    """Write, unless the responder already ended the call (its status is read after)."""
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
        await call.write(message)


async def read_to_end(call: Call) -> None:
    for _ in range(1000):
        if not isinstance(await call.read(), mutual_pb2.MutualResponse):
            return


async def refusal(call: Call) -> grpc.aio.AioRpcError:
    """Read until the call fails; it must fail with a deliberate status that says why."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read_to_end(call)
    error = caught.value
    assert error.code() in DELIBERATE, (error.code(), error.details())
    assert error.details()
    return error


async def accepted(call: Call, digest: bytes, **options: Any) -> mutual_pb2.MutualAccept:
    await send(call, start(digest, **options))
    reply = await call.read()
    assert isinstance(reply, mutual_pb2.MutualResponse)
    assert reply.WhichOneof("step") == "accept"
    return reply.accept


Script = Callable[[Call, bytes], Awaitable[None]]


async def chunk_first(call: Call, digest: bytes) -> None:
    await send(call, chunk(0, random_elements(4)))


async def empty_message(call: Call, digest: bytes) -> None:
    await send(call, mutual_pb2.MutualRequest())


async def stale_digest(call: Call, digest: bytes) -> None:
    await send(call, start(b"\x00" * 32))


async def not_a_bucket(call: Call, digest: bytes) -> None:
    await send(call, start(digest, size=129))


async def oversized(call: Call, digest: bytes) -> None:
    await send(call, start(digest, size=1 << 21))


async def short_session_id(call: Call, digest: bytes) -> None:
    await send(call, start(digest, session_id=b"12345678"))


async def wrong_length(call: Call, digest: bytes) -> None:
    await accepted(call, digest)
    await send(call, chunk(0, random_elements(3) + b"\x01"))


async def non_canonical(call: Call, digest: bytes) -> None:
    await accepted(call, digest)
    await send(call, chunk(0, random_elements(5) + NON_CANONICAL))


async def identity(call: Call, digest: bytes) -> None:
    await accepted(call, digest)
    await send(call, chunk(0, IDENTITY + random_elements(5)))


async def out_of_order(call: Call, digest: bytes) -> None:
    await accepted(call, digest)
    await send(call, chunk(1, random_elements(64)))


async def too_many(call: Call, digest: bytes) -> None:
    await accepted(call, digest)
    await send(call, chunk(0, random_elements(100)))
    await send(call, chunk(1, random_elements(29)))


async def early_commitment(call: Call, digest: bytes) -> None:
    await accepted(call, digest)
    await send(call, chunk(0, random_elements(64)))
    await send(
        call, mutual_pb2.MutualRequest(commitment=mutual_pb2.MutualCommitment(digest=b"c" * 32))
    )


async def ended_early(call: Call, digest: bytes) -> None:
    await accepted(call, digest)
    await send(call, chunk(0, random_elements(64)))
    await call.done_writing()


HOSTILE: dict[str, tuple[Script, grpc.StatusCode, str]] = {
    "chunk-before-start": (chunk_first, grpc.StatusCode.INVALID_ARGUMENT, "where the start"),
    "empty-message": (empty_message, grpc.StatusCode.INVALID_ARGUMENT, "an empty message"),
    "stale-descriptor": (stale_digest, grpc.StatusCode.FAILED_PRECONDITION, "another epoch"),
    "size-not-a-bucket": (not_a_bucket, grpc.StatusCode.INVALID_ARGUMENT, "padding bucket"),
    "oversized-set": (oversized, grpc.StatusCode.RESOURCE_EXHAUSTED, "at most"),
    "short-session-id": (short_session_id, grpc.StatusCode.INVALID_ARGUMENT, "session id"),
    "wrong-length": (wrong_length, grpc.StatusCode.INVALID_ARGUMENT, "32-byte elements"),
    "non-canonical": (non_canonical, grpc.StatusCode.INVALID_ARGUMENT, "element 5 is not a"),
    "identity": (identity, grpc.StatusCode.INVALID_ARGUMENT, "element 0 is the identity"),
    "out-of-order": (out_of_order, grpc.StatusCode.INVALID_ARGUMENT, "chunk 1 arrived"),
    "too-many": (too_many, grpc.StatusCode.INVALID_ARGUMENT, "more than the 128"),
    "early-commitment": (early_commitment, grpc.StatusCode.INVALID_ARGUMENT, "the commitment"),
    "ended-early": (ended_early, grpc.StatusCode.INVALID_ARGUMENT, "ended the stream"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_hostile_streams_get_a_deliberate_status(pair: Pair, name: str) -> None:
    script, code, message = HOSTILE[name]
    async with raw_call(pair) as (call, digest):
        await script(call, digest)
        error = await refusal(call)
    assert error.code() == code, error.details()
    assert message in (error.details() or "")


async def test_a_charged_session_that_fails_is_on_record(pair: Pair) -> None:
    async with raw_call(pair) as (call, digest):
        await non_canonical(call, digest)
        await refusal(call)
    (entry,) = audit_entries(pair.responder)
    assert entry["outcome"] == "failed"
    assert entry["status"] == "INVALID_ARGUMENT"
    assert "not a canonical" in entry["error"]


async def test_a_replayed_session_id_is_refused(pair: Pair) -> None:
    session_id = os.urandom(16)
    async with raw_call(pair) as (call, digest):
        await accepted(call, digest, session_id=session_id)
    async with raw_call(pair) as (call, digest):
        await send(call, start(digest, session_id=session_id))
        error = await refusal(call)
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "already used" in (error.details() or "")


async def test_an_exhausted_allowance_is_refused_before_any_group_work(pair: Pair) -> None:
    pair = with_mutual_allowance(pair, 0)
    async with raw_call(pair) as (call, digest):
        await send(call, start(digest))
        error = await refusal(call)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "bravo's mutual-check allowance (0 per 24 h) allows at all" in (error.details() or "")
    assert audit_entries(pair.responder) == []


async def test_a_responder_without_a_map_refuses(tmp_path: Path) -> None:
    pair = make_pair(tmp_path, epoch=False)
    async with raw_call(pair) as (call, digest):
        await send(call, start(digest))
        error = await refusal(call)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no protected positions" in (error.details() or "")


async def test_an_epoch_without_its_cell_list_refuses(pair: Pair) -> None:
    epoch = EpochStore(pair.responder).current()
    assert epoch is not None
    epoch.blocks.close()
    (epoch.directory / CELLS_FILE).unlink()
    async with raw_call(pair) as (call, digest):
        await send(call, start(digest))
        error = await refusal(call)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "stores no cell list" in (error.details() or "")


async def test_mutual_sessions_share_the_per_peer_call_limit(pair: Pair) -> None:
    edit_config(pair.responder.directory, limits={"max_sessions_per_peer": 1})
    pair = Pair(Node(pair.responder.directory), pair.proposer, pair.root)
    async with raw_call(pair) as (first, digest):
        await accepted(first, digest)
        async with tls_channel(pair.responder, pair.proposer) as channel:
            second = mutual_pb2_grpc.MutualServiceStub(channel).Mutual(None, timeout=30)
            await send(second, start(digest))
            error = await refusal(second)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "calls in progress" in (error.details() or "")


# --- what an observer of the wire sees ----------------------------------------------------


def wire_sizes(proposer_cells: frozenset[int], responder_cells: frozenset[int]) -> list[int]:
    """Every message of an in-memory session, as serialized protobuf, in order."""
    pair = mutual_pair(proposer_cells, responder_cells, chunk_elements=50)
    sizes: list[int] = []

    def request(message: mutual_pb2.MutualRequest) -> mutual_pb2.MutualRequest:
        sizes.append(message.ByteSize())
        return mutual_pb2.MutualRequest.FromString(message.SerializeToString())

    def response(message: mutual_pb2.MutualResponse) -> mutual_pb2.MutualResponse:
        sizes.append(message.ByteSize())
        return mutual_pb2.MutualResponse.FromString(message.SerializeToString())

    start = read_start(request(start_request(pair.proposer.start())))
    accept = pair.responder.receive_start(start, now=NOW)
    pair.proposer.accept(read_accept(response(accept_response(accept))))
    for chunk in pair.proposer.outgoing_chunks():
        received = read_request_chunk(request(chunk_request("blinded", chunk)), "blinded")
        pair.responder.receive_proposer_chunk(received)
    for chunk in pair.responder.own_chunks():
        received = read_response_chunk(response(chunk_response("blinded", chunk)), "blinded")
        pair.proposer.receive_responder_chunk(received)
    pair.responder.receive_commitment(
        read_commitment(request(commitment_request(pair.proposer.commit())))
    )
    for chunk in pair.responder.answer():
        message = response(chunk_response("double_blinded", chunk))
        pair.proposer.receive_double_chunk(read_response_chunk(message, "double_blinded"))
    for chunk in pair.proposer.reveal():
        revealed = request(chunk_request("double_blinded", chunk))
        pair.responder.receive_reveal_chunk(read_request_chunk(revealed, "double_blinded"))
    finish = read_finish(request(finish_request(pair.proposer.finish(now=NOW))))
    receipt = pair.responder.countersign(finish, now=NOW, max_skew=CLOCK_SKEW_SECONDS)
    signature = read_countersignature(
        response(countersignature_response(receipt.responder_signature))
    )
    assert pair.proposer.complete(signature).shared_cells == len(proposer_cells & responder_cells)
    return sizes


def first_cells(count: int) -> frozenset[int]:
    return frozenset(sorted(h3.grid_disk(CENTER, 8))[:count])


def test_maps_within_one_bucket_look_the_same_on_the_wire() -> None:
    small = wire_sizes(first_cells(130), first_cells(3))
    large = wire_sizes(first_cells(141), first_cells(120))
    assert small == large
    assert wire_sizes(first_cells(180), first_cells(3)) != small


@pytest.mark.slow
async def test_maps_of_100k_cells_a_side_fit_the_message_limits(tmp_path: Path) -> None:
    responder_cells, proposer_cells = bench_maps(100_000)
    pair = make_pair(tmp_path, epoch=False)
    for node, cells in ((pair.responder, responder_cells), (pair.proposer, proposer_cells)):
        EpochStore(node).create(cells, now=time.time()).blocks.close()
    running = await start_server(pair.responder)
    try:
        report = await run_mutual(pair.proposer, RESPONDER)
    finally:
        await running.stop(grace=1.0)
    assert report.result.shared_cells == len(set(responder_cells) & set(proposer_cells))
    assert report.result.receipt.statement.proposer_set_size == 106_496


# --- a proposer that lies about the count -------------------------------------------------


async def next_response(call: Call) -> mutual_pb2.MutualResponse:
    message = await call.read()
    assert isinstance(message, mutual_pb2.MutualResponse)
    return message


async def run_by_hand(
    call: Call, session: ProposerMutual, tamper: Callable[[MutualFinish], MutualFinish]
) -> None:
    """The proposer's side step by step over a raw call, with its finish altered."""
    await send(call, start_request(session.start()))
    session.accept(read_accept(await next_response(call)))
    for piece in session.outgoing_chunks():
        await send(call, chunk_request("blinded", piece))
    while not session.responder_set_complete:
        session.receive_responder_chunk(read_response_chunk(await next_response(call), "blinded"))
    await send(call, commitment_request(session.commit()))
    while not session.answer_complete:
        message = await next_response(call)
        session.receive_double_chunk(read_response_chunk(message, "double_blinded"))
    for piece in session.reveal():
        await send(call, chunk_request("double_blinded", piece))
    await send(call, finish_request(tamper(session.finish(now=time.time()))))


async def test_a_proposer_claiming_another_count_gets_no_countersignature(pair: Pair) -> None:
    epoch = EpochStore(pair.responder).current()
    assert epoch is not None
    epoch.blocks.close()
    mine = frozenset(h3.grid_disk(CENTER, 2))
    session = ProposerMutual(
        descriptor=epoch.descriptor,
        responder_key=pair.responder.signing_key.verify_key,
        proposer=PROPOSER,
        signing_key=pair.proposer.signing_key,
        cells=mine,
        proposer_epoch_id=os.urandom(16),
        rng=os.urandom,
    )

    def inflate(finish: MutualFinish) -> MutualFinish:
        claimed = dataclasses.replace(finish.statement, shared_cells=500)
        return MutualFinish(claimed, pair.proposer.signing_key.sign(claimed.encode()).signature)

    async with raw_call(pair) as (call, _):
        await run_by_hand(call, session, inflate)
        error = await refusal(call)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "claims 500 shared cells" in (error.details() or "")
    (entry,) = audit_entries(pair.responder)
    assert entry["outcome"] == "failed"
    assert entry["shared_cells"] == len(mine & PROTECTED) > 0


def test_an_epoch_keeps_its_protected_cells_owner_only(maps: Pair) -> None:
    epoch = EpochStore(maps.responder).current()
    assert epoch is not None
    epoch.blocks.close()
    assert epoch.protected_cells() == sorted(RESPONDER_MAP)
    assert (epoch.directory / CELLS_FILE).stat().st_mode & 0o777 == 0o600
