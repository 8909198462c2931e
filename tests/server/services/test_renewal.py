"""A running server renews its epoch before it expires, while a peer keeps checking.

Epochs here last 10.8 s and are renewed 5.4 s before they end, so a test of
about 12 s sees two renewals. Every check in that time must succeed and answer
exactly as before: a renewal republishes the same positions with new keys.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from hexpsi.server.clients.check import run_check
from hexpsi.server.node.directory import Node
from hexpsi.server.node.epochs import EpochStore, load_cells
from hexpsi.server.node.renewal import EPOCH_AUDIT_KIND
from hexpsi.server.services.app import start_server
from hexpsi.server.workers import WorkerPool
from tests.server.conftest import PROTECTED, RESPONDER, STRIKES, edit_config, make_epoch, make_pair

VALIDITY_HOURS = 0.003
RENEW_BEFORE_HOURS = 0.0015


async def test_checks_keep_working_through_two_renewals(tmp_path: Path) -> None:
    pair = make_pair(tmp_path, epoch=False)
    edit_config(
        pair.responder.directory,
        epoch_validity_hours=VALIDITY_HOURS,
        renew_before_hours=RENEW_BEFORE_HOURS,
    )
    responder = Node(pair.responder.directory)
    first = make_epoch(responder)
    running = await start_server(responder)
    sequences: list[int] = []
    strike = STRIKES["direct"]
    deadline = time.monotonic() + 3 * VALIDITY_HOURS * 3600
    try:
        with WorkerPool(name="test-renewal") as pool:
            while len(set(sequences)) < 3:
                assert time.monotonic() < deadline, f"only epochs {sorted(set(sequences))}"
                report = await run_check(pair.proposer, RESPONDER, strike, pool=pool)
                assert report.result.conflict
                assert report.result.conflicting_cells == strike & PROTECTED
                sequences.append(report.descriptor.descriptor.sequence)
                await asyncio.sleep(0.3)
    finally:
        await running.stop(grace=1.0)
    seen = sorted(set(sequences))
    assert seen[0] == first
    assert len(seen) >= 3, seen
    assert sequences == sorted(sequences), "a proposer never goes back to an older epoch"

    store = EpochStore(responder)
    kept = [t.sequence for t in store.schedule()]
    for sequence in kept:
        assert set(load_cells(store.root / f"{sequence:06d}")) == set(PROTECTED)
    with responder.open_audit_log() as audit:
        renewals = [
            entry.details_object()
            for entry in audit.entries()
            if entry.kind == EPOCH_AUDIT_KIND and entry.details_object()["renewed_from"]
        ]
        audit.verify()
    assert len(renewals) >= 2
    assert [r["renewed_from"] for r in renewals[:2]] == [first, first + 1]
    ids = {r["epoch_id"] for r in renewals}
    assert len(ids) == len(renewals), "every renewal has its own epoch id and keys"
