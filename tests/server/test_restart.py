"""What a responder remembers across restarts: spent budget, used session ids, receipts, audit.

An operator (or a crash) restarting the server must never hand a peer its
budget back, let it replay a session, or lose an audit entry; an attacker who
edits the audit database afterwards is caught by ``hexpsi audit --verify``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import grpc
import pytest

from hexpsi.protocol.budget import cell_area_km2
from hexpsi.protocol.check.messages import Receipt
from hexpsi.protocol.errors import HexpsiError, Status
from hexpsi.server.cli.main import main
from hexpsi.server.clients.check import run_check
from hexpsi.server.rpc.hexpsi.v1 import check_pb2
from hexpsi.server.services.app import start_server
from tests.server.conftest import (
    PROPOSER,
    RES,
    RESPONDER,
    STRIKES,
    Pair,
    check_stub,
    current_descriptor,
    evaluate_request,
    make_pair,
    refused,
    tls_channel,
)

ONE_QUERY_KM2 = 8 * cell_area_km2(RES)
"""What one check of up to 8 res-9 tokens costs: a single padded group of 8."""


@pytest.fixture
def tight(tmp_path: Path) -> Pair:
    """A responder that allows its proposer exactly two small checks per window."""
    return make_pair(tmp_path, budget_km2=2.5 * ONE_QUERY_KM2)


async def test_spent_budget_stays_spent_after_a_restart(tight: Pair) -> None:
    strike = STRIKES["edge-of-outpost"]
    running = await start_server(tight.responder)
    try:
        first = await run_check(tight.proposer, RESPONDER, strike)
    finally:
        await running.stop(grace=1.0)
    assert first.result.receipt.area_km2 == pytest.approx(ONE_QUERY_KM2)

    running = await start_server(tight.responder)
    try:
        await run_check(tight.proposer, RESPONDER, strike)
        with pytest.raises(HexpsiError, match="is left; enough frees up at") as caught:
            await run_check(tight.proposer, RESPONDER, strike)
        assert caught.value.status is Status.RESOURCE_EXHAUSTED
    finally:
        await running.stop(grace=1.0)

    with tight.responder.open_ledger() as ledger:
        spent = ledger.spent(
            PROPOSER, now=first.result.receipt.issued_at + 60, window_seconds=24 * 3600.0
        )
        assert spent == pytest.approx(2 * ONE_QUERY_KM2)


async def test_the_audit_chain_survives_restarts_and_keeps_growing(tight: Pair) -> None:
    heads = []
    for _ in range(2):
        running = await start_server(tight.responder)
        try:
            await run_check(tight.proposer, RESPONDER, STRIKES["edge-of-outpost"])
        finally:
            await running.stop(grace=1.0)
        with tight.responder.open_audit_log() as audit:
            heads.append(audit.head())
            assert audit.verify() == len(heads)
            entries = audit.entries()
    assert [h.seq for h in heads if h] == [1, 2]
    assert entries[1].prev_hash == entries[0].hash
    assert heads[0] is not None
    assert entries[0].hash == heads[0].hash
    assert [json.loads(e.details)["epoch_sequence"] for e in entries] == [1, 1]


async def test_session_ids_and_receipts_survive_a_restart(pair: Pair) -> None:
    running = await start_server(pair.responder)
    try:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            stub = check_stub(channel)
            descriptor = await current_descriptor(stub, pair.responder)
            request = evaluate_request(descriptor.digest)
            reply = await stub.Evaluate(request, timeout=10)
    finally:
        await running.stop(grace=1.0)
    receipt_id = Receipt.decode(reply.receipt).receipt_id

    running = await start_server(pair.responder)
    try:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            stub = check_stub(channel)
            error = await refused(stub.Evaluate(request, timeout=10))
            assert error.code() == grpc.StatusCode.ALREADY_EXISTS
            fetched = await stub.GetReceipt(
                check_pb2.GetReceiptRequest(receipt_id=receipt_id), timeout=10
            )
        assert fetched.receipt == reply.receipt
    finally:
        await running.stop(grace=1.0)


def _tamper(path: Path, statement: str) -> None:
    """Edit the audit database the way someone with file access could."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER entries_append_only_update")
        conn.execute("DROP TRIGGER entries_append_only_delete")
        conn.execute(statement)
    finally:
        conn.close()


async def _two_checks(pair: Pair) -> None:
    running = await start_server(pair.responder)
    try:
        for strike in ("direct", "outpost-res7"):
            await run_check(pair.proposer, RESPONDER, STRIKES[strike])
    finally:
        await running.stop(grace=1.0)


@pytest.mark.parametrize(
    ("statement", "entry"),
    [
        (
            'UPDATE entries SET details = replace(details, \'"area_km2":\', \'"area_km2":0,"x":\')'
            " WHERE seq = 1",
            1,
        ),
        ("UPDATE entries SET peer = 'charlie' WHERE seq = 2", 2),
        ("DELETE FROM entries WHERE seq = 2", 2),
    ],
)
async def test_audit_verify_catches_an_edited_log(
    pair: Pair, capsys: pytest.CaptureFixture[str], statement: str, entry: int
) -> None:
    await _two_checks(pair)
    directory = str(pair.responder.directory)
    assert main(["audit", directory, "--verify"]) == 0
    assert "verified: 2 entries" in capsys.readouterr().err
    _tamper(pair.responder.audit_path, statement)
    assert main(["audit", directory, "--verify"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert f"AUDIT LOG FAILED VERIFICATION at entry {entry}" in captured.err
    assert "Traceback" not in captured.err
