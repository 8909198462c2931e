"""Peer changes reach a running server without a restart, over real mutual TLS.

``hexpsi peer add``, ``peer update`` and ``peer remove`` run as the operator
runs them (the CLI, in a thread beside the serving event loop) and must say
that the running server applied them.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hexpsi.protocol.errors import HexpsiError, Status
from hexpsi.server.cli.main import main
from hexpsi.server.clients.check import run_check
from hexpsi.server.demo.scenario import free_loopback_port
from hexpsi.server.node.directory import Node, init_node
from hexpsi.server.rpc.hexpsi.v1 import check_pb2
from hexpsi.server.services.app import start_server
from tests.server.conftest import (
    RESPONDER,
    STRIKES,
    Pair,
    check_stub,
    make_pair,
    refused,
    tls_channel,
)


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``hexpsi argv`` beside the server; it must succeed. Returns its stdout."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def newcomer(pair: Pair) -> Node:
    """A third node that pinned the responder, not yet pinned by it."""
    charlie = init_node(
        pair.root / "charlie",
        name="charlie",
        listen=f"127.0.0.1:{free_loopback_port()}",
        now=time.time(),
    )
    charlie.add_peer(pair.responder.own_identity())
    (pair.root / "charlie.json").write_bytes(charlie.own_identity().to_bytes())
    return Node(charlie.directory)


async def test_a_peer_pinned_while_serving_can_check_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = make_pair(tmp_path)
    charlie = newcomer(pair)
    running = await start_server(pair.responder)
    try:
        with pytest.raises(HexpsiError) as caught:
            await run_check(charlie, RESPONDER, STRIKES["direct"])
        assert caught.value.status is Status.UNAVAILABLE  # its certificate is not trusted
        out = await cli(
            capsys, "peer", "add", str(pair.responder.directory), str(tmp_path / "charlie.json")
        )
        assert f"applied by the running server on {pair.responder.config.listen}" in out
        report = await run_check(charlie, RESPONDER, STRIKES["direct"])
        assert report.result.conflict
    finally:
        await running.stop(grace=1.0)


async def test_a_removed_peer_is_refused_and_its_open_streams_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = make_pair(tmp_path)
    charlie = newcomer(pair)
    pair.responder.add_peer(charlie.own_identity())
    running = await start_server(Node(pair.responder.directory))
    directory = str(pair.responder.directory)
    try:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=60)
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            started = time.monotonic()
            out = await cli(capsys, "peer", "remove", directory, pair.proposer.name)
            assert "applied by the running server" in out
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await watch.read()
            assert ended.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "bravo is no longer pinned here" in (ended.value.details() or "")
            assert time.monotonic() - started < 10
            # The connection it still holds carries no more calls.
            error = await refused(
                check_stub(channel).GetDescriptor(check_pb2.GetDescriptorRequest(), timeout=10)
            )
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        # A new connection does not get past the TLS handshake.
        with pytest.raises(HexpsiError) as caught:
            await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
        assert caught.value.status is Status.UNAVAILABLE
        assert (await run_check(charlie, RESPONDER, STRIKES["direct"])).result.conflict
        # With nobody left pinned, TLS keeps its last roots and the gate refuses everyone.
        await cli(capsys, "peer", "remove", directory, charlie.name)
        with pytest.raises(HexpsiError) as caught:
            await run_check(charlie, RESPONDER, STRIKES["direct"])
        assert caught.value.status is Status.PERMISSION_DENIED
        with pair.responder.open_audit_log() as audit:
            kinds = [(e.kind, e.peer) for e in audit.entries()]
        assert ("peer-removed", pair.proposer.name) in kinds
        assert ("peer-removed", charlie.name) in kinds
    finally:
        await running.stop(grace=1.0)


async def test_a_budget_change_applies_to_the_next_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = make_pair(tmp_path)
    running = await start_server(pair.responder)
    try:
        await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
        out = await cli(
            capsys,
            *("peer", "update", str(pair.responder.directory), pair.proposer.name),
            *("--budget-km2", "0.001"),
        )
        assert "updated bravo:" in out
        assert "applied by the running server" in out
        with pytest.raises(HexpsiError) as caught:
            await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
        assert caught.value.status is Status.RESOURCE_EXHAUSTED
        assert "budget" in caught.value.message
    finally:
        await running.stop(grace=1.0)


async def test_without_a_running_server_the_cli_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = make_pair(tmp_path)
    out = await cli(
        capsys, "peer", "update", str(pair.responder.directory), "bravo", "--window-hours", "2"
    )
    assert "no server is running for this node: the change applies when one starts" in out


async def test_a_peer_file_that_does_not_load_leaves_the_server_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    pair = make_pair(tmp_path)
    running = await start_server(pair.responder)
    try:
        (pair.responder.directory / "peers" / "zulu.json").write_text("{not json")
        running.peers.poll()
        assert "do not load, keeping the peers as they were" in caplog.text
        report = await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
        assert report.result.conflict
    finally:
        await running.stop(grace=1.0)
