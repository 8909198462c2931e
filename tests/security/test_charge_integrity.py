"""A charge comes before any evaluation, and stands only with its receipt and audit entry.

Over real gRPC with mutual TLS: queries racing for a budget that admits some of
them are evaluated exactly as often as they are charged; concurrent first
evaluations on a fresh node all succeed (no race creating the receipts
directory); a receipt or audit failure part-way refunds the charge and leaves
nothing behind; a charge left unrecorded by a stopped server is logged when it
starts again.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from hexpsi.protocol.crypto.oprf import blind_evaluate
from hexpsi.protocol.errors import LocalProtocolError, Status
from hexpsi.server.node.ledger import Operation
from hexpsi.server.services.check import RECEIPTS_DIR
from hexpsi.server.services.upkeep import UNFINISHED_KIND
from tests.security.hostile_helpers import (
    ONE_GROUP_KM2,
    PROPOSER,
    audit_kinds,
    check_stub,
    current_descriptor,
    evaluate_request,
    make_pair,
    outcome,
    serving,
    tls_channel,
)

DAY = 24 * 3600.0


async def test_a_refused_query_is_never_evaluated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight concurrent queries against room for three: three evaluations, no more.

    Checked to fail without the protection: with the responder evaluating before it
    charged (``session.respond`` moved above ``ledger.admit``), eight evaluations
    ran for three admitted queries.
    """
    evaluations: list[int] = []
    honest = blind_evaluate

    def counting(key: Any, elements: Any, **kwargs: Any) -> list[bytes]:
        evaluations.append(len(elements))
        return honest(key, elements, **kwargs)

    monkeypatch.setattr("hexpsi.protocol.check.session.blind_evaluate", counting)
    pair = make_pair(tmp_path, budget_km2=3.5 * ONE_GROUP_KM2, limits={"max_sessions_per_peer": 8})
    async with serving(pair.responder), tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, pair.responder)
        outcomes = await asyncio.gather(
            *(
                outcome(stub.Evaluate(evaluate_request(descriptor.digest), timeout=20))
                for _ in range(8)
            )
        )
    codes = sorted(code.name for code, _ in outcomes)
    assert codes == ["OK"] * 3 + ["RESOURCE_EXHAUSTED"] * 5
    assert evaluations == [8, 8, 8], "only admitted queries were evaluated"


async def test_concurrent_first_evaluations_on_a_fresh_node_all_succeed(tmp_path: Path) -> None:
    """Eight evaluations at once, again and again, on a node without a receipts directory.

    Checked to fail without the protection: with the receipts directory created by
    "exists? then mkdir", some rounds ended in UNKNOWN "Unexpected FileExistsError"
    for calls that had been charged and evaluated.
    """
    pair = make_pair(tmp_path, limits={"max_sessions_per_peer": 8})
    receipts = pair.responder.directory / RECEIPTS_DIR
    async with serving(pair.responder) as running:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            stub = check_stub(channel)
            descriptor = await current_descriptor(stub, pair.responder)
            for _ in range(12):
                shutil.rmtree(receipts, ignore_errors=True)
                outcomes = await asyncio.gather(
                    *(
                        outcome(stub.Evaluate(evaluate_request(descriptor.digest), timeout=20))
                        for _ in range(8)
                    )
                )
                assert [code for code, _ in outcomes] == [grpc.StatusCode.OK] * 8, outcomes
                assert len(list(receipts.iterdir())) == 8
        assert running.ledger.unrecorded() == []
        charges, _ = running.ledger.sizes()
        assert charges == 12 * 8
    assert audit_kinds(pair.responder).count("evaluate") == 12 * 8


async def test_a_failed_audit_entry_refunds_the_charge_and_keeps_no_receipt(
    tmp_path: Path,
) -> None:
    pair = make_pair(tmp_path)
    async with serving(pair.responder) as running:

        def failing_append(*args: Any, **kwargs: Any) -> None:
            raise LocalProtocolError("audit.sqlite3: disk I/O error", status=Status.UNAVAILABLE)

        running.audit.append = failing_append  # type: ignore[method-assign,assignment]
        async with tls_channel(pair.responder, pair.proposer) as channel:
            stub = check_stub(channel)
            descriptor = await current_descriptor(stub, pair.responder)
            code, details = await outcome(
                stub.Evaluate(evaluate_request(descriptor.digest), timeout=10)
            )
        assert code == grpc.StatusCode.UNAVAILABLE
        assert "disk I/O error" in details
        assert running.ledger.spent(PROPOSER, now=time.time(), window_seconds=DAY) == 0.0
        assert running.ledger.unrecorded() == []
        receipts = pair.responder.directory / RECEIPTS_DIR
        assert not receipts.exists() or list(receipts.iterdir()) == []


async def test_a_charge_left_unrecorded_is_logged_when_the_server_starts(tmp_path: Path) -> None:
    """A server killed between charge and record: the charge stays and gets its entry."""
    pair = make_pair(tmp_path)
    peer = pair.responder.peer(PROPOSER)
    with pair.responder.open_ledger() as ledger:
        ledger.admit(
            PROPOSER,
            operation=Operation.CHECK,
            area_km2=ONE_GROUP_KM2,
            allowances=pair.responder.allowances(peer, Operation.CHECK),
            now=time.time(),
            session_id=bytes(16),
        )
    async with serving(pair.responder) as running:
        assert running.ledger.unrecorded() == []
        spent = running.ledger.spent(PROPOSER, now=time.time(), window_seconds=DAY)
        assert spent == pytest.approx(ONE_GROUP_KM2)
        (entry,) = running.audit.entries()
        assert entry.kind == UNFINISHED_KIND
        assert entry.details_object()["area_km2"] == pytest.approx(ONE_GROUP_KM2)
