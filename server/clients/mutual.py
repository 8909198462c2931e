"""The proposer's side of the mutual check over gRPC, and what it keeps afterwards.

``run_mutual`` takes the node's own current epoch (its protected cells), fetches
and verifies the peer's descriptor (its ``res`` is where both maps meet), and
runs one session on a bidirectional stream over the peer's pinned channel
(``clients.peer.PeerClient``). The proposer's blinded set goes out while the
responder's arrives and is double-blinded, both in worker threads through a
thread-pool ``map``; then commitment, answer, reveal, signed statement and
countersignature. The receipt is stored under ``mutual/`` and logged in the
node's audit log; a session that fails after it started is logged too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from hexpsi.protocol.budget import set_area_km2
from hexpsi.protocol.errors import (
    HexpsiError,
    LocalProtocolError,
    RemoteProtocolError,
    ResourceExhausted,
)
from hexpsi.protocol.mutual.session import MutualResult, ProposerMutual
from hexpsi.server.clients.peer import PeerClient
from hexpsi.server.node.directory import Node, Peer
from hexpsi.server.node.epochs import EpochStore
from hexpsi.server.node.ledger import Admission, Operation
from hexpsi.server.node.mutual_records import (
    AUDIT_KIND,
    completed_details,
    failed_details,
    store_receipt,
)
from hexpsi.server.rpc.hexpsi.v1 import mutual_pb2, mutual_pb2_grpc
from hexpsi.server.rpc.mutual_convert import (
    chunk_request,
    commitment_request,
    finish_request,
    read_accept,
    read_countersignature,
    read_response_chunk,
    start_request,
)
from hexpsi.server.workers import WorkerPool, in_threads

log = logging.getLogger(__name__)

MUTUAL_TIMEOUT_SECONDS = 1800.0
"""A whole session; 100,000 cells a side take tens of seconds on two cores."""

Call = grpc.aio.StreamStreamCall[mutual_pb2.MutualRequest, mutual_pb2.MutualResponse]


@dataclass
class MutualReport:
    """A finished mutual check as the proposer keeps it."""

    peer: str
    result: MutualResult
    epoch_sequence: int
    receipt_file: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def receipt_id(self) -> str:
        return self.result.receipt.receipt_id


class ResponderStream:
    """The responder's messages; an early end or a refusal becomes a ``HexpsiError``."""

    def __init__(self, call: Call, client: PeerClient) -> None:
        self.call = call
        self.client = client

    async def next(self, due: str) -> mutual_pb2.MutualResponse:
        try:
            message = await self.call.read()
        except grpc.aio.AioRpcError as error:
            raise self.client._failure(error, "the mutual check") from None
        if not isinstance(message, mutual_pb2.MutualResponse):  # grpc.aio.EOF
            raise RemoteProtocolError(
                f"peer {self.client.peer.name} ended the stream where {due} was due"
            )
        return message

    async def send(self, message: mutual_pb2.MutualRequest) -> None:
        try:
            await self.call.write(message)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            # The responder ended the call while we were writing; reading says why.
            await self.next("the rest of the exchange")
            raise RemoteProtocolError(
                f"peer {self.client.peer.name} closed the call while we were still sending"
            ) from None


async def _send_own_set(session: ProposerMutual, stream: ResponderStream) -> None:
    async for chunk in in_threads(session.outgoing_chunks()):
        await stream.send(chunk_request("blinded", chunk))


async def _exchange(
    session: ProposerMutual,
    stream: ResponderStream,
    now: Callable[[], float],
    timings: dict[str, float],
) -> MutualResult:
    """Everything after the accept: both sets, commitment, answer, reveal, statement."""
    started = time.perf_counter()
    sender = asyncio.create_task(_send_own_set(session, stream))
    try:
        while not session.responder_set_complete:
            message = await stream.next("a chunk of the responder's blinded set")
            chunk = read_response_chunk(message, "blinded")
            await asyncio.to_thread(session.receive_responder_chunk, chunk)
            if sender.done():
                sender.result()
        await sender
    finally:
        sender.cancel()
    await stream.send(commitment_request(await asyncio.to_thread(session.commit)))
    timings["blinded_sets_s"] = time.perf_counter() - started
    started = time.perf_counter()
    while not session.answer_complete:
        message = await stream.next("a chunk of the double-blinded proposer set")
        chunk = read_response_chunk(message, "double_blinded")
        await asyncio.to_thread(session.receive_double_chunk, chunk)
    timings["answer_s"] = time.perf_counter() - started
    started = time.perf_counter()
    for chunk in await asyncio.to_thread(session.reveal):
        await stream.send(chunk_request("double_blinded", chunk))
    await stream.send(finish_request(session.finish(now=now())))
    signature = read_countersignature(await stream.next("the countersignature"))
    result = session.complete(signature)
    timings["reveal_and_sign_s"] = time.perf_counter() - started
    return result


