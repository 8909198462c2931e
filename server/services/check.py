"""The responder's gRPC servicer: identify the caller, enforce limits, run the protocol.

Each RPC identifies the caller (its pinned TLS certificate, or in loopback
plaintext mode the ``hexpsi-peer`` metadata), then hands the request to the
sans-IO session from ``protocol``. Every error a peer can provoke surfaces as
the status the protocol chose, with a message a person can act on; an
unexpected exception is a bug, logged with its traceback and reported as
INTERNAL without details.

Order inside Evaluate: refuse what the peer's or the node's remaining budget
cannot pay for (from the declared group sizes, before any element is decoded),
decode and validate everything in a worker thread (no group operation yet),
claim the session id and charge both budgets in one transaction, evaluate and
prove, store the receipt, log the signed audit entry, confirm the charge,
answer. A failure after the charge refunds it and removes what was written.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

import grpc

from hexpsi.protocol.check.messages import Query, Receipt, Response
from hexpsi.protocol.check.session import Assessment, ResponderCheck
from hexpsi.protocol.errors import FailedPrecondition, HexpsiError, NotFound, RemoteProtocolError
from hexpsi.protocol.randomness import RandomBytes
from hexpsi.protocol.times import rfc3339
from hexpsi.server.node.directory import Node, Peer
from hexpsi.server.node.epochs import ServedEpoch
from hexpsi.server.node.files import atomic_write, ensure_private_dir
from hexpsi.server.node.ledger import Admission, Operation
from hexpsi.server.rpc.check_convert import (
    declared_area_km2,
    declared_volume_km2h,
    request_to_query,
    response_to_message,
)
from hexpsi.server.rpc.hexpsi.v1 import check_pb2, check_pb2_grpc
from hexpsi.server.rpc.status import abort
from hexpsi.server.services.metrics import CANCELLED, OK, STALLED
from hexpsi.server.services.refusals import reason_of
from hexpsi.server.services.shared import Shared

log = logging.getLogger(__name__)

RECEIPTS_DIR = "receipts"
SNAPSHOT_CHUNK_BYTES = 1 << 20
"""Blocks per streamed message add up to at most this (or half the message limit, if less)."""
SNAPSHOT_STALL_SECONDS = 60.0
"""A snapshot download whose reader takes no chunk for this long is ended (DEADLINE_EXCEEDED)."""
T = TypeVar("T")


class CheckServicer(check_pb2_grpc.CheckServiceServicer):
    """``hexpsi.v1.CheckService`` for one node."""

    def __init__(
        self,
        node: Node,
        shared: Shared,
        *,
        plaintext: bool = False,
        clock: Callable[[], float] = time.time,
        rng: RandomBytes = os.urandom,
        snapshot_stall_seconds: float = SNAPSHOT_STALL_SECONDS,
    ) -> None:
        self.node = node
        self.ledger = shared.ledger
        self.audit = shared.audit
        self.plaintext = plaintext
        self.clock = clock
        self.rng = rng
        self.snapshot_stall_seconds = snapshot_stall_seconds
        self.epochs = shared.epochs
        # Evaluation and proofs spread over the cores: libsodium releases the GIL,
        # so the server's pool runs the group operations of one query in parallel.
        self.pool = shared.pool
        self.gate = shared.gate
        self.refusals = shared.refusals
        self.metrics = shared.metrics
        self.receipts_dir = node.directory / RECEIPTS_DIR
        # Presented with every descriptor, so a peer pinned to an older signing key can
        # follow them to this one (``node.peer_rotations``); read once, checked on load.
        self.rotations = [statement.signed_message for statement in node.rotations()]

    # -- caller identity and limits (shared with the other services through the gate)

    def caller(self, context: grpc.aio.ServicerContext) -> Peer:  # type: ignore[type-arg]
        """The pinned peer making this call, or a refusal."""
        return self.gate.caller(context)

    def session_slot(self, peer: Peer) -> AbstractContextManager[None]:
        """At most ``max_sessions_per_peer`` concurrent calls per peer, across services."""
        return self.gate.session_slot(peer)

    async def _guard(
        self,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        work: Awaitable[T],
        *,
        counted: Callable[[str | None, str], None] | None = None,
    ) -> T:
        """``work``'s answer, or its refusal noted (and ``counted`` as an outcome) and sent."""
        try:
            return await work
        except HexpsiError as error:
            name = self.gate.name_of(context)
            self.refusals.note(name, error)
            if counted is not None:
                counted(name, reason_of(error))
            await abort(context, error)

    # -- RPCs

    async def GetDescriptor(
        self,
        request: check_pb2.GetDescriptorRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> check_pb2.GetDescriptorResponse:
        async def work() -> check_pb2.GetDescriptorResponse:
            self.caller(context)
            epoch = self.epochs.get(self.clock())
            return check_pb2.GetDescriptorResponse(
                descriptor=epoch.descriptor.encoded,
                signature=epoch.descriptor.signature,
                rotations=self.rotations,
            )

        return await self._guard(context, work())

    def _unexpired_epoch(self, now: float, epoch: ServedEpoch) -> ServedEpoch:
        """``epoch`` (the one a request named), refused once it has expired: no peer
        can use it any more.

        The proposer would refuse the signed descriptor as expired anyway; saying so
        here, before a snapshot is streamed or a query validated, tells both sides
        what to fix (the responder's operator sets the positions again).
        """
        valid_until = epoch.descriptor.descriptor.valid_until
        if now > valid_until:
            log.warning(
                "epoch %d expired at %s and no newer one is set (run hexpsi positions)",
                epoch.sequence,
                rfc3339(valid_until),
            )
            raise FailedPrecondition(
                f"node {self.node.name!r} has no current epoch: epoch {epoch.sequence} expired "
                f"at {rfc3339(valid_until)}; its operator must set its positions again",
            )
        return epoch

    async def GetSnapshot(  # type: ignore[override]
        self,
        request: check_pb2.GetSnapshotRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> None:
        """Stream the blocks with ``context.write``, each write bounded by the stall limit.

        A coroutine rather than an async generator (the generated stubs only know
        the latter) because a generator suspended in ``yield`` cannot time out: a
        peer that stops reading would hold one of its call slots until its own
        deadline, if it set one. gRPC's flow control already keeps only a few
        chunks buffered for a stalled reader; this ends the call itself.
        """

        async def work() -> None:
            peer = self.caller(context)
            now = self.clock()
            epoch = self._unexpired_epoch(now, self.epochs.for_id(request.epoch_id, now))
            if request.epoch_id != epoch.descriptor.descriptor.epoch_id:
                raise FailedPrecondition("that epoch is not current; fetch the descriptor again")
            count = epoch.blocks.count
            if request.start_block > count:
                raise RemoteProtocolError(
                    f"start_block {request.start_block} is past the {count} blocks",
                )
            # Half the message limit leaves room for the framing of every block in a chunk.
            chunk_bytes = min(SNAPSHOT_CHUNK_BYTES, self.node.config.limits.max_message_bytes // 2)
            with self.session_slot(peer):
                for first, blocks in epoch.blocks.chunks(
                    request.start_block, max_bytes=chunk_bytes
                ):
                    message = check_pb2.GetSnapshotResponse(
                        first_block=first, blocks=blocks, block_count=count
                    )
                    try:
                        await asyncio.wait_for(context.write(message), self.snapshot_stall_seconds)
                        self.metrics.snapshot_sent(peer.name, sum(map(len, blocks)))
                    except TimeoutError:
                        log.warning(
                            "%s stopped reading the snapshot at block %d; ending the download",
                            peer.name,
                            first,
                        )
                        # Returning (not aborting) frees the slot at once: an abort would
                        # wait behind the chunks the stalled reader has not taken.
                        context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)
                        context.set_details(
                            f"no snapshot chunk was read for {self.snapshot_stall_seconds:.0f} s; "
                            f"resume from block {first}"
                        )
                        self.metrics.snapshot_download(peer.name, STALLED)
                        return
                    except grpc.aio.InternalError:
                        # The peer cancelled or hung up mid-download: nobody is left to answer.
                        log.info("%s left the snapshot download at block %d", peer.name, first)
                        self.metrics.snapshot_download(peer.name, CANCELLED)
                        return
            self.metrics.snapshot_download(peer.name, OK)

        await self._guard(context, work(), counted=self.metrics.snapshot_download)

    async def Evaluate(
        self,
        request: check_pb2.EvaluateRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> check_pb2.EvaluateResponse:
        return await self._guard(
            context, self._evaluate(request, context), counted=self.metrics.check
        )

    async def _evaluate(
        self,
        request: check_pb2.EvaluateRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> check_pb2.EvaluateResponse:
        peer = self.caller(context)
        with self.session_slot(peer):
            now = self.clock()
            named = self.epochs.for_digest(request.descriptor_digest, now)
            epoch = self._unexpired_epoch(now, named)
            allowances = self.node.allowances(peer, Operation.CHECK)
            what = f"a check by {peer.name}"
            declared = declared_area_km2(request, epoch.descriptor.descriptor)
            volume = declared_volume_km2h(request, epoch.descriptor.descriptor)
            if declared is not None and volume is not None:
                await asyncio.to_thread(
                    self.ledger.check,
                    peer.name,
                    operation=Operation.CHECK,
                    area_km2=declared,
                    allowances=allowances,
                    now=now,
                    what=what,
                    volume_km2h=volume,
                )
            query = await asyncio.to_thread(request_to_query, request)
            session = ResponderCheck(
                descriptor=epoch.descriptor,
                keys=epoch.keys,
                signing_key=self.node.signing_key,
                proposer=peer.name,
                rng=self.rng,
                mapper=self.pool.map,
                timed_keys=epoch.timed_keys,
            )
            assessment = await asyncio.to_thread(session.receive, query, now=now)
            admission = await asyncio.to_thread(
                self.ledger.admit,
                peer.name,
                operation=Operation.CHECK,
                area_km2=assessment.area_km2,
                allowances=allowances,
                now=now,
                session_id=query.session_id,
                what=what,
                volume_km2h=assessment.volume_km2h,
            )
            try:
                response = await asyncio.to_thread(session.respond, now=now)
                await asyncio.to_thread(
                    self._record,
                    peer=peer,
                    epoch=epoch,
                    query=query,
                    response=response,
                    assessment=assessment,
                    admission=admission,
                    now=now,
                )
            except BaseException:
                await asyncio.to_thread(self.ledger.refund, admission.charge_id)
                raise
            log.info(
                "evaluated %d elements for %s: %.3f km², %.3f km² left",
                query.element_count,
                peer.name,
                assessment.area_km2,
                admission.charge.remaining,
            )
            self.metrics.check(peer.name, OK)
            self.metrics.charged(peer.name, Operation.CHECK, assessment.area_km2)
            return response_to_message(response)

    def _record(
        self,
        *,
        peer: Peer,
        epoch: ServedEpoch,
        query: Query,
        response: Response,
        assessment: Assessment,
        admission: Admission,
        now: float,
    ) -> None:
        """Receipt on disk, then the audit entry, then the charge confirmed: all or nothing.

        A failure part-way removes what was written, and the caller refunds the
        charge, so no charge stands without its receipt and audit entry.
        """
        receipt = response.receipt
        path = self._store_receipt(receipt)
        try:
            self.audit.append(
                "evaluate",
                peer.name,
                {
                    "receipt_id": receipt.receipt_id,
                    "epoch_sequence": epoch.sequence,
                    "epoch_id": epoch.descriptor.descriptor.epoch_id.hex(),
                    "session_id": query.session_id.hex(),
                    "transcript_hash": receipt.transcript_hash.hex(),
                    "group_sizes": {str(r): n for r, n in sorted(assessment.group_sizes.items())},
                    "area_km2": assessment.area_km2,
                    "remaining_km2": admission.charge.remaining,
                    "node_remaining_km2": admission.node_charge.remaining,
                    **_timed_details(query, assessment, admission),
                },
                now,
            )
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        self.ledger.confirm(admission.charge_id)

    def _store_receipt(self, receipt: Receipt) -> Path:
        ensure_private_dir(self.receipts_dir)
        path = self.receipts_dir / receipt.receipt_id
        atomic_write(path, receipt.encode())
        return path

    async def GetReceipt(
        self,
        request: check_pb2.GetReceiptRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> check_pb2.GetReceiptResponse:
        async def work() -> check_pb2.GetReceiptResponse:
            peer = self.caller(context)
            receipt_id = request.receipt_id
            if len(receipt_id) != 32 or any(c not in "0123456789abcdef" for c in receipt_id):
                raise RemoteProtocolError("receipt_id must be 32 lowercase hex characters")
            path: Path = self.receipts_dir / receipt_id
            try:
                receipt = Receipt.decode(path.read_bytes())
            except FileNotFoundError:
                receipt = None
            if receipt is None or receipt.proposer != peer.name:
                raise NotFound(f"no receipt {receipt_id} for {peer.name}")
            return check_pb2.GetReceiptResponse(receipt=receipt.encode())

        return await self._guard(context, work())


def _timed_details(query: Query, assessment: Assessment, admission: Admission) -> dict[str, object]:
    """What a check with timed groups adds to its audit entry: their sizes and volume."""
    if not query.timed_groups or admission.volume_charge is None:
        return {}
    return {
        "timed_group_sizes": {f"{r}/{level}": n for (r, level), n in query.timed_sizes().items()},
        "volume_km2h": assessment.volume_km2h,
        "remaining_km2h": admission.volume_charge.remaining,
    }
