"""The responder's gRPC servicer: identify the caller, enforce limits, run the protocol.

Each RPC identifies the caller (its pinned TLS certificate, or in loopback
plaintext mode the ``hexpsi-peer`` metadata), then hands the request to the
sans-IO session from ``protocol``. Every error a peer can provoke surfaces as
the status the protocol chose, with a message a person can act on; an
unexpected exception is a bug, logged with its traceback and reported as
INTERNAL without details.

Order inside Evaluate: refuse what the peer's remaining budget cannot pay for
(before any element is decoded), validate everything (no group operation yet),
claim the session id, charge the area budget, evaluate and prove in a worker
thread, log the signed audit entry, store the receipt, answer.
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

from hexpsi.protocol.budget import Window, decide_charge, query_area_km2
from hexpsi.protocol.check.messages import Query, Receipt
from hexpsi.protocol.check.session import ResponderCheck
from hexpsi.protocol.errors import FailedPrecondition, HexpsiError, NotFound, RemoteProtocolError
from hexpsi.protocol.randomness import RandomBytes
from hexpsi.server.node.auditlog import AuditLog
from hexpsi.server.node.directory import Node, Peer
from hexpsi.server.node.epochs import ServedEpoch
from hexpsi.server.node.files import atomic_write, ensure_private_dir
from hexpsi.server.node.ledger import Ledger
from hexpsi.server.rpc.check_convert import request_to_query, response_to_message
from hexpsi.server.rpc.hexpsi.v1 import check_pb2, check_pb2_grpc
from hexpsi.server.rpc.status import abort
from hexpsi.server.services.current_epoch import EpochWatcher
from hexpsi.server.services.gate import PeerGate
from hexpsi.server.workers import WorkerPool

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
        *,
        ledger: Ledger,
        audit: AuditLog,
        plaintext: bool = False,
        clock: Callable[[], float] = time.time,
        rng: RandomBytes = os.urandom,
        snapshot_stall_seconds: float = SNAPSHOT_STALL_SECONDS,
        pool: WorkerPool,
        gate: PeerGate,
        epochs: EpochWatcher,
    ) -> None:
        self.node = node
        self.ledger = ledger
        self.audit = audit
        self.plaintext = plaintext
        self.clock = clock
        self.rng = rng
        self.snapshot_stall_seconds = snapshot_stall_seconds
        self.epochs = epochs
        # Evaluation and proofs spread over the cores: libsodium releases the GIL,
        # so the server's pool runs the group operations of one query in parallel.
        self.pool = pool
        self.gate = gate
        self.receipts_dir = node.directory / RECEIPTS_DIR

    # -- caller identity and limits (shared with the other services through the gate)

    def caller(self, context: grpc.aio.ServicerContext) -> Peer:  # type: ignore[type-arg]
        """The pinned peer making this call, or a refusal."""
        return self.gate.caller(context)

    def session_slot(self, peer: Peer) -> AbstractContextManager[None]:
        """At most ``max_sessions_per_peer`` concurrent calls per peer, across services."""
        return self.gate.session_slot(peer)

    async def _guard(self, context: grpc.aio.ServicerContext, work: Awaitable[T]) -> T:  # type: ignore[type-arg]
        try:
            return await work
        except HexpsiError as error:
            await abort(context, error)

    # -- RPCs

    async def GetDescriptor(
        self,
        request: check_pb2.GetDescriptorRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> check_pb2.GetDescriptorResponse:
        async def work() -> check_pb2.GetDescriptorResponse:
            self.caller(context)
            epoch = self.epochs.get()
            return check_pb2.GetDescriptorResponse(
                descriptor=epoch.descriptor.encoded, signature=epoch.descriptor.signature
            )

        return await self._guard(context, work())

    def _unexpired_epoch(self, now: float) -> ServedEpoch:
        """The current epoch, refused once it has expired: no peer can use it any more.

        The proposer would refuse the signed descriptor as expired anyway; saying so
        here, before a snapshot is streamed or a query validated, tells both sides
        what to fix (the responder's operator sets the positions again).
        """
        epoch = self.epochs.get()
        valid_until = epoch.descriptor.descriptor.valid_until
        if now > valid_until:
            log.warning(
                "epoch %d expired at %.0f and no newer one is set (run hexpsi positions)",
                epoch.sequence,
                valid_until,
            )
            raise FailedPrecondition(
                f"node {self.node.name!r} has no current epoch: epoch {epoch.sequence} expired "
                f"at {valid_until:.0f} (Unix time); its operator must set its positions again",
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
            epoch = self._unexpired_epoch(self.clock())
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
                        return
                    except grpc.aio.InternalError:
                        # The peer cancelled or hung up mid-download: nobody is left to answer.
                        log.info("%s left the snapshot download at block %d", peer.name, first)
                        return

        await self._guard(context, work())

    async def Evaluate(
        self,
        request: check_pb2.EvaluateRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> check_pb2.EvaluateResponse:
        return await self._guard(context, self._evaluate(request, context))

    async def _evaluate(
        self,
        request: check_pb2.EvaluateRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> check_pb2.EvaluateResponse:
        peer = self.caller(context)
        with self.session_slot(peer):
            epoch = self._unexpired_epoch(self.clock())
            query = request_to_query(request)
            session = ResponderCheck(
                descriptor=epoch.descriptor,
                keys=epoch.keys,
                signing_key=self.node.signing_key,
                proposer=peer.name,
                rng=self.rng,
                mapper=self.pool.map,
            )
            now = self.clock()
            await asyncio.to_thread(self._affordable, peer, epoch, query, now)
            assessment = await asyncio.to_thread(session.receive, query, now=now)
            await asyncio.to_thread(self.ledger.claim_session, peer.name, query.session_id, now)
            charge = await asyncio.to_thread(
                self.ledger.charge_area,
                peer.name,
                assessment.area_km2,
                limit_km2=peer.budget_km2,
                window_seconds=peer.window_seconds,
                now=now,
            )
            response = await asyncio.to_thread(session.respond, now=now)
            receipt = response.receipt
            await asyncio.to_thread(self._store_receipt, receipt)
            await asyncio.to_thread(
                self.audit.append,
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
                    "remaining_km2": charge.remaining,
                    "window_resets_at": charge.window.end,
                },
                now,
            )
            log.info(
                "evaluated %d elements for %s: %.3f km², %.3f km² left",
                query.element_count,
                peer.name,
                assessment.area_km2,
                charge.remaining,
            )
            return response_to_message(response)

    def _affordable(self, peer: Peer, epoch: ServedEpoch, query: Query, now: float) -> None:
        """Refuse a query the peer's budget cannot pay for before any element is decoded.

        The charge itself comes later, atomically, once the query is valid; this
        only keeps a peer whose budget is spent from having the responder validate
        thousands of elements per call for nothing. Declared resolutions outside the
        epoch's are left for the protocol to refuse with its own message.
        """
        d = epoch.descriptor.descriptor
        sizes = query.group_sizes()
        if not all(d.res_min <= resolution <= d.res for resolution in sizes):
            return
        window = Window.containing(now, peer.window_seconds)
        decide_charge(
            amount=query_area_km2(sizes, d.res),
            spent_in_window=self.ledger.spent(peer.name, window.start),
            limit=peer.budget_km2,
            window=window,
        )

    def _store_receipt(self, receipt: Receipt) -> None:
        ensure_private_dir(self.receipts_dir)
        atomic_write(self.receipts_dir / receipt.receipt_id, receipt.encode())

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
