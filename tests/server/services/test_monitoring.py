"""The local monitoring endpoints, scraped for real: plaintext gRPC health and Prometheus metrics.

A server started with ``health_listen`` and ``metrics_listen`` on loopback port 0
answers a gRPC health Check over plaintext with what its main server reports,
serves nothing else there, and serves its counters and gauges over HTTP; both
go away with the server.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from hexpsi.protocol.budget import cell_area_km2
from hexpsi.protocol.errors import InputError
from hexpsi.server.cli.main import main
from hexpsi.server.clients.check import run_check
from hexpsi.server.clients.mutual import run_mutual
from hexpsi.server.node.ledger import Admission
from hexpsi.server.rpc.hexpsi.v1 import check_pb2
from hexpsi.server.rpc.status import PEER_METADATA_KEY
from hexpsi.server.services.app import RunningServer, start_server
from hexpsi.server.services.metrics import ServerMetrics
from tests.server.conftest import (
    PROPOSER,
    PROTECTED,
    RES,
    RES_MIN,
    RESPONDER,
    STRIKES,
    Pair,
    check_stub,
    current_descriptor,
    evaluate_request,
    make_epoch,
    make_pair,
    plain_channel,
    refused,
    tls_channel,
)

BUDGET_KM2 = 50.0
"""Enough for the small strike, not for one res-5 token (~250 km²)."""
LOCAL = "127.0.0.1:0"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
CHECK_SERVICE = "hexpsi.v1.CheckService"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """GET the metrics page; every sample by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def health_check(port: int, service: str = "") -> int:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    finally:
        await channel.close(None)
    return int(reply.status)


@pytest.fixture
def limited(tmp_path: Path) -> Pair:
    pair = make_pair(tmp_path, budget_km2=BUDGET_KM2)
    make_epoch(pair.proposer)
    return pair


async def _monitored(pair: Pair, **kwargs: Any) -> RunningServer:
    return await start_server(pair.responder, health_listen=LOCAL, metrics_listen=LOCAL, **kwargs)


def _ports(running: RunningServer) -> tuple[int, int]:
    assert running.monitoring is not None
    health, metrics = running.monitoring.health_port, running.monitoring.metrics_port
    assert health
    assert metrics
    return health, metrics


# ---------------------------------------------------------------- both endpoints, for real


