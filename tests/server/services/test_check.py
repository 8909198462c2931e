"""The responder's statuses on the wire, through raw stubs over mutual TLS.

Each refusal a peer can provoke comes back as a deliberate status with a
message that says what to do; ``refused`` fails the test on UNKNOWN or
INTERNAL.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import threading
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from hexpsi.protocol.budget import cell_area_km2
from hexpsi.protocol.check.messages import Receipt
from hexpsi.protocol.crypto.group import IDENTITY, validate_element
from hexpsi.protocol.epoch.schedule import HANDOVER_SECONDS
from hexpsi.server.node.epochs import CURRENT_FILE, EPOCHS_DIR, BlockFile
from hexpsi.server.node.ledger import Admission
from hexpsi.server.rpc.hexpsi.v1 import check_pb2
from hexpsi.server.rpc.status import PEER_METADATA_KEY
from hexpsi.server.services.app import RunningServer, start_server
from tests.server.conftest import (
    DELIBERATE,
    OUTSIDER,
    PROPOSER,
    RES,
    RES_MIN,
    RESPONDER,
    Pair,
    check_stub,
    current_descriptor,
    evaluate_request,
    make_epoch,
    make_nodes,
    make_pair,
    plain_channel,
    random_elements,
    refused,
    tls_channel,
    wait_until,
)

FIELD_PRIME = 2**255 - 19


async def test_the_descriptor_is_signed_by_the_pinned_key(
    pair: Pair, served: RunningServer
) -> None:
    async with tls_channel(pair.responder, pair.proposer) as channel:
        descriptor = await current_descriptor(check_stub(channel), pair.responder)
    d = descriptor.descriptor
    assert (d.node, d.sequence, d.res, d.res_min) == (RESPONDER, 1, RES, RES_MIN)


async def test_a_well_formed_query_is_evaluated_and_logged(
    pair: Pair, served: RunningServer
) -> None:
    async with tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, pair.responder)
        request = evaluate_request(descriptor.digest, {7: 8, RES: 16})
        reply = await stub.Evaluate(request, timeout=10)
    assert reply.session_id == request.session_id
    assert [(g.resolution, len(g.elements)) for g in reply.groups] == [(7, 8 * 32), (RES, 16 * 32)]
    receipt = Receipt.decode(reply.receipt)
    receipt.verify(pair.responder.signing_key.verify_key)
    assert (receipt.proposer, receipt.session_id) == (PROPOSER, request.session_id)
    (entry,) = served.audit.entries()
    assert (entry.kind, entry.peer) == ("evaluate", PROPOSER)
    assert receipt.receipt_id in entry.details.decode()


def _non_canonical() -> bytes:
    return FIELD_PRIME.to_bytes(32, "little")


MALFORMED = {
    "short element": random_elements(8)[:-1],
    "long element": random_elements(8) + b"\x00",
    "non-canonical element": random_elements(7) + _non_canonical(),
    "all-ones element": random_elements(7) + b"\xff" * 32,
    "identity element": IDENTITY + random_elements(7),
}


def test_the_malformed_elements_really_are_invalid() -> None:
    for element in (_non_canonical(), b"\xff" * 32, IDENTITY):
        with pytest.raises(Exception, match="element"):
            validate_element(element)


@pytest.mark.parametrize("name", sorted(MALFORMED))
async def test_malformed_elements_are_invalid_arguments(
    pair: Pair, served: RunningServer, name: str
) -> None:
    async with tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, pair.responder)
        request = evaluate_request(descriptor.digest)
        request.groups[0].elements = MALFORMED[name]
        error = await refused(stub.Evaluate(request, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert served.audit.entries() == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sizes": {RES: 4097}}, "at most 4096"),
        ({"sizes": {RES: 17}}, "not a padding bucket size"),
        ({"sizes": {RES: 7}}, "not a padding bucket size"),
        ({"sizes": {RES_MIN - 1: 8}}, f"outside {RES_MIN}..{RES}"),
        ({"sizes": {}}, "no elements"),
        ({"session_id": b"short"}, "session id must be 16 bytes"),
        ({"digest": b"\x00" * 31}, "digest must be 32 bytes"),
    ],
)
async def test_bad_query_shapes_are_invalid_arguments(
    pair: Pair, served: RunningServer, change: dict[str, object], message: str
) -> None:
    async with tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, pair.responder)
        sizes = change.get("sizes", {RES: 8})
        assert isinstance(sizes, dict)
        request = evaluate_request(descriptor.digest, sizes)
        if not sizes:
            del request.groups[:]
        if "session_id" in change:
            request.session_id = change["session_id"]  # type: ignore[assignment]
        if "digest" in change:
            request.descriptor_digest = change["digest"]  # type: ignore[assignment]
        error = await refused(stub.Evaluate(request, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (error.details() or "")


async def test_groups_out_of_order_are_invalid_arguments(pair: Pair, served: RunningServer) -> None:
    async with tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, pair.responder)
        request = evaluate_request(descriptor.digest, {7: 8, RES: 8})
        request.groups[0].resolution, request.groups[1].resolution = RES, 7
        error = await refused(stub.Evaluate(request, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ascending" in (error.details() or "")


async def test_a_stale_descriptor_digest_fails_its_precondition(
    pair: Pair, served: RunningServer
) -> None:
    async with tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        old = await current_descriptor(stub, pair.responder)
        make_epoch(pair.responder)
        make_epoch(pair.responder)  # two epochs on: past any hand-over
        error = await refused(stub.Evaluate(evaluate_request(old.digest), timeout=10))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "fetch the current descriptor" in (error.details() or "")
        snapshot = stub.GetSnapshot(
            check_pb2.GetSnapshotRequest(epoch_id=old.descriptor.epoch_id), timeout=10
        )
        error = await refused(_drain(snapshot))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "not current" in (error.details() or "")
        new = await current_descriptor(stub, pair.responder)
        assert new.descriptor.sequence == 3
        await stub.Evaluate(evaluate_request(new.digest), timeout=10)


async def test_the_replaced_epoch_is_answered_during_the_hand_over_only(
    pair: Pair, served: RunningServer
) -> None:
    """A check that fetched the descriptor just before a new epoch began still completes."""
    async with tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        old = await current_descriptor(stub, pair.responder)
        make_epoch(pair.responder)
        reply = await stub.Evaluate(evaluate_request(old.digest), timeout=10)
        assert Receipt.decode(reply.receipt).epoch_id == old.descriptor.epoch_id
        chunks = await _drain(
            stub.GetSnapshot(
                check_pb2.GetSnapshotRequest(epoch_id=old.descriptor.epoch_id), timeout=10
            )
        )
        assert chunks
        later = time.time() + HANDOVER_SECONDS + 1
        served.servicer.clock = lambda: later
        error = await refused(stub.Evaluate(evaluate_request(old.digest), timeout=10))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "fetch the current descriptor" in (error.details() or "")


async def _drain(call: grpc.aio.UnaryStreamCall) -> list[check_pb2.GetSnapshotResponse]:  # type: ignore[type-arg]
    return [chunk async for chunk in call]


async def test_the_snapshot_streams_from_any_start_block(
    pair: Pair, served: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hexpsi.server.services.check.SNAPSHOT_CHUNK_BYTES", 1)
    epoch = served.servicer.epochs.get()
    count = epoch.blocks.count
    async with tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        epoch_id = epoch.descriptor.descriptor.epoch_id
        chunks = await _drain(
            stub.GetSnapshot(check_pb2.GetSnapshotRequest(epoch_id=epoch_id), timeout=10)
        )
        assert [c.first_block for c in chunks] == list(range(count))
        assert {c.block_count for c in chunks} == {count}
        assert [b for c in chunks for b in c.blocks] == [epoch.blocks.get(i) for i in range(count)]
        tail = await _drain(
            stub.GetSnapshot(
                check_pb2.GetSnapshotRequest(epoch_id=epoch_id, start_block=count - 1), timeout=10
            )
        )
        assert [c.first_block for c in tail] == [count - 1]
        assert (
            await _drain(
                stub.GetSnapshot(
                    check_pb2.GetSnapshotRequest(epoch_id=epoch_id, start_block=count), timeout=10
                )
            )
            == []
        )
        error = await refused(
            _drain(
                stub.GetSnapshot(
                    check_pb2.GetSnapshotRequest(epoch_id=epoch_id, start_block=2**64 - 1),
                    timeout=10,
                )
            )
        )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"past the {count} blocks" in (error.details() or "")


async def test_a_reused_session_id_already_exists(pair: Pair, served: RunningServer) -> None:
    async with tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, pair.responder)
        request = evaluate_request(descriptor.digest)
        await stub.Evaluate(request, timeout=10)
        again = evaluate_request(descriptor.digest, session_id=request.session_id)
        error = await refused(stub.Evaluate(again, timeout=10))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert request.session_id.hex() in (error.details() or "")
    assert len(served.audit.entries()) == 1


async def test_an_exhausted_budget_says_what_remains_and_when_it_resets(tmp_path: Path) -> None:
    pair = make_pair(tmp_path, budget_km2=1.0)
    running = await start_server(pair.responder)
    try:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            stub = check_stub(channel)
            descriptor = await current_descriptor(stub, pair.responder)
            await stub.Evaluate(evaluate_request(descriptor.digest), timeout=10)
            error = await refused(stub.Evaluate(evaluate_request(descriptor.digest), timeout=10))
    finally:
        await running.stop(grace=1.0)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = error.details() or ""
    left = 1.0 - 8 * cell_area_km2(RES)
    assert f"{left:.3f} km² of bravo's area budget (1 km² per 24 h) is left" in details
    assert re.search(r"enough frees up at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in 2[34] h", details)


async def test_an_oversized_message_is_resource_exhausted(
    pair: Pair, served: RunningServer
) -> None:
    limit = pair.responder.config.limits.max_message_bytes
    async with tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, pair.responder)
        request = evaluate_request(descriptor.digest)
        request.groups[0].elements = bytes(limit + 1)
        error = await refused(stub.Evaluate(request, timeout=10))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_receipts_go_only_to_the_peer_they_were_issued_to(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, [RESPONDER, PROPOSER, OUTSIDER])
    make_epoch(nodes[RESPONDER])
    running = await start_server(nodes[RESPONDER])
    try:
        async with tls_channel(nodes[RESPONDER], nodes[PROPOSER]) as channel:
            stub = check_stub(channel)
            descriptor = await current_descriptor(stub, nodes[RESPONDER])
            reply = await stub.Evaluate(evaluate_request(descriptor.digest), timeout=10)
            receipt_id = Receipt.decode(reply.receipt).receipt_id
            fetched = await stub.GetReceipt(
                check_pb2.GetReceiptRequest(receipt_id=receipt_id), timeout=10
            )
            assert fetched.receipt == reply.receipt
            unknown = await refused(
                stub.GetReceipt(check_pb2.GetReceiptRequest(receipt_id="0" * 32), timeout=10)
            )
            assert unknown.code() == grpc.StatusCode.NOT_FOUND
            for bad in ("../../config.toml", "A" * 32, ""):
                error = await refused(
                    stub.GetReceipt(check_pb2.GetReceiptRequest(receipt_id=bad), timeout=10)
                )
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        async with tls_channel(nodes[RESPONDER], nodes[OUTSIDER]) as channel:
            error = await refused(
                check_stub(channel).GetReceipt(
                    check_pb2.GetReceiptRequest(receipt_id=receipt_id), timeout=10
                )
            )
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert receipt_id in (error.details() or "")
    finally:
        await running.stop(grace=1.0)


async def test_a_node_without_positions_fails_every_precondition(tmp_path: Path) -> None:
    pair = make_pair(tmp_path, epoch=False)
    running = await start_server(pair.responder)
    try:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            stub = check_stub(channel)
            calls: list[Awaitable[Any]] = [
                stub.GetDescriptor(check_pb2.GetDescriptorRequest(), timeout=10),
                stub.Evaluate(evaluate_request(os.urandom(32)), timeout=10),
                _drain(
                    stub.GetSnapshot(check_pb2.GetSnapshotRequest(epoch_id=bytes(16)), timeout=10)
                ),
            ]
            for call in calls:
                error = await refused(call)
                assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "no protected positions yet" in (error.details() or "")
                assert "hexpsi positions" in (error.details() or "")
    finally:
        await running.stop(grace=1.0)


async def test_too_many_concurrent_calls_from_one_peer_are_refused(tmp_path: Path) -> None:
    pair = make_pair(tmp_path, limits={"max_sessions_per_peer": 1})
    running = await start_server(pair.responder)
    release = threading.Event()
    entered = threading.Event()
    admit = running.servicer.ledger.admit

    def held_admit(peer: str, **kwargs: Any) -> Admission:
        entered.set()
        release.wait(10)
        return admit(peer, **kwargs)

    running.servicer.ledger.admit = held_admit  # type: ignore[method-assign]
    try:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            stub = check_stub(channel)
            descriptor = await current_descriptor(stub, pair.responder)
            first = asyncio.ensure_future(
                stub.Evaluate(evaluate_request(descriptor.digest), timeout=10)
            )
            await asyncio.to_thread(entered.wait, 10)
            error = await refused(stub.Evaluate(evaluate_request(descriptor.digest), timeout=10))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "already has 1 calls in progress" in (error.details() or "")
            snapshot = stub.GetSnapshot(
                check_pb2.GetSnapshotRequest(epoch_id=descriptor.descriptor.epoch_id), timeout=10
            )
            error = await refused(_drain(snapshot))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            release.set()
            await first
            # The slot is free again once the first call is done.
            await stub.Evaluate(evaluate_request(descriptor.digest), timeout=10)
    finally:
        release.set()
        await running.stop(grace=1.0)


# ---------------------------------------------------------------- identities


async def test_plaintext_callers_must_name_a_pinned_peer(pair: Pair) -> None:
    running = await start_server(pair.responder, plaintext=True)
    try:
        async with plain_channel(pair.responder) as channel:
            stub = check_stub(channel)
            request = check_pb2.GetDescriptorRequest()
            error = await refused(stub.GetDescriptor(request, timeout=10))
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            assert PEER_METADATA_KEY in (error.details() or "")
            error = await refused(
                stub.GetDescriptor(
                    request,
                    timeout=10,
                    metadata=((PEER_METADATA_KEY, PROPOSER), (PEER_METADATA_KEY, OUTSIDER)),
                )
            )
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            error = await refused(
                stub.GetDescriptor(request, timeout=10, metadata=((PEER_METADATA_KEY, OUTSIDER),))
            )
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "'charlie' is not a pinned peer" in (error.details() or "")
            named = ((PEER_METADATA_KEY, PROPOSER),)
            descriptor = await current_descriptor(stub, pair.responder, metadata=named)
            reply = await stub.Evaluate(
                evaluate_request(descriptor.digest), timeout=10, metadata=named
            )
        assert Receipt.decode(reply.receipt).proposer == PROPOSER
    finally:
        await running.stop(grace=1.0)


async def test_tls_callers_without_a_pinned_certificate_never_get_in(
    tmp_path: Path, pair: Pair, served: RunningServer
) -> None:
    stranger = make_nodes(tmp_path / "other", [OUTSIDER])[OUTSIDER]
    for client in (None, stranger):
        async with tls_channel(pair.responder, client) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await check_stub(channel).GetDescriptor(
                    check_pb2.GetDescriptorRequest(), timeout=10
                )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    # Plaintext metadata means nothing to a TLS server.
    async with plain_channel(pair.responder) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await check_stub(channel).GetDescriptor(
                check_pb2.GetDescriptorRequest(),
                timeout=10,
                metadata=((PEER_METADATA_KEY, PROPOSER),),
            )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert served.audit.entries() == []


async def test_snapshot_chunks_fit_the_responders_message_limit(tmp_path: Path) -> None:
    pair = make_pair(tmp_path, limits={"max_message_bytes": 4096})
    running = await start_server(pair.responder)
    try:
        epoch = running.servicer.epochs.get()
        async with tls_channel(pair.responder, pair.proposer) as channel:
            chunks = await _drain(
                check_stub(channel).GetSnapshot(
                    check_pb2.GetSnapshotRequest(epoch_id=epoch.descriptor.descriptor.epoch_id),
                    timeout=10,
                )
            )
        assert len(chunks) > 1
        assert all(c.ByteSize() <= 4096 for c in chunks)
        assert [b for c in chunks for b in c.blocks] == [
            epoch.blocks.get(i) for i in range(epoch.blocks.count)
        ]
    finally:
        await running.stop(grace=1.0)


async def test_an_expired_epoch_fails_its_precondition(pair: Pair, served: RunningServer) -> None:
    served.servicer.clock = lambda: time.time() + 2 * 86400
    async with tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, pair.responder)
        error = await refused(stub.Evaluate(evaluate_request(descriptor.digest), timeout=10))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "expired" in (error.details() or "")


def _mutated_requests(digest: bytes, rng: random.Random) -> list[check_pb2.EvaluateRequest]:
    """Queries a careless or hostile peer might send: every field bent in some way."""
    requests = []
    for _ in range(120):
        request = evaluate_request(digest, {rng.choice([RES_MIN, 7, RES]): rng.choice([8, 16])})
        group = request.groups[0]
        choice = rng.randrange(8)
        if choice == 0:
            group.resolution = rng.choice([0, RES_MIN - 1, RES + 1, 15, 16, 255, 2**32 - 1])
        elif choice == 1:
            group.elements = rng.randbytes(rng.choice([0, 1, 31, 32, 33, 8 * 32]))
        elif choice == 2:
            request.groups.add(resolution=group.resolution, elements=group.elements)
        elif choice == 3:
            request.session_id = rng.randbytes(rng.choice([0, 15, 17, 64]))
        elif choice == 4:
            request.descriptor_digest = rng.randbytes(rng.choice([0, 32, 33]))
        elif choice == 5:
            position = rng.randrange(len(group.elements))
            flipped = bytearray(group.elements)
            flipped[position] ^= 1 << rng.randrange(8)
            group.elements = bytes(flipped)
        elif choice == 6:
            group.elements = group.elements[: 32 * rng.randrange(1, 8)]
        else:
            request.groups.add(resolution=rng.randrange(16), elements=random_elements(8))
        requests.append(request)
    return requests


async def _outcome(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    """The status a call ends with (OK when it succeeds) and its details."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def test_whatever_a_peer_sends_gets_a_deliberate_status(
    pair: Pair, served: RunningServer
) -> None:
    rng = random.Random(20160621)
    outcomes: list[tuple[grpc.StatusCode, str]] = []
    async with tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, pair.responder)
        for request in _mutated_requests(descriptor.digest, rng):
            outcomes.append(await _outcome(stub.Evaluate(request, timeout=10)))
        for _ in range(40):
            snapshot = check_pb2.GetSnapshotRequest(
                epoch_id=rng.randbytes(rng.choice([0, 16, 17])),
                start_block=rng.choice([0, 1, 2**32, 2**64 - 1]),
            )
            outcomes.append(await _outcome(_drain(stub.GetSnapshot(snapshot, timeout=10))))
            receipt_id = "".join(rng.choice("0123456789abcdefé/.\x00") for _ in range(32))
            receipt = check_pb2.GetReceiptRequest(receipt_id=receipt_id)
            outcomes.append(await _outcome(stub.GetReceipt(receipt, timeout=10)))
    unexpected = [o for o in outcomes if o[0] not in DELIBERATE | {grpc.StatusCode.OK}]
    assert unexpected == []
    codes = {code for code, _ in outcomes}
    assert {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION} <= codes
    assert all(details for code, details in outcomes if code != grpc.StatusCode.OK)


