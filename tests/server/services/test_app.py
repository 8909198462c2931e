"""The server around the service: health, reflection, listening rules and graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hexpsi.protocol.errors import InputError, LocalProtocolError
from hexpsi.server.node.ledger import Admission
from hexpsi.server.node.running import running
from hexpsi.server.services.addresses import is_loopback
from hexpsi.server.services.app import RunningServer, start_server
from tests.server.conftest import (
    PROPOSER,
    Pair,
    check_stub,
    current_descriptor,
    evaluate_request,
    make_nodes,
    tls_channel,
)

CHECK_SERVICE = "hexpsi.v1.CheckService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_health_reports_serving_for_the_server_and_the_check_service(
    pair: Pair, served: RunningServer
) -> None:
    async with tls_channel(pair.responder, pair.proposer) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", CHECK_SERVICE):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == SERVING
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_and_describes_the_services(
    pair: Pair, served: RunningServer
) -> None:
    async with tls_channel(pair.responder, pair.proposer) as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=CHECK_SERVICE),
        ]
        replies = [reply async for reply in reflection.ServerReflectionInfo(iter(requests))]
    listed = {s.name for s in replies[0].list_services_response.service}
    assert {CHECK_SERVICE, "grpc.health.v1.Health"} <= listed
    assert any("reflection" in name for name in listed)
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in replies[1].file_descriptor_response.file_descriptor_proto
    ]
    (check_file,) = [f for f in files if f.package == "hexpsi.v1"]
    methods = {m.name for s in check_file.service for m in s.method}
    assert methods == {"GetDescriptor", "GetSnapshot", "Evaluate", "GetReceipt"}


async def test_shutdown_turns_health_off_and_lets_a_call_in_flight_finish(
    pair: Pair,
) -> None:
    running = await start_server(pair.responder)
    release = threading.Event()
    entered = threading.Event()
    admit = running.servicer.ledger.admit

    def held_admit(peer: str, **kwargs: Any) -> Admission:
        entered.set()
        release.wait(10)
        return admit(peer, **kwargs)

    running.servicer.ledger.admit = held_admit  # type: ignore[method-assign]
    stopping: asyncio.Task[None] | None = None
    try:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            stub = check_stub(channel)
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=CHECK_SERVICE), timeout=20
            )
            assert (await watch.read()).status == SERVING
            descriptor = await current_descriptor(stub, pair.responder)
            in_flight = asyncio.ensure_future(
                stub.Evaluate(evaluate_request(descriptor.digest), timeout=20)
            )
            await asyncio.to_thread(entered.wait, 10)
            stopping = asyncio.ensure_future(running.stop(grace=10.0))
            assert (await watch.read()).status == NOT_SERVING
            watch.cancel()  # a watcher would go; otherwise it holds the server to the grace
            assert not stopping.done()
            release.set()
            reply = await in_flight
            assert reply.session_id
            await asyncio.wait_for(stopping, timeout=5.0)
    finally:
        release.set()
        if stopping is None:
            await running.stop(grace=1.0)
    # The evaluation was charged and logged before the stores were closed.
    with pair.responder.open_audit_log() as audit:
        assert [entry.kind for entry in audit.entries()] == ["evaluate"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:{port}", "[::]:{port}", "10.1.2.3:{port}", "example.com:{port}"]
)
async def test_plaintext_is_refused_off_loopback(pair: Pair, listen: str) -> None:
    address = listen.format(port=pair.responder.config.listen.rpartition(":")[2])
    with pytest.raises(InputError, match="refusing plaintext") as caught:
        await start_server(pair.responder, plaintext=True, listen=address)
    assert "127.0.0.1" in caught.value.explain()
    assert not pair.responder.ledger_path.exists()


async def test_port_zero_binds_a_free_port(pair: Pair) -> None:
    running = await start_server(pair.responder, listen="127.0.0.1:0")
    try:
        assert running.port > 0
        async with tls_channel(pair.responder, pair.proposer, port=running.port) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        assert reply.status == SERVING
    finally:
        await running.stop(grace=1.0)


async def test_a_busy_port_is_a_clear_error(pair: Pair, served: RunningServer) -> None:
    with pytest.raises(InputError, match=r"cannot listen on 127\.0\.0\.1:"):
        await start_server(pair.proposer, listen=pair.responder.config.listen)


async def test_a_second_server_for_the_same_node_and_address_is_refused(
    pair: Pair, served: RunningServer
) -> None:
    with pytest.raises(InputError) as caught:
        await start_server(pair.responder)
    assert f"already listens on {pair.responder.config.listen} (pid {os.getpid()})" in (
        caught.value.message
    )
    assert [r.listen for r in running(pair.responder.directory)] == [pair.responder.config.listen]
    await served.stop(grace=1.0)
    assert running(pair.responder.directory) == []
    again = await start_server(pair.responder)
    await again.stop(grace=1.0)


async def test_a_node_without_peers_is_refused_before_it_opens_anything(tmp_path: Path) -> None:
    lone = make_nodes(tmp_path, ["lone"])["lone"]
    with pytest.raises(LocalProtocolError, match="no peers are pinned"):
        await start_server(lone)
    assert not lone.ledger_path.exists()
    assert not lone.audit_path.exists()


# ---------------------------------------------------------------- a real `hexpsi serve`


async def _wait_serving(pair: Pair) -> None:
    async with tls_channel(pair.responder, pair.proposer) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=CHECK_SERVICE), timeout=30, wait_for_ready=True
        )
    assert reply.status == SERVING


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_hexpsi_serve_stops_cleanly_on_a_signal(pair: Pair, signum: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "hexpsi.server.cli", "serve", str(pair.responder.directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await _wait_serving(pair)
        async with tls_channel(pair.responder, pair.proposer) as channel:
            stub = check_stub(channel)
            descriptor = await current_descriptor(stub, pair.responder)
            await stub.Evaluate(evaluate_request(descriptor.digest), timeout=10)
        process.send_signal(signum)
        out, err = await asyncio.to_thread(process.communicate, timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "serving on 127.0.0.1:" in err
    assert "mutual TLS" in err
    assert "shutting down" in err
    assert "Traceback" not in err
    assert out == ""
    # The databases were closed cleanly: the evaluation is there and the chain verifies.
    with pair.responder.open_audit_log() as audit:
        assert audit.verify() == 1
        assert audit.entries()[0].peer == PROPOSER
