"""Shared pieces of the hostile-party and robustness tests: nodes, servers, raw calls, checks.

The node pairs are the ones ``tests/server`` uses (a responder ``alpha`` with
an epoch over a small protected set, a proposer ``bravo``, every node pinning
every other, each on its own loopback port with mutual TLS). What this module
adds: servers started with a substituted (hostile) servicer but otherwise the
real application setup, generic channels that send raw bytes, the outcome of a
call as a status, a health probe, and the assertion that a proposer kept
nothing from a check it refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import server.app
from protocol.budget import cell_area_km2
from server.app import RunningServer, start_server
from server.client import CHECKS_DIR
from server.node import Node
from server.service import CheckServicer
from tests.server.conftest import (
    BIG_BUDGET_KM2,
    DELIBERATE,
    OUTSIDER,
    PROPOSER,
    PROTECTED,
    RES,
    RES_MIN,
    RESPONDER,
    STRIKES,
    Pair,
    check_stub,
    current_descriptor,
    edit_config,
    evaluate_request,
    make_epoch,
    make_nodes,
    plain_channel,
    random_elements,
    refused,
    target_of,
    tls_channel,
    wait_until,
)

__all__ = [
    "BIG_BUDGET_KM2",
    "DELIBERATE",
    "OUTSIDER",
    "PROPOSER",
    "PROTECTED",
    "RES",
    "RESPONDER",
    "RES_MIN",
    "STRIKES",
    "Pair",
    "check_stub",
    "current_descriptor",
    "edit_config",
    "evaluate_request",
    "make_epoch",
    "make_nodes",
    "plain_channel",
    "random_elements",
    "refused",
    "target_of",
    "tls_channel",
    "wait_until",
]

ONE_GROUP_KM2 = 8 * cell_area_km2(RES)
"""What one smallest query costs: a single padded group of 8 elements at ``res``."""
CHECK_SERVICE = "/hexpsi.v1.CheckService/"
MUTUAL_SERVICE = "/hexpsi.v1.MutualService/"
NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


def make_pair(
    root: Path,
    *,
    budget_km2: float = BIG_BUDGET_KM2,
    window_hours: float | None = None,
    limits: dict[str, int] | None = None,
    epoch: bool = True,
) -> Pair:
    """The ``tests/server`` pair, with the proposer's budget window settable too."""
    nodes = make_nodes(root, [RESPONDER, PROPOSER], budget_km2=budget_km2, limits=limits)
    responder, proposer = nodes[RESPONDER], nodes[PROPOSER]
    if window_hours is not None:
        responder.add_peer(
            proposer.own_identity(),
            budget_km2=budget_km2,
            window_hours=window_hours,
            replace=True,
        )
        responder = Node(responder.directory)
    if epoch:
        make_epoch(responder)
    return Pair(responder, proposer, root)


@asynccontextmanager
async def serving(
    node: Node,
    *,
    servicer: type[CheckServicer] = CheckServicer,
    plaintext: bool = False,
    listen: str | None = None,
) -> AsyncIterator[RunningServer]:
    """``node``'s real server (credentials, limits, interceptors, health, mutual service).

    ``servicer`` replaces the check service's class while the server is built, so a
    hostile responder runs behind exactly the transport an honest one has.
    """
    honest = server.app.CheckServicer
    server.app.CheckServicer = servicer  # type: ignore[misc]
    try:
        running = await start_server(node, plaintext=plaintext, listen=listen)
    finally:
        server.app.CheckServicer = honest  # type: ignore[misc]
    try:
        yield running
    finally:
        await running.stop(grace=0.5)


async def outcome(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    """The status a call ends with (OK when it succeeds) and its details."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def drain(call: Any) -> list[Any]:
    """Every message of a response stream (raises the stream's error)."""
    return [message async for message in call]


async def health_status(channel: grpc.aio.Channel, service: str = "") -> int:
    """The server's standard health answer for ``service`` ("" is the whole server)."""
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return int(reply.status)


SERVING = health_pb2.HealthCheckResponse.SERVING


def raw_unary(channel: grpc.aio.Channel, method: str) -> Any:
    """A unary call that sends and receives bytes exactly as given (no protobuf)."""
    return channel.unary_unary(method)


def raw_unary_stream(channel: grpc.aio.Channel, method: str) -> Any:
    return channel.unary_stream(method)


def raw_stream_stream(channel: grpc.aio.Channel, method: str) -> Any:
    return channel.stream_stream(method)


def audit_kinds(node: Node) -> list[str]:
    """The kinds of every entry in ``node``'s audit log, oldest first."""
    if not node.audit_path.exists():
        return []
    with node.open_audit_log() as audit:
        return [entry.kind for entry in audit.entries()]


def audit_details(node: Node, kind: str) -> list[dict[str, Any]]:
    if not node.audit_path.exists():
        return []
    with node.open_audit_log() as audit:
        return [json.loads(e.details) for e in audit.entries() if e.kind == kind]


def assert_kept_nothing(proposer: Node) -> None:
    """A refused check left no result, receipt or evidence and no "check" audit entry."""
    checks = proposer.directory / CHECKS_DIR
    assert not checks.exists() or list(checks.iterdir()) == []
    assert "check" not in audit_kinds(proposer)


def window_end(now: float, window_hours: float) -> float:
    """When the fixed budget window holding ``now`` resets."""
    length = window_hours * 3600.0
    return (now // length + 1) * length


def clock_after(seconds: float) -> Any:
    """A clock ``seconds`` ahead of the real one."""
    return lambda: time.time() + seconds
