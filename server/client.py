"""The proposer's side over gRPC: dial a pinned peer, fetch, verify, check, keep evidence.

``PeerClient`` owns one channel to one peer (mutual TLS with the peer's pinned
certificate as the only trusted root, or loopback plaintext) and turns every
RPC failure into a ``HexpsiError`` that says what happened. ``run_check`` is
the whole check: descriptor (signature, freshness, no replay), snapshot
(cached, resumable, verified), the verified evaluation, then the result,
receipt and evidence bundle stored in the node directory and logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import grpc

from protocol.check import CheckResult, ProposerCheck
from protocol.descriptor import SignedDescriptor
from protocol.errors import HexpsiError, RemoteProtocolError, Status, VerificationError
from protocol.evidence import export_evidence
from protocol.messages import Query, Response
from server.executor import default_workers
from server.fsutil import atomic_write, make_private_dir
from server.node import Node, Peer
from server.rpc.hexpsi.v1 import check_pb2, check_pb2_grpc
from server.snapcache import CachedSnapshot, SnapshotCache
from server.wire import PEER_METADATA_KEY, STATUSES, message_to_response, query_to_request

log = logging.getLogger(__name__)

CHECKS_DIR = "checks"
DEFAULT_TIMEOUT_SECONDS = 60.0
SNAPSHOT_TIMEOUT_SECONDS = 3600.0
MAX_SNAPSHOT_BYTES = 4 << 30
MIN_RECEIVE_BYTES = 2 << 20
"""A responder streams up to 1 MiB of snapshot blocks per message; always accept that much,
whatever smaller limit this node sets for what its own server receives."""
Progress = Callable[[int, int], None]
"""``progress(done_bytes, total_bytes)`` while a snapshot downloads."""


class PeerClient:
    """One channel to one pinned peer."""

    def __init__(
        self,
        node: Node,
        peer: Peer,
        *,
        plaintext: bool = False,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.node = node
        self.peer = peer
        self.timeout = timeout
        limit = node.config.limits.max_message_bytes
        options: list[tuple[str, str | int]] = [
            ("grpc.max_receive_message_length", max(limit, MIN_RECEIVE_BYTES)),
            ("grpc.max_send_message_length", limit),
        ]
        if plaintext:
            self.channel = grpc.aio.insecure_channel(peer.address, options=options)
            self.metadata: tuple[tuple[str, str], ...] = ((PEER_METADATA_KEY, node.name),)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=peer.identity.certificate_pem,
                private_key=node.tls_key_pem,
                certificate_chain=node.tls_certificate_pem,
            )
            # The pinned certificate is self-signed for the peer's name, whatever address it
            # is dialled at; verify that name rather than the address.
            options.append(("grpc.ssl_target_name_override", peer.name))
            self.channel = grpc.aio.secure_channel(peer.address, credentials, options=options)
            self.metadata = ()
        self.stub = check_pb2_grpc.CheckServiceStub(self.channel)

    async def __aenter__(self) -> PeerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.channel.close(None)

    def _failure(self, error: grpc.aio.AioRpcError, what: str) -> HexpsiError:
        code = error.code()
        # One line whatever the transport wrote: the CLI prints errors as single lines.
        details = " ".join((error.details() or code.name).split())
        if code == grpc.StatusCode.UNAVAILABLE:
            return HexpsiError(
                f"peer {self.peer.name} is unreachable at {self.peer.address} ({what}): {details}",
                status=Status.UNAVAILABLE,
                hint="is its server running, has it pinned this node (hexpsi peer add), "
                "and does its certificate match the one pinned here?",
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return HexpsiError(
                f"peer {self.peer.name} did not answer {what} in time",
                status=Status.DEADLINE_EXCEEDED,
            )
        return HexpsiError(
            f"peer {self.peer.name} refused {what}: {details}",
            status=STATUSES.get(code, Status.UNAVAILABLE),
        )

    async def fetch_descriptor(
        self, *, now: float, newer_than: int | None = None
    ) -> SignedDescriptor:
        """The peer's current descriptor, verified with its pinned signing key."""
        try:
            reply = await self.stub.GetDescriptor(
                check_pb2.GetDescriptorRequest(), timeout=self.timeout, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as error:
            raise self._failure(error, "the descriptor request") from None
        return SignedDescriptor.verify(
            reply.descriptor,
            reply.signature,
            self.peer.identity.verify_key,
            now=now,
            expected_node=self.peer.name,
            newer_than=newer_than,
        )

    async def download_snapshot(
        self, cached: CachedSnapshot, *, progress: Progress | None = None
    ) -> None:
        """Fetch whatever blocks ``cached`` still lacks, verifying each, then the digest.

        Blocks kept from an interrupted download can only be checked against the
        digest once the snapshot is whole; if a resumed download then fails
        verification, the stored part is dropped and the snapshot fetched once more
        from the start, so a damaged cache costs a download rather than the check.
        A fresh download that fails is the peer's fault and is reported as such.
        """
        descriptor = cached.descriptor.descriptor
        total = descriptor.snapshot_bytes
        if total > MAX_SNAPSHOT_BYTES or cached.params.max_snapshot_bytes() < total:
            raise HexpsiError(
                f"peer {self.peer.name} announces a {total}-byte snapshot; refusing to download",
                status=Status.PERMISSION_DENIED,
            )
        resumed = 0 < cached.reader.next_index < cached.params.block_count
        try:
            await self._stream_missing(cached, progress)
            await asyncio.to_thread(cached.finish)
        except RemoteProtocolError:
            await asyncio.to_thread(cached.discard)
            if not resumed:
                raise
            log.warning(
                "snapshot of %s failed verification after resuming; fetching it again",
                self.peer.name,
            )
            await self._stream_missing(cached, progress)
            await asyncio.to_thread(cached.finish)

    async def _stream_missing(self, cached: CachedSnapshot, progress: Progress | None) -> None:
        if cached.reader.complete:
            return
        descriptor = cached.descriptor.descriptor
        total = descriptor.snapshot_bytes
        request = check_pb2.GetSnapshotRequest(
            epoch_id=descriptor.epoch_id, start_block=cached.reader.next_index
        )
        try:
            async for chunk in self.stub.GetSnapshot(
                request, timeout=SNAPSHOT_TIMEOUT_SECONDS, metadata=self.metadata
            ):
                if chunk.block_count != cached.params.block_count:
                    raise VerificationError(
                        f"peer {self.peer.name} streams a snapshot of a different size"
                    )
                await asyncio.to_thread(cached.append, chunk.first_block, list(chunk.blocks))
                if cached.stored_bytes > total:
                    raise VerificationError(
                        f"peer {self.peer.name} sent more snapshot bytes than announced"
                    )
                if progress:
                    progress(cached.stored_bytes, total)
        except grpc.aio.AioRpcError as error:
            raise self._failure(error, "the snapshot download") from None

    async def evaluate(self, query: Query) -> Response:
        try:
            reply = await self.stub.Evaluate(
                query_to_request(query), timeout=self.timeout, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as error:
            raise self._failure(error, "the check") from None
        return message_to_response(reply)


@dataclass
class CheckReport:
    """A finished check as the proposer keeps it."""

    peer: str
    result: CheckResult
    descriptor: SignedDescriptor
    strike_cells: frozenset[int]
    directory: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def receipt_id(self) -> str:
        return self.result.receipt.receipt_id


def _store_check(node: Node, report: CheckReport, evidence_json: bytes) -> None:
    report.directory.parent.mkdir(mode=0o700, exist_ok=True)
    make_private_dir(report.directory)
    atomic_write(report.directory / "evidence.json", evidence_json, mode=0o600)
    atomic_write(report.directory / "receipt.bin", report.result.receipt.encode(), mode=0o600)


async def run_check(
    node: Node,
    peer_name: str,
    strike_cells: Iterable[int] | Callable[[int], Iterable[int]],
    *,
    plaintext: bool = False,
    progress: Progress | None = None,
    now: Callable[[], float] = time.time,
) -> CheckReport:
    """One complete, verified check of ``strike_cells`` against ``peer_name``.

    ``strike_cells`` are cells at the responder's ``res``, or a function that
    covers the strike at a resolution: it is called with the ``res`` of the
    peer's verified descriptor, which may differ from this node's own.
    """
    peer = node.peer(peer_name)
    cache = SnapshotCache(node.directory)
    timings: dict[str, float] = {}
    signer = peer.identity.signing_public_key
    async with PeerClient(node, peer, plaintext=plaintext) as client:
        started = time.perf_counter()
        descriptor = await client.fetch_descriptor(
            now=now(), newer_than=cache.latest_sequence(peer.name, signer)
        )
        cache.accept_sequence(peer.name, descriptor.descriptor.sequence, signer)
        if callable(strike_cells):
            cover = strike_cells
            strike = frozenset(await asyncio.to_thread(cover, descriptor.descriptor.res))
        else:
            strike = frozenset(strike_cells)
        cached = await asyncio.to_thread(cache.open, peer.name, descriptor)
        timings["descriptor_s"] = time.perf_counter() - started
        started = time.perf_counter()
        await client.download_snapshot(cached, progress=progress)
        timings["snapshot_s"] = time.perf_counter() - started
        started = time.perf_counter()
        with ThreadPoolExecutor(default_workers(), thread_name_prefix="hexpsi-check") as pool:
            session = ProposerCheck(
                descriptor=descriptor,
                responder_key=peer.identity.verify_key,
                snapshot=cached.reader,
                proposer=node.name,
                strike_cells=strike,
                rng=os.urandom,
                mapper=pool.map,
            )
            query = await asyncio.to_thread(session.start)
            response = await client.evaluate(query)
            result = await asyncio.to_thread(session.finish, response)
        timings["check_s"] = time.perf_counter() - started
    evidence = await asyncio.to_thread(export_evidence, session)
    report = CheckReport(
        peer=peer.name,
        result=result,
        descriptor=descriptor,
        strike_cells=strike,
        directory=node.directory / CHECKS_DIR / result.receipt.receipt_id,
        timings=timings,
    )
    await asyncio.to_thread(_store_check, node, report, evidence.to_json())
    with node.open_audit_log() as audit:
        audit.append(
            "check",
            peer.name,
            {
                "receipt_id": report.receipt_id,
                "epoch_id": result.epoch_id.hex(),
                "epoch_sequence": descriptor.descriptor.sequence,
                "conflict": result.conflict,
                "conflicting_tokens": len(result.conflicting_tokens),
                "tokens_sent": result.tokens_sent,
                "elements_sent": result.elements_sent,
                "area_km2": result.receipt.area_km2,
            },
            now(),
        )
    log.info(
        "check against %s: %s (%d conflicting tokens), receipt %s",
        peer.name,
        "CONFLICT" if result.conflict else "CLEAR",
        len(result.conflicting_tokens),
        report.receipt_id,
    )
    return report
