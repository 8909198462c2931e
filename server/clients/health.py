"""Ask a node's local health endpoint (``serve --health-listen``) how it is: ``hexpsi probe``.

The endpoint speaks the standard gRPC health service without TLS, on loopback,
so the probe needs no node directory and no pinned certificate: it is what a
container's HEALTHCHECK or a systemd/Kubernetes probe runs.
"""

from __future__ import annotations

from typing import cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hexpsi.protocol.errors import NotFound, Unavailable
from hexpsi.server.node.config import parse_address

DEFAULT_TIMEOUT_SECONDS = 5.0
SERVING = "SERVING"


def health_status(
    address: str, *, service: str = "", timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> str:
    """``SERVING``, ``NOT_SERVING`` (or another status name) for ``service`` at ``address``.

    ``service`` ``""`` asks about the whole server. An endpoint that does not
    answer within ``timeout`` seconds is ``Unavailable``; a service it does not
    know is ``NotFound``.
    """
    host, port = parse_address(address, what="health endpoint")
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            call = cast("grpc.Call", error)  # what the blocking API raises is both
            if call.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(
                    f"the health endpoint at {address} knows no service {service!r}"
                ) from None
            details = " ".join((call.details() or call.code().name).split())
            raise Unavailable(
                f"no health endpoint answers at {address}: {details}",
                hint="is hexpsi serve running with --health-listen at that address?",
            ) from None
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
