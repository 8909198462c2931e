"""The responder's side of the mutual check over gRPC: one bidirectional stream per session.

Order inside a call: identify the caller and take one of its session slots
(the same gate as the check service), read the start, validate it against the
current epoch (no group work yet), claim the session id, charge one mutual
check against the caller's allowance for the window, accept. Then two lanes
run at once: the responder's own set is blinded and streamed out while the
proposer's set is read and double-blinded as it arrives, so the responder's
work on its own map overlaps with waiting for the proposer's. After the
commitment comes the sorted answer, the proposer's reveal, and its signed
statement, which is countersigned only if it matches what the responder
counted itself and is dated within ``[limits] clock_skew_seconds`` of the
responder's clock. Group work runs in worker threads through a thread-pool
``map`` (libsodium releases the GIL), never on the event loop.

Every error a peer can provoke ends the call with the status the protocol
chose; a session that was charged leaves an audit entry whether it completed
or not.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TypeVar

import grpc

from hexpsi.protocol.budget import set_area_km2
from hexpsi.protocol.errors import (
    DeadlineExceeded,
    HexpsiError,
    RemoteProtocolError,
    ResourceExhausted,
)
from hexpsi.protocol.mutual.messages import MutualReceipt, MutualStart
from hexpsi.protocol.mutual.session import ResponderMutual, check_start
from hexpsi.protocol.parallel import Mapper
from hexpsi.protocol.randomness import RandomBytes
from hexpsi.server.node.directory import Node, Peer
from hexpsi.server.node.epochs import MutualInputs, ServedEpoch
from hexpsi.server.node.ledger import Admission, Operation
from hexpsi.server.node.mutual_records import (
    AUDIT_KIND,
    completed_details,
    failed_details,
    store_receipt,
)
from hexpsi.server.rpc.hexpsi.v1 import mutual_pb2, mutual_pb2_grpc
from hexpsi.server.rpc.mutual_convert import (
    accept_response,
    chunk_response,
    countersignature_response,
    read_commitment,
    read_finish,
    read_request_chunk,
    read_start,
)
from hexpsi.server.rpc.status import abort
from hexpsi.server.services.metrics import CANCELLED, OK, STALLED
from hexpsi.server.services.refusals import reason_of
from hexpsi.server.services.shared import Shared
from hexpsi.server.workers import in_threads

log = logging.getLogger(__name__)

IDLE_SECONDS = 120.0
"""How long the responder waits for the proposer's next message, or for it to read one."""
T = TypeVar("T")


