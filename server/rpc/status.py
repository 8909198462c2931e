"""hexpsi's error statuses on the wire: one mapping, one way to end a call with one.

``hexpsi.protocol.errors`` names the outcome (``Status``); this maps it to the
gRPC code a peer sees, and back for the client, so a refusal reads the same on
both sides. Servicers end a call with :func:`abort` and nothing else.
"""

from __future__ import annotations

from typing import NoReturn

import grpc

from hexpsi.protocol.errors import HexpsiError, Status

GRPC_CODES: dict[Status, grpc.StatusCode] = {
    Status.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Status.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Status.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Status.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Status.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Status.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Status.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Status.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Status.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
}
STATUSES: dict[grpc.StatusCode, Status] = {code: status for status, code in GRPC_CODES.items()}

PEER_METADATA_KEY = "hexpsi-peer"
"""In plaintext (loopback testing) mode the caller names itself with this metadata key."""


def grpc_code(error: HexpsiError) -> grpc.StatusCode:
    """The gRPC code a peer sees for ``error``."""
    return GRPC_CODES.get(error.status, grpc.StatusCode.INVALID_ARGUMENT)


async def abort(context: grpc.aio.ServicerContext, error: HexpsiError) -> NoReturn:  # type: ignore[type-arg]
    """End the call with ``error``'s status and its one-line explanation."""
    await context.abort(grpc_code(error), error.explain())
    raise AssertionError("context.abort returned")
