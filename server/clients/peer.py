"""A channel to one pinned peer, and its check-service calls: descriptor, snapshot, evaluate.

``PeerClient`` owns one channel to one peer (mutual TLS with the peer's pinned
certificate as the only trusted root, or loopback plaintext) and turns every
RPC failure into a ``HexpsiError`` that says what happened. The mutual check
opens its own stream on the same channel (``clients.mutual``).

A peer that rotated its signing key presents its rotation statements with its
descriptor; when the descriptor does not verify with the key pinned here, the
statements that lead on from it are followed and the peer re-pinned
(``Node.follow_rotations``), and :attr:`PeerClient.peer` is then the re-pinned
peer: callers take the peer's key from there after :meth:`fetch_descriptor`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType

import grpc
from nacl.signing import VerifyKey

from hexpsi.protocol.check.messages import Query, Response
from hexpsi.protocol.crypto.signing import signature_is_valid
from hexpsi.protocol.epoch.descriptor import SignedDescriptor
from hexpsi.protocol.errors import HexpsiError, RemoteProtocolError, Status, VerificationError
from hexpsi.server.node.descriptors import (
    EQUIVOCATION_AUDIT_KIND,
    AcceptedDescriptors,
    Equivocation,
    EquivocationRecord,
)
from hexpsi.server.node.directory import Node, Peer
from hexpsi.server.node.snapshot_cache import CachedSnapshot
from hexpsi.server.rpc.check_convert import message_to_response, query_to_request
from hexpsi.server.rpc.hexpsi.v1 import check_pb2, check_pb2_grpc
from hexpsi.server.rpc.status import PEER_METADATA_KEY, STATUSES

log = logging.getLogger(__name__)

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
                "and does its certificate match the one pinned here? (after a TLS rotation, "
                "apply its statement: hexpsi peer update DIR NAME --rotation FILE)",
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

    async def fetch_descriptor(self, *, now: float) -> SignedDescriptor:
        """The peer's current descriptor, accepted the one way both checks share.

        Verified with the peer's pinned signing key, fresh at ``now`` within this
        node's ``clock_skew_seconds``, not older than a sequence already accepted
        (a replay) and not a second, different one for a sequence already accepted
        (an equivocation: refused, both kept as proof and logged in the audit log);
        then kept (``node.descriptors``). A descriptor that does not verify with
        the pinned key, presented with rotation statements, re-pins the peer as far
        as the statements lead from the pinned key (and is then judged under the
        new key); the replay floor is the highest sequence accepted under any of
        the peer's keys this node followed it through.
        """
        try:
            reply = await self.stub.GetDescriptor(
                check_pb2.GetDescriptorRequest(), timeout=self.timeout, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as error:
            raise self._failure(error, "the descriptor request") from None
        verify_key = self.peer.identity.verify_key
        if reply.rotations and not signature_is_valid(
            verify_key, reply.descriptor, reply.signature
        ):
            self.peer = await asyncio.to_thread(
                self.node.follow_rotations, self.peer.name, list(reply.rotations), now=now
            )
            verify_key = self.peer.identity.verify_key
        accepted = AcceptedDescriptors(self.node.directory)
        newer_than = await asyncio.to_thread(self._replay_floor, accepted)
        descriptor = SignedDescriptor.verify(
            reply.descriptor,
            reply.signature,
            verify_key,
            now=now,
            max_skew=self.node.config.limits.clock_skew_seconds,
            expected_node=self.peer.name,
            newer_than=newer_than,
        )
        earlier = [VerifyKey(s.rotation.old_signing_key) for s in self.peer.rotations]
        try:
            await asyncio.to_thread(
                accepted.accept, self.peer.name, descriptor, verify_key, earlier
            )
        except Equivocation as error:
            if error.newly_found:
                await asyncio.to_thread(self._log_equivocation, error.record, now)
            raise
        return descriptor

    def _replay_floor(self, accepted: AcceptedDescriptors) -> int | None:
        """The highest sequence accepted from this peer under any of its keys followed here."""
        keys = [VerifyKey(s.rotation.old_signing_key) for s in self.peer.rotations]
        keys.append(self.peer.identity.verify_key)
        # A rotation that changed only the certificate names the same key twice.
        keys = list({bytes(key): key for key in keys}.values())
        floors = [accepted.newest(self.peer.name, key) for key in keys]
        known = [floor for floor in floors if floor is not None]
        return max(known) if known else None

    def _log_equivocation(self, record: EquivocationRecord, now: float) -> None:
        log.warning(
            "peer %s equivocated: two signed descriptors with sequence %d, kept in %s",
            record.peer,
            record.sequence,
            record.directory,
        )
        details = {
            "sequence": record.sequence,
            "first_digest": record.first_digest.hex(),
            "second_digest": record.second_digest.hex(),
            "proof": str(record.directory.relative_to(self.node.directory)),
        }
        try:
            with self.node.open_audit_log() as audit:
                audit.append(EQUIVOCATION_AUDIT_KIND, record.peer, details, now)
        except HexpsiError:
            # The proof is on disk and the equivocation is still refused; say why it
            # is missing from the log rather than hide the refusal behind this error.
            log.exception("could not log the equivocation of %s", record.peer)

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
