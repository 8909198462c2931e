"""A proposer sweeping the responder's map is stopped by the area budget, over mutual TLS.

Repeated queries are the inherent leak of any PSI: enough checks map the
responder's positions. The defence is an area budget per peer and window,
charged by each element's declared resolution (a res-r element covers
``7**(res - r)`` finest cells), persisted across restarts; and per-resolution
keys, so a proposer that declares a coarse token as a fine one to pay less
gets an answer that matches nothing.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import grpc
import h3.api.basic_int as h3
import pytest

import hexpsi.protocol.check.session
import hexpsi.protocol.crypto.group
from hexpsi.protocol.budget import cell_area_km2
from hexpsi.protocol.check.messages import Receipt
from hexpsi.protocol.check.session import MODE, snapshot_bits
from hexpsi.protocol.crypto.oprf import blind, finalize, verify_proof
from hexpsi.protocol.errors import HexpsiError, Status
from hexpsi.protocol.geo.tokens import token_bytes
from hexpsi.protocol.snapshot.build import truncate_output
from hexpsi.protocol.times import rfc3339
from hexpsi.server.clients.check import run_check
from hexpsi.server.clients.peer import PeerClient
from hexpsi.server.node.snapshot_cache import SnapshotCache
from tests.security.hostile_helpers import (
    ONE_GROUP_KM2,
    PROPOSER,
    PROTECTED,
    RES,
    RES_MIN,
    RESPONDER,
    check_stub,
    current_descriptor,
    evaluate_request,
    make_pair,
    outcome,
    random_elements,
    refused,
    serving,
    tls_channel,
)

WINDOW_HOURS = 6.0
SWEEP_BUDGET_KM2 = 3.5 * ONE_GROUP_KM2
"""Room for exactly three of the smallest checks."""


def sweep_strikes() -> list[frozenset[int]]:
    """Disjoint single-cell strikes marching across the responder's theatre."""
    start = h3.latlng_to_cell(33.9, 38.9, RES)
    return [frozenset({cell}) for cell in sorted(h3.grid_ring(start, 30))[:6]]


async def test_a_sweep_of_disjoint_checks_is_stopped_with_what_is_left_and_when(
    tmp_path: Path,
) -> None:
    """Three small checks fit, the fourth is RESOURCE_EXHAUSTED with the remainder and reset
    time, and a restart of the responder hands nothing back.

    Checked to fail without the protection: with ``Ledger.admit`` reduced to
    returning an admission without writing the charge, all six checks succeeded and
    the first assertion on ``refusal`` failed.
    """
    pair = make_pair(tmp_path, budget_km2=SWEEP_BUDGET_KM2, window_hours=WINDOW_HOURS)
    strikes = sweep_strikes()
    receipts: list[Receipt] = []
    async with serving(pair.responder) as running:
        refusal: HexpsiError | None = None
        for strike in strikes:
            try:
                report = await run_check(pair.proposer, RESPONDER, strike)
            except HexpsiError as error:
                refusal = error
                break
            receipts.append(report.result.receipt)
        now = time.time()
        assert refusal is not None, "the sweep was never stopped"
        assert refusal.status is Status.RESOURCE_EXHAUSTED
        assert len(receipts) == 3
        left = SWEEP_BUDGET_KM2 - 3 * ONE_GROUP_KM2
        # Windows roll: enough frees up when the first charge leaves the last W hours.
        frees = rfc3339(receipts[0].issued_at + WINDOW_HOURS * 3600)
        assert f"{left:.3f} km² of bravo's area budget" in refusal.message
        assert f"enough frees up at {frees} (in " in refusal.message
        assert sum(r.area_km2 for r in receipts) <= SWEEP_BUDGET_KM2
        spent = running.ledger.spent(PROPOSER, now=now, window_seconds=WINDOW_HOURS * 3600)
        assert spent == pytest.approx(3 * ONE_GROUP_KM2)
    # The ledger outlives the process: a restarted responder says the same.
    async with serving(pair.responder) as running:
        with pytest.raises(HexpsiError) as caught:
            await run_check(pair.proposer, RESPONDER, strikes[-1])
        assert caught.value.status is Status.RESOURCE_EXHAUSTED
        assert f"{left:.3f} km² of bravo's area budget" in caught.value.message
        assert f"enough frees up at {frees} (in " in caught.value.message
        # The first server logged its refusal when it stopped: counted, not one entry per call.
        entries = running.audit.entries()
        assert [e.kind for e in entries] == ["evaluate"] * 3 + ["refusals"]
        assert entries[-1].details_object()["reasons"] == {"budget": 1}


async def test_concurrent_queries_cannot_overspend_together(tmp_path: Path) -> None:
    """Eight queries at once against room for three: exactly three are evaluated.

    Checked to fail without the protection: with ``Ledger.charge_area`` reading the
    spent area and recording the new total in two transactions (a short pause
    between them), racing queries saw the same remainder and more than three were
    evaluated.
    """
    pair = make_pair(
        tmp_path,
        budget_km2=SWEEP_BUDGET_KM2,
        window_hours=WINDOW_HOURS,
        limits={"max_sessions_per_peer": 8},
    )
    async with serving(pair.responder) as running:
        async with tls_channel(pair.responder, pair.proposer) as channel:
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
        spent = running.ledger.spent(PROPOSER, now=time.time(), window_seconds=WINDOW_HOURS * 3600)
        assert spent <= SWEEP_BUDGET_KM2


