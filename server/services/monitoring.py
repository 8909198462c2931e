"""A node's local monitoring endpoints: plaintext gRPC health, and Prometheus metrics.

A local probe (systemd, a container runtime's health check, Kubernetes, a
blackbox exporter) holds no pinned certificate, so it cannot ask the node's
mutual-TLS server whether it is up. ``serve --health-listen HOST:PORT`` opens a
second gRPC server that speaks only the standard health service
(``grpc.health.v1.Health``, Check and Watch) without TLS, and
``serve --metrics-listen HOST:PORT`` serves Prometheus' text format over HTTP
(``prometheus_client``'s exporter, any path). Neither has TLS or
authentication, so both are refused off loopback: only processes on the
node's host (or in its container or pod) reach them. The health endpoint
shares the main server's health servicer, so it reports exactly what the
main server does (SERVING while up, NOT_SERVING from the start of a graceful
shutdown); it serves no reflection and no hexpsi service.

Both are started before the main server and stopped after it, so a probe sees
NOT_SERVING for the whole grace period, then nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import _async as health_aio  # published as grpc_health.v1.health.aio
from grpc_health.v1 import health_pb2_grpc
from prometheus_client import start_http_server
from prometheus_client.process_collector import ProcessCollector

from hexpsi.protocol.errors import InputError
from hexpsi.server.node.directory import Node
from hexpsi.server.services.addresses import bind_address, parse_loopback_listen
from hexpsi.server.services.metrics import StateCollector
from hexpsi.server.services.shared import Shared

log = logging.getLogger(__name__)

HEALTH_OPTION = "--health-listen"
METRICS_OPTION = "--metrics-listen"
HEALTH_SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_concurrent_streams", 8),
    ("grpc.max_receive_message_length", 4096),
]
"""A health request is a service name: small messages, a few streams per connection."""


@dataclass
class Monitoring:
    """The running endpoints (either may be absent) and the ports they bound."""

    health_server: grpc.aio.Server | None = None
    health_port: int | None = None
    metrics_server: WSGIServer | None = None
    metrics_thread: threading.Thread | None = None
    metrics_port: int | None = None

    async def stop(self) -> None:
        """Close both endpoints; stopping a stopped one does nothing."""
        if self.metrics_server is not None:
            server, self.metrics_server = self.metrics_server, None
            await asyncio.to_thread(server.shutdown)
            server.server_close()
            if self.metrics_thread is not None:
                await asyncio.to_thread(self.metrics_thread.join, 5.0)
        if self.health_server is not None:
            server_, self.health_server = self.health_server, None
            await server_.stop(None)


@dataclass(frozen=True, slots=True)
class LocalEndpoints:
    """Where to open the health and metrics endpoints, checked before anything opens."""

    health: tuple[str, int] | None = None
    metrics: tuple[str, int] | None = None
    health_listen: str | None = None
    metrics_listen: str | None = None

    @classmethod
    def parse(
        cls, *, health_listen: str | None = None, metrics_listen: str | None = None
    ) -> LocalEndpoints:
        """Both addresses checked: ``HOST:PORT`` (port 0 for any free one) on loopback."""
        return cls(
            health=None
            if health_listen is None
            else parse_loopback_listen(health_listen, what=HEALTH_OPTION),
            metrics=None
            if metrics_listen is None
            else parse_loopback_listen(metrics_listen, what=METRICS_OPTION),
            health_listen=health_listen,
            metrics_listen=metrics_listen,
        )

    async def start(
        self,
        node: Node,
        shared: Shared,
        health: health_aio.HealthServicer,
        *,
        clock: Callable[[], float] = time.time,
    ) -> Monitoring:
        """Open what was asked for; a port that cannot be bound is one clear error."""
        monitoring = Monitoring()
        try:
            if self.health is not None:
                await self._start_health(monitoring, health)
            if self.metrics is not None:
                self._start_metrics(monitoring, node, shared, clock)
        except BaseException:
            await monitoring.stop()
            raise
        # Said only once both are open: a refusal stays the one line it is.
        if self.health is not None:
            log.info(
                "health checks (plaintext, loopback) on %s:%d",
                self.health[0],
                monitoring.health_port,
            )
        if self.metrics is not None:
            log.info(
                "Prometheus metrics (HTTP, loopback) on %s:%d",
                self.metrics[0],
                monitoring.metrics_port,
            )
        return monitoring

    async def _start_health(
        self, monitoring: Monitoring, health: health_aio.HealthServicer
    ) -> None:
        assert self.health is not None
        host, port = self.health
        server = grpc.aio.server(options=HEALTH_SERVER_OPTIONS)
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        try:
            bound = server.add_insecure_port(bind_address(host, port))
        except RuntimeError as exc:
            raise InputError(
                f"cannot listen on {self.health_listen} ({HEALTH_OPTION}): {exc}"
            ) from None
        await server.start()
        monitoring.health_server, monitoring.health_port = server, bound

    def _start_metrics(
        self, monitoring: Monitoring, node: Node, shared: Shared, clock: Callable[[], float]
    ) -> None:
        assert self.metrics is not None
        host, port = self.metrics
        registry = shared.metrics.registry
        registry.register(StateCollector(node, shared.ledger, shared.epochs, clock))
        ProcessCollector(registry=registry)
        try:
            server, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise InputError(
                f"cannot listen on {self.metrics_listen} ({METRICS_OPTION}): {exc.strerror or exc}"
            ) from None
        monitoring.metrics_server, monitoring.metrics_thread = server, thread
        monitoring.metrics_port = server.server_port
