"""Refuse requests that are not valid protobuf with INVALID_ARGUMENT, for every service.

gRPC parses each request before any handler runs; when the bytes are not a
valid message, grpc.aio answers UNKNOWN and names the Python exception. A peer
sending garbage deserves a deliberate status that says what was wrong, and the
server's internals stay private. This interceptor swaps in a deserializer that
never raises (it returns a :class:`Malformed` marker instead) and wraps each
handler so the marker ends the call with INVALID_ARGUMENT. For streamed
requests, the marker raises ``RemoteProtocolError`` where the handler reads the
stream, so the handler's own error path chooses the status.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from hexpsi.protocol.errors import RemoteProtocolError

Deserializer = Callable[[bytes], Any]
if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]


@dataclass(frozen=True, slots=True)
class Malformed:
    """Stands in for a request that did not parse."""

    message_type: str

    def explain(self) -> str:
        return f"the request is not a valid {self.message_type} message"


def _message_type(deserializer: Deserializer) -> str:
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request"))


def safe_deserializer(deserializer: Deserializer | None) -> Deserializer | None:
    """``deserializer``, but a parse failure yields a :class:`Malformed` marker."""
    if deserializer is None:
        return None
    marker = Malformed(_message_type(deserializer))

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except (DecodeError, ValueError, TypeError):
            return marker

    return parse


class MalformedRequest(RemoteProtocolError):
    """A streamed request did not parse; raised where the handler reads the stream."""


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Malformed):
            raise MalformedRequest(request.explain())
        yield request


def _unary_request(behavior: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def stream_out(request: Any, context: Context) -> AsyncIterator[Any]:
            if isinstance(request, Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.explain())
            async for response in behavior(request, context):
                yield response

        return stream_out

    async def single(request: Any, context: Context) -> Any:
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.explain())
        return await behavior(request, context)

    return single


def _stream_request(behavior: Callable[..., Any]) -> Callable[..., Any]:
    """Handlers that do not turn the error into a status themselves (health, reflection)
    still end the call with INVALID_ARGUMENT."""
    if inspect.isasyncgenfunction(behavior):

        async def stream_out(requests: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async for response in behavior(_checked(requests), context):
                    yield response
            except MalformedRequest as error:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)

        return stream_out

    async def single(requests: Any, context: Context) -> Any:
        try:
            return await behavior(_checked(requests), context)
        except MalformedRequest as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)

    return single


def guard_handler(handler: Handler) -> Handler:
    """The same RPC, with malformed requests refused as INVALID_ARGUMENT."""
    parse = safe_deserializer(handler.request_deserializer)
    serialize = handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _unary_request(handler.unary_unary), parse, serialize
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _unary_request(handler.unary_stream), parse, serialize
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _stream_request(handler.stream_unary), parse, serialize
        )
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        _stream_request(handler.stream_stream), parse, serialize
    )


class RejectMalformed(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Server interceptor applying :func:`guard_handler` to every method."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler: Handler | None = await continuation(handler_call_details)
        if handler is None:  # no such method: gRPC answers UNIMPLEMENTED itself
            return handler  # type: ignore[return-value]
        return guard_handler(handler)
