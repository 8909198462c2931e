"""A flood of refused calls costs the responder next to nothing and grows nothing without bound.

Measured before the fix: a peer with no mutual allowance sent 144 refused
``Mutual`` calls in a minute against a 280k-cell map and the responder grew from
68 MB to 8 GB: every call loaded the map and its H(cell) values before the
allowance was checked, wrote a session row, and left its objects in reference
cycles; nothing was logged. Now allowances and budgets are checked before
anything is loaded, decoded or written, and refusals are counted into one
audit entry per peer and interval.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from pathlib import Path
from typing import Any, cast

import grpc
import h3.api.basic_int as h3
import pytest

import hexpsi.protocol.check.session
import hexpsi.server.node.epochs
from hexpsi.protocol.check.session import ProposerCheck, SnapshotView
from hexpsi.protocol.crypto.group import validate_elements
from hexpsi.protocol.mutual.messages import MutualStart
from hexpsi.server.rpc.check_convert import query_to_request
from hexpsi.server.rpc.hexpsi.v1 import mutual_pb2_grpc
from hexpsi.server.rpc.mutual_convert import start_request
from hexpsi.server.services.refusals import AUDIT_KIND
from tests.security.hostile_helpers import (
    PROPOSER,
    RES,
    audit_kinds,
    check_stub,
    current_descriptor,
    edit_config,
    evaluate_request,
    make_epoch,
    make_pair,
    outcome,
    serving,
    tls_channel,
)

MAP = sorted(h3.grid_disk(h3.latlng_to_cell(33.50, 38.62, RES), 45))
"""6,211 protected cells: big enough that loading them per call would show."""
CALLS = 120


async def test_a_flood_of_refused_calls_loads_nothing_writes_nothing_and_logs_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked to fail without the protection: with the allowance checked after the map
    was loaded (the order before the fix), ``loads`` held one entry per refused call."""
    loads: list[object] = []
    honest = hexpsi.server.node.epochs.ServedEpoch.mutual_inputs

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        loads.append(self)
        return honest(self, *args, **kwargs)

    monkeypatch.setattr(hexpsi.server.node.epochs.ServedEpoch, "mutual_inputs", counting)
    pair = make_pair(tmp_path, budget_km2=0.0, epoch=False)
    edit_config(pair.responder.directory, budget={"mutual_checks_per_window": 0})
    make_epoch(pair.responder, MAP)
    async with serving(pair.responder) as running:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            stub = check_stub(channel)
            digest = (await current_descriptor(stub, pair.responder)).digest
            mutual = mutual_pb2_grpc.MutualServiceStub(channel)
            gc.collect()
            tracemalloc.start()
            try:
                baseline = tracemalloc.get_traced_memory()[0]
                for _ in range(CALLS):
                    call = mutual.Mutual(None, timeout=10)
                    start = MutualStart(os.urandom(16), digest, os.urandom(16), 8192)
                    await call.write(start_request(start))
                    code, _ = await outcome(call.read())
                    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
                    code, _ = await outcome(stub.Evaluate(evaluate_request(digest), timeout=10))
                    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
                gc.collect()
                grown, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert running.ledger.sizes() == (0, 0), "no charge and no session row was written"
    assert loads == [], "the map was never loaded for a refused call"
    assert peak - baseline < 20 * 2**20, f"peak {(peak - baseline) / 2**20:.1f} MiB"
    assert grown - baseline < 5 * 2**20, f"kept {(grown - baseline) / 2**20:.1f} MiB"
    # One audit entry for all of it, counting every refusal by reason.
    assert audit_kinds(pair.responder).count(AUDIT_KIND) == 1
    with pair.responder.open_audit_log() as audit:
        (entry,) = [e for e in audit.entries() if e.kind == AUDIT_KIND]
    assert entry.peer == PROPOSER
    assert entry.details_object()["reasons"] == {"budget": 2 * CALLS}


async def test_a_timed_check_the_space_time_budget_cannot_pay_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The space-time budget is judged from the declared timed group sizes, like the area.

    Checked to fail without the protection: with ``declared_volume_km2h`` left out of
    the early check in ``CheckServicer._evaluate``, every element was decoded
    (``decoded`` held the query's groups) before the budget refused it.
    """
    decoded: list[int] = []
    honest = validate_elements

    def counting(elements: Any, **kwargs: Any) -> Any:
        decoded.append(len(elements))
        return honest(elements, **kwargs)

    monkeypatch.setattr(hexpsi.protocol.check.session, "validate_elements", counting)
    pair = make_pair(tmp_path, epoch=False)
    pair.responder.update_peer(PROPOSER, budget_km2h=0.0)
    make_epoch(pair.responder, MAP[:50])
    async with serving(pair.responder) as running:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            stub = check_stub(channel)
            descriptor = await current_descriptor(stub, pair.responder)
            session = ProposerCheck(
                descriptor=descriptor,
                responder_key=pair.responder.own_identity().verify_key,
                snapshot=cast(SnapshotView, None),  # start() never reads the snapshot
                proposer=PROPOSER,
                strike_cells=MAP[:7],
                rng=os.urandom,
            )
            query = session.start()
            assert query.timed_groups, "a windowless check also asks the timed root"
            code, details = await outcome(stub.Evaluate(query_to_request(query), timeout=10))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "space-time budget" in details
        assert running.ledger.sizes() == (0, 0)
    assert decoded == []