async def test_a_download_the_peer_abandons_frees_its_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = make_pair(tmp_path, limits={"max_sessions_per_peer": 1})
    running = await start_server(pair.responder)

    def endless(
        self: BlockFile, start: int, *, max_bytes: int
    ) -> Iterator[tuple[int, list[bytes]]]:
        while True:  # a snapshot far larger than any flow-control window
            yield start, [self.get(start)]

    monkeypatch.setattr(BlockFile, "chunks", endless)
    try:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            stub = check_stub(channel)
            descriptor = await current_descriptor(stub, pair.responder)
            download = stub.GetSnapshot(
                check_pb2.GetSnapshotRequest(epoch_id=descriptor.descriptor.epoch_id), timeout=30
            )
            await download.read()
            busy = await refused(stub.Evaluate(evaluate_request(descriptor.digest), timeout=10))
            assert busy.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            download.cancel()
            await wait_until(lambda: running.servicer.gate.active(PROPOSER) == 0)
            await stub.Evaluate(evaluate_request(descriptor.digest), timeout=10)
    finally:
        await running.stop(grace=1.0)


@pytest.mark.parametrize("damage", ["descriptor", "blocks", "current"])
async def test_a_damaged_epoch_on_the_responder_is_its_own_failed_precondition(
    pair: Pair, served: RunningServer, damage: str
) -> None:
    epochs = pair.responder.directory / EPOCHS_DIR
    if damage == "descriptor":
        path = epochs / "000001" / "descriptor"
        path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    elif damage == "blocks":
        (epochs / "000001" / "blocks").unlink()
    (epochs / CURRENT_FILE).write_text("x\n" if damage == "current" else "1\n")
    async with tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        error = await refused(stub.GetDescriptor(check_pb2.GetDescriptorRequest(), timeout=10))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = error.details() or ""
        assert "cannot serve its current epoch" in details
        assert str(pair.responder.directory) not in details
        # Its operator sets the positions again and the node serves at once.
        make_epoch(pair.responder)
        assert (await current_descriptor(stub, pair.responder)).descriptor.node == RESPONDER