async def test_a_check_and_a_refusal_move_the_counters_and_health_follows_the_server(
    limited: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = limited
    running = await _monitored(pair)
    health_port, metrics_port = _ports(running)
    release, entered = threading.Event(), threading.Event()
    stopping: asyncio.Task[None] | None = None
    try:
        assert await health_check(health_port) == SERVING
        assert await health_check(health_port, CHECK_SERVICE) == SERVING
        before = await asyncio.to_thread(scrape, metrics_port)
        report = await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
        async with tls_channel(pair.responder, pair.proposer) as channel:
            stub = check_stub(channel)
            digest = (await current_descriptor(stub, pair.responder)).digest
            await refused(stub.Evaluate(evaluate_request(digest, {RES_MIN: 1}), timeout=10))
        samples = await asyncio.to_thread(scrape, metrics_port)

        # A held evaluation keeps the main server in its grace period while it stops.
        admit = running.servicer.ledger.admit

        def held_admit(peer: str, **kwargs: Any) -> Admission:
            entered.set()
            release.wait(10)
            return admit(peer, **kwargs)

        running.servicer.ledger.admit = held_admit  # type: ignore[method-assign]
        async with tls_channel(pair.responder, pair.proposer) as channel:
            in_flight = asyncio.ensure_future(
                check_stub(channel).Evaluate(evaluate_request(digest), timeout=20)
            )
            await asyncio.to_thread(entered.wait, 10)
            stopping = asyncio.ensure_future(running.stop(grace=10.0))
            await asyncio.sleep(0.2)
            during = await health_check(health_port)
            probe_during = await asyncio.to_thread(main, ["probe", f"127.0.0.1:{health_port}"])
            still_scraped = await asyncio.to_thread(scrape, metrics_port)
            release.set()
            await in_flight
            await asyncio.wait_for(stopping, timeout=10)
    finally:
        release.set()
        if stopping is None:
            await running.stop(grace=1.0)

    # Counters moved by exactly one answered and one refused check.
    assert ("hexpsi_checks_total", frozenset({("peer", PROPOSER), ("outcome", "ok")})) not in before
    assert value(samples, "hexpsi_checks_total", peer=PROPOSER, outcome="ok") == 1
    assert value(samples, "hexpsi_checks_total", peer=PROPOSER, outcome="budget") == 1
    charged = value(samples, "hexpsi_area_charged_km2_total", peer=PROPOSER, operation="check")
    assert charged > 0
    assert charged == pytest.approx(report.area_km2)
    assert value(samples, "hexpsi_snapshot_downloads_total", peer=PROPOSER, outcome="ok") == 1
    assert value(samples, "hexpsi_snapshot_sent_bytes_total", peer=PROPOSER) > 0
    # Gauges computed at scrape time from the ledger and the epoch.
    assert value(samples, "hexpsi_budget_limit_km2", peer=PROPOSER) == BUDGET_KM2
    assert value(samples, "hexpsi_budget_left_km2", peer=PROPOSER) == pytest.approx(
        BUDGET_KM2 - charged
    )
    limit = pair.responder.config.budget.node_km2_per_window
    assert value(samples, "hexpsi_node_budget_left_km2") == pytest.approx(limit - charged)
    assert value(before, "hexpsi_budget_left_km2", peer=PROPOSER) == BUDGET_KM2
    assert value(samples, "hexpsi_mutual_checks_left", peer=PROPOSER) == (
        pair.responder.config.budget.mutual_checks_per_window
    )
    assert value(samples, "hexpsi_epoch_sequence") == 1
    assert 0 <= value(samples, "hexpsi_epoch_age_seconds") < 600
    validity = pair.responder.config.epoch_validity_hours * 3600
    assert validity - 600 < value(samples, "hexpsi_epoch_expires_in_seconds") <= validity
    assert value(samples, "process_resident_memory_bytes") > 0
    # Health went NOT_SERVING during the grace period (metrics still served), then away.
    assert during == NOT_SERVING
    assert probe_during == 1
    assert capsys.readouterr().out.splitlines()[-1] == "NOT_SERVING"
    assert value(still_scraped, "hexpsi_checks_total", peer=PROPOSER, outcome="ok") == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await health_check(health_port)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(urllib.error.URLError):
        await asyncio.to_thread(scrape, metrics_port)


async def test_the_health_endpoint_serves_health_and_nothing_else(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    running = await _monitored(pair)
    health_port, _ = _ports(running)
    address = f"127.0.0.1:{health_port}"
    try:
        assert await asyncio.to_thread(main, ["probe", address]) == 0
        assert await asyncio.to_thread(main, ["probe", address, "--service", CHECK_SERVICE]) == 0
        assert capsys.readouterr().out == "SERVING\nSERVING\n"
        assert await asyncio.to_thread(main, ["probe", address, "--service", "no.Such"]) == 1
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(f"hexpsi: error: the health endpoint at {address} knows no service")
        async with plain_channel(pair.responder, port=health_port) as channel:
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            with pytest.raises(grpc.aio.AioRpcError) as no_reflection:
                async for _ in reflection.ServerReflectionInfo(iter([request])):
                    pass
            with pytest.raises(grpc.aio.AioRpcError) as no_check:
                await check_stub(channel).GetDescriptor(
                    check_pb2.GetDescriptorRequest(),
                    metadata=((PEER_METADATA_KEY, PROPOSER),),
                    timeout=10,
                )
    finally:
        await running.stop(grace=1.0)
    assert no_reflection.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert no_check.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_mutual_checks_and_unpinned_callers_are_counted(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    make_epoch(pair.proposer, PROTECTED)
    running = await _monitored(pair, plaintext=True)
    _, metrics_port = _ports(running)
    try:
        report = await run_mutual(pair.proposer, RESPONDER, plaintext=True)
        async with plain_channel(pair.responder) as channel:
            for name in ("nobody", "somebody-else"):
                await refused(
                    check_stub(channel).Evaluate(
                        evaluate_request(b"\0" * 32),
                        metadata=((PEER_METADATA_KEY, name),),
                        timeout=10,
                    )
                )
        samples = await asyncio.to_thread(scrape, metrics_port)
    finally:
        await running.stop(grace=1.0)
    assert value(samples, "hexpsi_mutual_checks_total", peer=PROPOSER, outcome="ok") == 1
    area = report.result.receipt.statement.proposer_set_size * cell_area_km2(RES)
    assert value(
        samples, "hexpsi_area_charged_km2_total", peer=PROPOSER, operation="mutual"
    ) == pytest.approx(area)
    limit = pair.responder.config.budget.mutual_checks_per_window
    assert value(samples, "hexpsi_mutual_checks_left", peer=PROPOSER) == limit - 1
    # Callers that are not pinned peers share one label value: no name they send is one.
    unpinned = value(samples, "hexpsi_checks_total", peer="(unpinned)", outcome="permission_denied")
    assert unpinned == 2
    assert not any(dict(labels).get("peer") == "nobody" for _, labels in samples)


def test_every_server_has_its_own_registry() -> None:
    first, second = ServerMetrics(), ServerMetrics()
    first.check(PROPOSER, "ok")
    assert first.registry.get_sample_value(
        "hexpsi_checks_total", {"peer": PROPOSER, "outcome": "ok"}
    )
    assert (
        second.registry.get_sample_value("hexpsi_checks_total", {"peer": PROPOSER, "outcome": "ok"})
        is None
    )


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("option", "address", "message"),
    [
        ("health_listen", "0.0.0.0:9400", "only on a loopback address"),
        ("health_listen", "[::]:9400", "only on a loopback address"),
        ("metrics_listen", "10.1.2.3:9464", "only on a loopback address"),
        ("metrics_listen", "example.com:9464", "only on a loopback address"),
        ("health_listen", "nowhere", "is not HOST:PORT"),
        ("metrics_listen", "127.0.0.1:70000", "port must be 1..65535"),
    ],
)
async def test_a_bad_monitoring_address_is_refused_before_anything_opens(
    pair: Pair, option: str, address: str, message: str
) -> None:
    options: dict[str, Any] = {option: address}
    with pytest.raises(InputError, match=message) as caught:
        await start_server(pair.responder, **options)
    assert f"--{option.replace('_', '-')}" in caught.value.explain()
    assert not pair.responder.ledger_path.exists()


@pytest.mark.parametrize("option", ["health_listen", "metrics_listen"])
async def test_a_monitoring_port_in_use_is_refused_and_releases_the_server(
    pair: Pair, option: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        options: dict[str, Any] = {option: busy}
        with pytest.raises(InputError, match=f"cannot listen on {busy}"):
            await start_server(pair.responder, **options)
    # The main port and the stores were released: the node starts again at once.
    running = await start_server(pair.responder)
    await running.stop(grace=1.0)


# ---------------------------------------------------------------- a real `hexpsi serve`


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "hexpsi.server.cli", *argv]


async def test_hexpsi_serve_with_monitoring_logs_json_and_answers_the_probe(pair: Pair) -> None:
    health, metrics = _free_port(), _free_port()
    process = subprocess.Popen(
        _cli(
            "--log-format",
            "json",
            "serve",
            str(pair.responder.directory),
            "--health-listen",
            f"127.0.0.1:{health}",
            "--metrics-listen",
            f"127.0.0.1:{metrics}",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            probe = await asyncio.to_thread(
                subprocess.run,
                _cli("probe", f"127.0.0.1:{health}", "--timeout", "2"),
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.returncode == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        samples = await asyncio.to_thread(scrape, metrics)
        async with tls_channel(pair.responder, pair.proposer) as channel:
            await current_descriptor(check_stub(channel), pair.responder)
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(process.communicate, timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (probe.returncode, probe.stdout, probe.stderr) == (0, "SERVING\n", "")
    assert value(samples, "hexpsi_epoch_sequence") == 1
    assert process.returncode == 0, err
    assert out == ""
    records = [json.loads(line) for line in err.splitlines()]
    messages = [record["message"] for record in records]
    assert any(f"health checks (plaintext, loopback) on 127.0.0.1:{health}" in m for m in messages)
    assert any(f"metrics (HTTP, loopback) on 127.0.0.1:{metrics}" in m for m in messages)
    assert any("shutting down" in m for m in messages)
    assert all(record["time"].endswith("Z") for record in records)
    # After the stop, the probe finds nothing: one line, exit 1.
    gone = subprocess.run(
        _cli("probe", f"127.0.0.1:{health}", "--timeout", "2"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert gone.returncode == 1
    assert gone.stdout == ""
    (line,) = gone.stderr.splitlines()
    assert line.startswith("hexpsi: error: no health endpoint answers at 127.0.0.1:")


def test_the_probe_refuses_a_malformed_address_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["probe", "nowhere"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("hexpsi: error: health endpoint 'nowhere' is not HOST:PORT")