def _seen(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class ProposerStream:
    """The proposer's messages, each awaited at most ``idle_seconds``."""

    def __init__(
        self, requests: AsyncIterator[mutual_pb2.MutualRequest], idle_seconds: float
    ) -> None:
        self._requests = aiter(requests)
        self.idle_seconds = idle_seconds

    async def next(self, due: str) -> mutual_pb2.MutualRequest:
        try:
            return await asyncio.wait_for(anext(self._requests), self.idle_seconds)
        except StopAsyncIteration:
            raise RemoteProtocolError(
                f"the proposer ended the stream where {due} was due"
            ) from None
        except TimeoutError:
            raise DeadlineExceeded(
                f"the proposer sent nothing for {self.idle_seconds:.0f} s where {due} was due"
            ) from None


class MutualServicer(mutual_pb2_grpc.MutualServiceServicer):
    """``hexpsi.v1.MutualService`` for one node."""

    def __init__(
        self,
        node: Node,
        shared: Shared,
        *,
        clock: Callable[[], float] = time.time,
        rng: RandomBytes = os.urandom,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.node = node
        self.ledger = shared.ledger
        self.audit = shared.audit
        self.gate = shared.gate
        self.clock = clock
        self.rng = rng
        self.idle_seconds = idle_seconds
        self.epochs = shared.epochs
        # The server's pool, shared with every other service; the server shuts it down.
        self.pool = shared.pool
        self.refusals = shared.refusals
        self.metrics = shared.metrics

    async def Mutual(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[mutual_pb2.MutualRequest],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> None:
        """One session; answers go out with ``context.write``, each within ``idle_seconds``.

        A coroutine rather than an async generator (the generated stubs only know
        the latter) because a generator suspended in ``yield`` cannot time out: a
        proposer that stops reading would hold one of its call slots until its own
        deadline, if it set one. Waiting for the proposer to read is bounded like
        waiting for it to send.
        """
        name: str | None = None
        outcome: str | None = None  # counted once the call ends; a bug counts nothing
        try:
            peer = self.gate.caller(context)
            name = peer.name
            with self.gate.session_slot(peer):
                stream = ProposerStream(request_iterator, self.idle_seconds)
                session = self._session(peer, stream)
                try:
                    async for response in session:
                        outcome = await self._write(context, response, peer)
                        if outcome is not None:
                            return
                finally:
                    await session.aclose()
            outcome = OK
        except HexpsiError as error:
            name = self.gate.name_of(context)
            outcome = reason_of(error)
            self.refusals.note(name, error)
            await abort(context, error)
        except asyncio.CancelledError:
            outcome = CANCELLED
            raise
        finally:
            if outcome is not None:
                self.metrics.mutual_check(name, outcome)

    async def _write(
        self,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        response: mutual_pb2.MutualResponse,
        peer: Peer,
    ) -> str | None:
        """Send ``response``; None once sent, else the call's outcome: the proposer
        stopped reading (``deadline_exceeded``, the status is then set) or went away
        (``cancelled``).

        Returning rather than aborting frees the slot at once: an abort would wait
        behind the messages the stalled reader has not taken.
        """
        try:
            await asyncio.wait_for(context.write(response), self.idle_seconds)
        except TimeoutError:
            log.warning("%s stopped reading its mutual check; ending the call", peer.name)
            context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)
            context.set_details(f"the proposer read nothing for {self.idle_seconds:.0f} s")
            return STALLED
        except grpc.aio.InternalError:
            # The proposer cancelled or hung up: nobody is left to answer.
            log.info("%s left its mutual check", peer.name)
            return CANCELLED
        return None

    async def _session(
        self, peer: Peer, stream: ProposerStream
    ) -> AsyncGenerator[mutual_pb2.MutualResponse, None]:
        start = read_start(await stream.next("the start"))
        now = self.clock()
        epoch = self.epochs.for_digest(start.descriptor_digest, now)
        admission = await asyncio.to_thread(self._admit, peer, epoch, start, now)
        try:
            inputs = await asyncio.to_thread(epoch.mutual_inputs, self.pool.map)
            session = self._open(peer, epoch, inputs, self.pool.map)
            accept = session.receive_start(start, now=now)
        except BaseException:
            # Nothing was sent yet, so nothing could be learned: the charge is undone.
            await asyncio.to_thread(self.ledger.refund, admission.charge_id)
            raise
        charged: dict[str, object] = {
            "epoch_sequence": epoch.sequence,
            "own_cells": len(session.cells),
            "area_km2": admission.charge.amount,
            "remaining_km2": admission.charge.remaining,
            "node_remaining_km2": admission.node_charge.remaining,
        }
        try:
            yield accept_response(accept)
            async for response in self._exchange(session, stream):
                yield response
            receipt = await self._countersign(session, stream)
            await asyncio.to_thread(self._record, peer, receipt, charged)
        except (Exception, asyncio.CancelledError, GeneratorExit) as error:
            # When both lanes fail, the one that parked the session says why.
            cause = session.failure if isinstance(error, HexpsiError) else None
            self._record_failure(peer, session, cause or error, charged)
            if cause is not None and cause is not error:
                raise cause from None
            raise
        finally:
            # Once the accept went out the charge stands, completed or not, and is logged.
            await asyncio.to_thread(self.ledger.confirm, admission.charge_id)
            self.metrics.charged(peer.name, Operation.MUTUAL, admission.charge.amount)
            session.release()
        log.info(
            "mutual check for %s: %d shared cells at res %d, receipt %s",
            peer.name,
            receipt.statement.shared_cells,
            receipt.statement.res,
            receipt.receipt_id,
        )
        yield countersignature_response(receipt.responder_signature)

    def _admit(self, peer: Peer, epoch: ServedEpoch, start: MutualStart, now: float) -> Admission:
        """Refuse or charge before anything is loaded, decoded, computed or sent.

        The proposer's padded set size S bounds what a cheating proposer can learn
        of this map (whether each of about S cells it chose is in it), so the
        call is charged S cells at the agreed resolution against the peer's area
        budget and the node-wide one, besides one mutual check of its allowance.
        """
        check_start(start, epoch.descriptor, now=now)
        size = start.proposer_set_size
        if size > peer.max_set_size:
            raise ResourceExhausted(
                f"a mutual check with a set of {size:,} elements is more than the "
                f"{peer.max_set_size:,} this node accepts from {peer.name}",
                hint="the operator sets it with max_set_size in the peer's file",
            )
        return self.ledger.admit(
            peer.name,
            operation=Operation.MUTUAL,
            area_km2=set_area_km2(size, epoch.descriptor.descriptor.res),
            allowances=self.node.allowances(peer, Operation.MUTUAL),
            now=now,
            session_id=start.session_id,
            what=f"a mutual check by {peer.name} with {size:,} elements",
        )

    def _open(
        self, peer: Peer, epoch: ServedEpoch, inputs: MutualInputs, mapper: Mapper
    ) -> ResponderMutual:
        return ResponderMutual(
            descriptor=epoch.descriptor,
            signing_key=self.node.signing_key,
            proposer=peer.name,
            proposer_key=peer.identity.verify_key,
            cells=inputs.cells,
            points=inputs.points,
            rng=self.rng,
            mapper=mapper,
        )

    async def _exchange(
        self, session: ResponderMutual, stream: ProposerStream
    ) -> AsyncIterator[mutual_pb2.MutualResponse]:
        """Both blinded sets at once, then the commitment and the sorted answer."""
        incoming = asyncio.create_task(self._receive_proposer_set(session, stream))
        # If the call ends first (the proposer went away), the lane's own error is moot:
        # marked as seen, asyncio does not report it as lost.
        incoming.add_done_callback(_seen)
        try:
            async for chunk in in_threads(session.own_chunks()):
                if incoming.done():
                    incoming.result()  # a bad proposer chunk ends the call now
                yield chunk_response("blinded", chunk)
            await incoming
        finally:
            incoming.cancel()
        commitment = read_commitment(await stream.next("the commitment"))
        session.receive_commitment(commitment)
        for chunk in await asyncio.to_thread(session.answer):
            yield chunk_response("double_blinded", chunk)

    async def _receive_proposer_set(self, session: ResponderMutual, stream: ProposerStream) -> None:
        while not session.proposer_set_complete:
            message = await stream.next("a chunk of the proposer's blinded set")
            chunk = read_request_chunk(message, "blinded")
            await asyncio.to_thread(session.receive_proposer_chunk, chunk)

    async def _countersign(self, session: ResponderMutual, stream: ProposerStream) -> MutualReceipt:
        while not session.reveal_complete:
            message = await stream.next("a chunk of the double-blinded responder set")
            chunk = read_request_chunk(message, "double_blinded")
            await asyncio.to_thread(session.receive_reveal_chunk, chunk)
        finish = read_finish(await stream.next("the signed statement"))
        return await asyncio.to_thread(
            session.countersign,
            finish,
            now=self.clock(),
            max_skew=self.node.config.limits.clock_skew_seconds,
        )

    def _record(self, peer: Peer, receipt: MutualReceipt, charged: dict[str, object]) -> None:
        store_receipt(self.node, receipt)
        self.audit.append(
            AUDIT_KIND,
            peer.name,
            completed_details(receipt, role="responder", **charged),
            self.clock(),
        )

    def _record_failure(
        self,
        peer: Peer,
        session: ResponderMutual,
        error: BaseException,
        charged: dict[str, object],
    ) -> None:
        """Log a charged session that did not complete, with the count if we had counted."""
        learned = {} if session.shared_cells is None else {"shared_cells": session.shared_cells}
        details = failed_details(
            role="responder",
            session_id=session.session_id,
            error=error,
            **charged,
            **learned,
        )
        try:
            self.audit.append(AUDIT_KIND, peer.name, details, self.clock())
        except HexpsiError:
            log.exception("could not log the failed mutual check of %s", peer.name)
