"""Who is calling, and how many calls each peer may have open: shared by every servicer.

A caller is identified by the pinned TLS certificate it presented (never by a
name inside it), or, in loopback plaintext mode, by the ``hexpsi-peer``
metadata it sends. Every service of a node shares one :class:`PeerGate`, so
``max_sessions_per_peer`` bounds a peer's open calls across all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from hexpsi.protocol.errors import (
    HexpsiError,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from hexpsi.server.node.directory import Node, Peer
from hexpsi.server.rpc.status import PEER_METADATA_KEY, abort

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]


class PeerGate:
    """Caller identification and per-peer concurrency limits for one node."""

    def __init__(self, node: Node, *, plaintext: bool = False) -> None:
        self.node = node
        self.plaintext = plaintext
        self._active: dict[str, int] = {}
        self._tasks: dict[str, set[asyncio.Task[Any]]] = {}
        self._revoked: set[asyncio.Task[Any]] = set()

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

    def name_of(self, context: grpc.aio.ServicerContext) -> str | None:  # type: ignore[type-arg]
        """The calling peer's name, or None if it is not one (never raises)."""
        try:
            return self.caller(context).name
        except HexpsiError:
            return None

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
        task = asyncio.current_task()
        if task is not None:
            self._tasks.setdefault(peer.name, set()).add(task)
        try:
            yield
        except asyncio.CancelledError:
            if task is None or task not in self._revoked:
                raise
            # Ended by revoke(): the call fails with a status that says why, not CANCELLED.
            self._revoked.discard(task)
            task.uncancel()
            raise PermissionDenied(
                f"{peer.name} is no longer pinned here; the operator removed it"
            ) from None
        finally:
            self._active[peer.name] -= 1
            if task is not None:
                self._tasks.get(peer.name, set()).discard(task)

    def revoke(self, names: Iterable[str]) -> int:
        """End the open calls of peers that are no longer pinned; returns how many.

        Their next calls are refused by :meth:`caller`, which no longer finds them.
        """
        ended = 0
        for name in names:
            for task in self._tasks.pop(name, set()):
                self._revoked.add(task)
                task.cancel()
                ended += 1
        return ended


STREAMING_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""gRPC's own services whose streams a peer could hold open; they count like ours."""


class CountStreams(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Health ``Watch`` and reflection streams take one of the caller's call slots.

    Without this a pinned peer could hold any number of them open beside its
    ``max_sessions_per_peer`` calls. The caller must be a pinned peer, as for
    every other call.
    """

    def __init__(self, gate: PeerGate) -> None:
        self.gate = gate

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler: Handler | None = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not str(method).startswith(STREAMING_SERVICES):
            return handler  # type: ignore[return-value]
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._unary_stream(handler.unary_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream_stream(handler.stream_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return handler

    def _unary_stream(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(request: Any, context: Context) -> Any:
            try:
                peer = self.gate.caller(context)
                with self.gate.session_slot(peer):
                    return await behavior(request, context)
            except HexpsiError as error:
                await abort(context, error)

        return counted

    def _stream_stream(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(requests: Any, context: Context) -> AsyncIterator[Any]:
            try:
                with self.gate.session_slot(self.gate.caller(context)):
                    async for response in behavior(requests, context):
                        yield response
            except HexpsiError as error:
                await abort(context, error)

        return counted