async def test_a_peer_out_of_budget_costs_no_element_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the budget is spent, even a maximal 4096-element query is refused before the
    responder decodes a single element (so refusals cost it next to nothing).

    Checked to fail without the protection: without ``CheckServicer._affordable``
    every one of the 4096 elements was validated before the budget refused the query.
    """
    decoded: list[bytes] = []
    honest = hexpsi.protocol.crypto.group.validate_element

    def counting(element: bytes, what: str = "group element") -> bytes:
        decoded.append(element)
        return honest(element, what)

    monkeypatch.setattr(hexpsi.protocol.crypto.group, "validate_element", counting)
    pair = make_pair(tmp_path, budget_km2=1.5 * ONE_GROUP_KM2, window_hours=WINDOW_HOURS)
    async with serving(pair.responder), tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, pair.responder)
        await stub.Evaluate(evaluate_request(descriptor.digest), timeout=10)
        assert len(decoded) == 8
        big = evaluate_request(descriptor.digest, {RES: 8})
        big.groups[0].elements = random_elements(8) * 512
        error = await refused(stub.Evaluate(big, timeout=10))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "allows at all" in (error.details() or "")
    assert len(decoded) == 8


@pytest.mark.parametrize("resolution", range(RES_MIN, RES + 1))
async def test_every_element_is_charged_the_area_its_resolution_covers(
    tmp_path: Path, resolution: int
) -> None:
    """A res-r element is charged 7**(res - r) finest cells, padding included.

    Checked to fail without the protection: with ``query_area_km2`` charging one
    cell per element whatever its resolution, the receipts for res 5..8 were
    2401, 343, 49 and 7 times too small and the equality failed.
    """
    pair = make_pair(tmp_path)
    async with serving(pair.responder), tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, pair.responder)
        reply = await stub.Evaluate(
            evaluate_request(descriptor.digest, {resolution: 8}), timeout=10
        )
    receipt = Receipt.decode(reply.receipt)
    assert receipt.area_km2 == pytest.approx(8 * 7 ** (RES - resolution) * cell_area_km2(RES))


async def test_coarse_tokens_cannot_cover_more_ground_than_the_budget(tmp_path: Path) -> None:
    """Whole res-5 cells per token: the first coarse query already exceeds the allowance.

    A res-9 query of the same size passes, so it is the declared area that is
    refused, not the element count. Checked to fail without the protection:
    with ``query_area_km2`` charging one cell per element the res-5 query was
    evaluated (OK) and ``refused`` failed.
    """
    budget = 1000.0
    pair = make_pair(tmp_path, budget_km2=budget, window_hours=WINDOW_HOURS)
    async with serving(pair.responder), tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, pair.responder)
        coarse = evaluate_request(descriptor.digest, {RES_MIN: 8})
        error = await refused(stub.Evaluate(coarse, timeout=10))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        needed = 8 * 7 ** (RES - RES_MIN) * cell_area_km2(RES)
        details = error.details() or ""
        assert f"could expose up to {needed:,.3f} km², more than bravo's area budget" in details
        assert "allows at all" in details
        await stub.Evaluate(evaluate_request(descriptor.digest, {RES: 8}), timeout=10)
    # The proposer's own client reaches the same refusal for a whole res-5 strike.
    async with serving(pair.responder):
        whole = frozenset(h3.cell_to_children(h3.cell_to_parent(min(PROTECTED), RES_MIN), RES))
        with pytest.raises(HexpsiError, match="allows at all") as caught:
            await run_check(pair.proposer, RESPONDER, whole)
        assert caught.value.status is Status.RESOURCE_EXHAUSTED


async def test_a_coarse_token_declared_as_a_fine_one_matches_nothing(tmp_path: Path) -> None:
    """The res-5 ancestor of a protected cell, declared at res 9 to pay 1/2401 of its area,
    comes back (correctly proven under the res-9 key) as a value that is not in the
    snapshot; declared honestly at res 5 the very same token hits.

    Checked to fail without the protection: with ``hexpsi.protocol.crypto.keys.epoch_keys``
    deriving one key for every resolution, the mislabelled token also hit and the
    ``not in`` assertion failed.
    """
    pair = make_pair(tmp_path)
    token = h3.cell_to_parent(min(PROTECTED), RES_MIN)
    async with serving(pair.responder), tls_channel(pair.responder, pair.proposer) as channel:
        stub = check_stub(channel)
        descriptor = await current_descriptor(stub, pair.responder)
        cache = SnapshotCache(pair.proposer.directory)
        cached = cache.open(RESPONDER, descriptor)
        async with PeerClient(pair.proposer, pair.proposer.peer(RESPONDER)) as client:
            await client.download_snapshot(cached)
        values: dict[int, int] = {}
        charged: dict[int, float] = {}
        for declared in (RES, RES_MIN):
            blinds, blinded = blind([token_bytes(token)], MODE, os.urandom)
            request = evaluate_request(descriptor.digest, {declared: 8})
            request.groups[0].elements = blinded[0] + random_elements(7)
            reply = await stub.Evaluate(request, timeout=10)
            (group,) = reply.groups
            elements = [group.elements[i : i + 32] for i in range(0, len(group.elements), 32)]
            sent = [request.groups[0].elements[i : i + 32] for i in range(0, 8 * 32, 32)]
            public = descriptor.descriptor.public_keys[declared]
            verify_proof(public, sent, elements, group.proof, MODE)
            (output,) = finalize([token_bytes(token)], blinds, elements[:1], MODE)
            values[declared] = truncate_output(output, snapshot_bits(descriptor))
            charged[declared] = Receipt.decode(reply.receipt).area_km2
    assert charged[RES] == pytest.approx(ONE_GROUP_KM2)
    assert charged[RES_MIN] == pytest.approx(7 ** (RES - RES_MIN) * ONE_GROUP_KM2)
    assert cached.reader.contains(values[RES_MIN])
    assert not cached.reader.contains(values[RES])