async def run_mutual(
    node: Node,
    peer_name: str,
    *,
    plaintext: bool = False,
    now: Callable[[], float] = time.time,
    pool: WorkerPool | None = None,
) -> MutualReport:
    """One complete mutual check against ``peer_name``; raises on anything wrong.

    Group work runs on ``pool`` (the caller's), or on one made for this call.
    """
    if pool is None:
        with WorkerPool(name="hexpsi-mutual") as own:
            return await run_mutual(node, peer_name, plaintext=plaintext, now=now, pool=own)
    peer = node.peer(peer_name)
    epoch = EpochStore(node).serving(now())
    if epoch is None:
        raise LocalProtocolError(
            f"node {node.name!r} has no protected positions to compare",
            hint="set them first: hexpsi positions DIR POSITIONS",
        )
    epoch.blocks.close()
    cells = await asyncio.to_thread(epoch.protected_cells)
    timings: dict[str, float] = {}
    points = await asyncio.to_thread(epoch.mutual_points, pool.map)
    async with PeerClient(node, peer, plaintext=plaintext) as client:
        started = time.perf_counter()
        descriptor = await client.fetch_descriptor(now=now())
        session = await asyncio.to_thread(
            ProposerMutual,
            descriptor=descriptor,
            responder_key=client.peer.identity.verify_key,
            proposer=node.name,
            signing_key=node.signing_key,
            cells=cells,
            points=points,
            proposer_epoch_id=epoch.descriptor.descriptor.epoch_id,
            rng=os.urandom,
            mapper=pool.map,
        )
        start = await asyncio.to_thread(session.start)
        timings["prepare_s"] = time.perf_counter() - started
        started = time.perf_counter()
        stub = mutual_pb2_grpc.MutualServiceStub(client.channel)
        call: Call = stub.Mutual(None, timeout=MUTUAL_TIMEOUT_SECONDS, metadata=client.metadata)
        stream = ResponderStream(call, client)
        admission: Admission | None = None
        try:
            await stream.send(start_request(start))
            accept = read_accept(await stream.next("the accept"))
            admission = await asyncio.to_thread(
                _admit_responder_set, node, peer, accept.responder_set_size, session.res, now()
            )
            session.accept(accept)
            result = await _exchange(session, stream, now, timings)
        except (Exception, asyncio.CancelledError) as error:
            call.cancel()
            if admission is not None:
                # Refunded if nothing of ours that depends on the responder's set went out.
                settle = _confirm if session.revealed else _refund
                await asyncio.to_thread(settle, node, admission)
            # When both lanes fail, the one that parked the session says why.
            cause = session.failure if isinstance(error, HexpsiError) else None
            _log_failure(node, peer.name, session, cause or error, now())
            if cause is not None and cause is not error:
                raise cause from None
            raise
        timings["exchange_s"] = time.perf_counter() - started
        timings["accept_s"] = timings["exchange_s"] - sum(
            timings[k] for k in ("blinded_sets_s", "answer_s", "reveal_and_sign_s")
        )
    receipt_file = await asyncio.to_thread(store_receipt, node, result.receipt)
    details = completed_details(
        result.receipt,
        role="proposer",
        own_cells=result.own_cells,
        epoch_sequence=epoch.sequence,
    )
    await asyncio.to_thread(_log, node, peer.name, details, now())
    assert admission is not None
    await asyncio.to_thread(_confirm, node, admission)
    log.info(
        "mutual check with %s: %d shared cells, receipt %s",
        peer.name,
        result.shared_cells,
        result.receipt.receipt_id,
    )
    return MutualReport(peer.name, result, epoch.sequence, receipt_file, timings)


def _admit_responder_set(node: Node, peer: Peer, size: int, res: int, now: float) -> Admission:
    """Charge what the responder could learn of our map before anything of ours goes out.

    A responder that blinds its set under different keys learns, from the
    double-blinded copy of its set we reveal, whether each of about ``size``
    cells it chose is in our map: the call costs ``size`` cells of our budget
    for that peer (and of the node-wide one), or is refused here.
    """
    if size > peer.max_set_size:
        raise ResourceExhausted(
            f"{peer.name} answers a mutual check with a set of {size:,} elements, more than "
            f"the {peer.max_set_size:,} this node accepts from it",
            hint="the operator sets it with max_set_size in the peer's file",
        )
    with node.open_ledger() as ledger:
        return ledger.admit(
            peer.name,
            operation=Operation.MUTUAL_OUT,
            area_km2=set_area_km2(size, res),
            allowances=node.allowances(peer, Operation.MUTUAL_OUT),
            now=now,
            what=f"a mutual check with {peer.name} ({size:,} elements)",
        )


def _refund(node: Node, admission: Admission) -> None:
    with node.open_ledger() as ledger:
        ledger.refund(admission.charge_id)


def _confirm(node: Node, admission: Admission) -> None:
    with node.open_ledger() as ledger:
        ledger.confirm(admission.charge_id)


def _log(node: Node, peer: str, details: dict[str, Any], when: float) -> None:
    with node.open_audit_log() as audit:
        audit.append(AUDIT_KIND, peer, details, when)


def _log_failure(
    node: Node, peer: str, session: ProposerMutual, error: BaseException, when: float
) -> None:
    """Log a session that did not complete, with the count if we had already learned it."""
    learned = {} if session.shared_cells is None else {"shared_cells": session.shared_cells}
    details = failed_details(role="proposer", session_id=session.session_id, error=error, **learned)
    try:
        _log(node, peer, details, when)
    except HexpsiError:
        log.exception("could not log the failed mutual check with %s", peer)
