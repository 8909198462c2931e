"""Start and stop a node's gRPC server: credentials, limits, health and reflection.

``start_server`` binds (port 0 works, for tests) and returns a handle;
``serve`` runs until SIGTERM/SIGINT, then marks health NOT_SERVING, lets calls
in flight finish within a grace period and closes the node's databases.
Mutual TLS is the default; plaintext is refused unless the listen address is a
loopback address, where only local processes can reach it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass

import grpc
from grpc_health.v1 import _async as health_aio  # published as grpc_health.v1.health.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hexpsi.protocol.errors import HexpsiError, InputError
from hexpsi.server.node.auditlog import AuditLog
from hexpsi.server.node.directory import Node
from hexpsi.server.node.epochs import EpochStore
from hexpsi.server.node.ledger import Ledger
from hexpsi.server.node.running import Claim, claim
from hexpsi.server.rpc.hexpsi.v1 import check_pb2, check_pb2_grpc, mutual_pb2, mutual_pb2_grpc
from hexpsi.server.services.addresses import is_loopback, parse_listen
from hexpsi.server.services.check import CheckServicer
from hexpsi.server.services.current_epoch import EpochWatcher
from hexpsi.server.services.gate import CountStreams, PeerGate
from hexpsi.server.services.malformed import RejectMalformed
from hexpsi.server.services.monitoring import LocalEndpoints, Monitoring
from hexpsi.server.services.mutual import MutualServicer
from hexpsi.server.services.peer_watch import PeerWatcher
from hexpsi.server.services.refusals import RefusalTally
from hexpsi.server.services.shared import Shared
from hexpsi.server.services.upkeep import Upkeep
from hexpsi.server.workers import WorkerPool

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    check_pb2.DESCRIPTOR.services_by_name["CheckService"].full_name,
    mutual_pb2.DESCRIPTOR.services_by_name["MutualService"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)
SHUTDOWN_GRACE_SECONDS = 10.0
MAX_CONCURRENT_STREAMS = 32


def server_options(node: Node) -> list[tuple[str, int]]:
    limit = node.config.limits.max_message_bytes
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
        ("grpc.so_reuseport", 0),
    ]


@dataclass
class RunningServer:
    """A started server and what must be closed with it."""

    server: grpc.aio.Server
    port: int
    servicer: CheckServicer
    health: health_aio.HealthServicer
    ledger: Ledger
    audit: AuditLog
    pool: WorkerPool
    upkeep: Upkeep
    background: list[asyncio.Task[None]]
    """Housekeeping and the peer watcher, cancelled at stop."""
    claim: Claim
    peers: PeerWatcher
    stopped: bool = False
    monitoring: Monitoring | None = None
    """The local health and metrics endpoints, if asked for; stopped after the server."""

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """NOT_SERVING first, then let calls in flight finish, then close the stores.

        Stopping a stopped server does nothing.
        """
        if self.stopped:
            return
        self.stopped = True
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.monitoring is not None:
            await self.monitoring.stop()
        for task in self.background:
            task.cancel()
        self.pool.shutdown()
        try:
            await asyncio.to_thread(self.upkeep.run_once)
        except HexpsiError as error:
            log.error("final housekeeping failed: %s", error.explain())
        finally:
            self.ledger.close()
            self.audit.close()
            self.claim.close()


async def start_server(
    node: Node,
    *,
    plaintext: bool = False,
    listen: str | None = None,
    health_listen: str | None = None,
    metrics_listen: str | None = None,
) -> RunningServer:
    """Build and start the server for ``node`` on ``listen`` (default: its config).

    ``RunningServer.port`` is the port actually bound (``listen`` may ask for port 0).
    ``health_listen`` and ``metrics_listen`` open the local monitoring endpoints
    (loopback only, see ``services.monitoring``).
    """
    address = listen or node.config.listen
    host, port = parse_listen(address)
    if plaintext and not is_loopback(host):
        raise InputError(
            f"refusing plaintext on {address}: plaintext is only for loopback testing",
            hint="listen on 127.0.0.1 or drop --plaintext to use mutual TLS",
        )
    local = LocalEndpoints.parse(health_listen=health_listen, metrics_listen=metrics_listen)
    gate = PeerGate(node, plaintext=plaintext)
    peers = PeerWatcher(node, gate)
    # Before any store is opened: a node that pinned nobody is refused here.
    credentials = None if plaintext else peers.credentials()
    held = claim(node.directory, address, now=time.time()) if port else None
    try:
        return await _start(
            node,
            host=host,
            port=port,
            address=address,
            plaintext=plaintext,
            credentials=credentials,
            gate=gate,
            peers=peers,
            held=held,
            local=local,
        )
    except BaseException:
        if held is not None:
            held.close()
        raise


async def _start(
    node: Node,
    *,
    host: str,
    port: int,
    address: str,
    plaintext: bool,
    credentials: grpc.ServerCredentials | None,
    gate: PeerGate,
    peers: PeerWatcher,
    held: Claim | None,
    local: LocalEndpoints,
) -> RunningServer:
    ledger = node.open_ledger()
    audit = node.open_audit_log()
    # One pool, one gate, one refusal tally and one view of the current epoch for every service.
    pool = WorkerPool(name="hexpsi-serve")
    epochs = EpochWatcher(EpochStore(node))
    refusals = RefusalTally(audit, started=time.time())
    shared = Shared(
        ledger=ledger, audit=audit, gate=gate, epochs=epochs, pool=pool, refusals=refusals
    )
    upkeep = Upkeep(
        node, ledger=ledger, audit=audit, refusals=refusals, epochs=epochs, clock=time.time
    )
    await asyncio.to_thread(upkeep.recover)
    servicer = CheckServicer(node, shared, plaintext=plaintext)
    server = grpc.aio.server(
        options=server_options(node), interceptors=[RejectMalformed(), CountStreams(gate)]
    )
    check_pb2_grpc.add_CheckServiceServicer_to_server(servicer, server)
    mutual = MutualServicer(node, shared)
    mutual_pb2_grpc.add_MutualServiceServicer_to_server(mutual, server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if credentials is None:
            bound = server.add_insecure_port(bind)
        else:
            bound = server.add_secure_port(bind, credentials)
        if held is None:
            held = claim(node.directory, f"{host}:{bound}", now=time.time())
    except (RuntimeError, HexpsiError) as exc:
        pool.shutdown()
        ledger.close()
        audit.close()
        if isinstance(exc, HexpsiError):
            raise
        raise InputError(f"cannot listen on {address}: {exc}") from None
    held.applied(peers=peers.digest)
    peers.applied = lambda digest: held.applied(peers=digest)
    await server.start()
    try:
        monitoring = await local.start(node, shared, health)
    except HexpsiError:
        await server.stop(None)
        pool.shutdown()
        ledger.close()
        audit.close()
        raise
    for name in ("", *SERVICE_NAMES[:2]):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    mode = "plaintext (loopback only)" if plaintext else "mutual TLS"
    log.info("%s serving on %s:%d with %s", node.name, host, bound, mode)
    background = [asyncio.create_task(upkeep.loop()), asyncio.create_task(peers.loop())]
    return RunningServer(
        server,
        bound,
        servicer,
        health,
        ledger,
        audit,
        pool,
        upkeep,
        background,
        held,
        peers,
        monitoring=monitoring,
    )


async def serve(
    node: Node,
    *,
    plaintext: bool = False,
    health_listen: str | None = None,
    metrics_listen: str | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    running = await start_server(
        node, plaintext=plaintext, health_listen=health_listen, metrics_listen=metrics_listen
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("shutting down: health NOT_SERVING, finishing calls in flight")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await running.stop()
