"""Who is calling, and how many calls each peer may have open: shared by every servicer.

A caller is identified by the pinned TLS certificate it presented (never by a
name inside it), or, in loopback plaintext mode, by the ``hexpsi-peer``
metadata it sends. Every service of a node shares one :class:`PeerGate`, so
``max_sessions_per_peer`` bounds a peer's open calls across all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from hexpsi.protocol.errors import (
    HexpsiError,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from hexpsi.server.node.directory import Node, Peer
from hexpsi.server.rpc.status import PEER_METADATA_KEY


class PeerGate:
    """Caller identification and per-peer concurrency limits for one node."""

    def __init__(self, node: Node, *, plaintext: bool = False) -> None:
        self.node = node
        self.plaintext = plaintext
        self._active: dict[str, int] = {}

    def caller(self, context: grpc.aio.ServicerContext) -> Peer:  # type: ignore[type-arg]
        """The pinned peer making this call, or a refusal."""
        if self.plaintext:
            names = [v for k, v in context.invocation_metadata() or () if k == PEER_METADATA_KEY]
            if len(names) != 1 or not isinstance(names[0], str):
                raise Unauthenticated(
                    f"plaintext mode: name yourself with one {PEER_METADATA_KEY!r} metadata entry",
                )
            try:
                return self.node.peer(names[0])
            except HexpsiError:
                raise PermissionDenied(f"{names[0]!r} is not a pinned peer") from None
        certificates = list(context.auth_context().get("x509_pem_cert", []))
        if len(certificates) != 1:
            raise Unauthenticated("a client certificate is required (mutual TLS)")
        peer = self.node.peer_by_certificate(certificates[0])
        if peer is None:
            raise PermissionDenied(
                "your certificate is not pinned here; ask the operator to run hexpsi peer add",
            )
        return peer

    def active(self, peer: str) -> int:
        """How many calls ``peer`` has open right now."""
        return self._active.get(peer, 0)

    @contextmanager
    def session_slot(self, peer: Peer) -> Iterator[None]:
        """At most ``max_sessions_per_peer`` concurrent calls per peer."""
        limit = self.node.config.limits.max_sessions_per_peer
        if self._active.get(peer.name, 0) >= limit:
            raise ResourceExhausted(
                f"peer {peer.name} already has {limit} calls in progress; retry when one ends",
            )
        self._active[peer.name] = self._active.get(peer.name, 0) + 1
        try:
            yield
        finally:
            self._active[peer.name] -= 1
