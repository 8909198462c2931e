"""The proposer's client against a real responder over mutual TLS: results, refusals, cache.

The central property: a check reports exactly the tokens whose cells hold a
protected cell, and a conflict exactly when the strike cover meets the
protected set, for strikes sent as tokens from res 9 up to whole res-5 cells.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.check.evidence import verify_evidence
from hexpsi.protocol.check.messages import Receipt
from hexpsi.protocol.check.zone_evidence import NO_ZONE, ZoneEvidence, verify_zone_evidence
from hexpsi.protocol.errors import HexpsiError, StaleError, Status, VerificationError
from hexpsi.protocol.geo.shapes import Circle, Feature
from hexpsi.protocol.geo.tokens import cells_inside, query_tokens
from hexpsi.protocol.geo.zone import StrikeZone
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS
from hexpsi.server.clients.check import run_check
from hexpsi.server.clients.peer import PeerClient
from hexpsi.server.node.directory import Node
from hexpsi.server.node.epochs import CURRENT_FILE, EPOCHS_DIR, BlockFile, EpochStore
from hexpsi.server.node.snapshot_cache import CACHE_DIR, SnapshotCache
from hexpsi.server.rpc.check_convert import request_to_query
from hexpsi.server.services.app import RunningServer, start_server
from tests.server.conftest import (
    CENTER,
    FAR,
    OUTPOST,
    PROTECTED,
    RES,
    RES_MIN,
    RESPONDER,
    STRIKES,
    Pair,
    edit_config,
    evaluate_request,
    make_epoch,
    make_nodes,
    make_pair,
)


def expected_hits(strike: frozenset[int], protected: frozenset[int]) -> set[int]:
    tokens = query_tokens(strike, res=RES, res_min=RES_MIN)
    return {
        token
        for group in tokens.values()
        for token in group
        if cells_inside(token, res=RES) & protected
    }


async def test_checks_report_exactly_the_tokens_that_hold_protected_cells(
    pair: Pair, served: RunningServer
) -> None:
    resolutions_hit: set[int] = set()
    for name, strike in STRIKES.items():
        report = await run_check(pair.proposer, RESPONDER, strike)
        result = report.result
        hits = expected_hits(strike, PROTECTED)
        assert result.conflicting_tokens == hits, name
        assert result.conflict == bool(strike & PROTECTED), name
        assert (
            result.conflicting_cells
            == {cell for token in hits for cell in cells_inside(token, res=RES)} & strike
        ), name
        # Each token is asked of standing positions and, over the whole horizon, of timed ones.
        assert result.tokens_sent == 2 * sum(
            len(g) for g in query_tokens(strike, res=RES, res_min=RES_MIN).values()
        )
        resolutions_hit |= {h3.get_resolution(token) for token in hits}
    # The strikes really exercised coarse tokens: hits at every resolution res_min..res.
    assert resolutions_hit == set(range(RES_MIN, RES + 1))


async def test_a_check_keeps_receipt_evidence_and_an_audit_entry(
    pair: Pair, served: RunningServer
) -> None:
    before = time.time()
    report = await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
    receipt = Receipt.decode((report.directory / "receipt.bin").read_bytes())
    assert receipt == report.result.receipt
    assert receipt.proposer == pair.proposer.name
    evidence = ZoneEvidence.from_json((report.directory / "evidence.json").read_bytes())
    key = pair.proposer.peer(RESPONDER).identity.verify_key
    verdict = verify_evidence(evidence.replay, key)
    assert verdict.conflict
    assert before <= evidence.received_at == report.received_at <= time.time()
    # Bare cells have no zone to keep, so the bundle vouches only for its tokens.
    assert evidence.zone is None
    with pytest.raises(VerificationError, match=NO_ZONE):
        verify_zone_evidence(evidence, key)
    with pair.proposer.open_audit_log() as audit:
        entries = audit.entries()
        assert audit.verify() == len(entries)
    assert entries[-1].kind == "check"
    assert report.receipt_id in entries[-1].details.decode()
    # The responder logged the same evaluation under the same receipt id.
    responder_entries = served.audit.entries()
    assert [e.kind for e in responder_entries] == ["evaluate"]
    assert report.receipt_id in responder_entries[0].details.decode()


async def test_a_zone_is_kept_in_the_evidence_which_then_proves_the_whole_zone(
    pair: Pair, served: RunningServer
) -> None:
    lat, lng = h3.cell_to_latlng(OUTPOST)
    zone = StrikeZone((Feature("outpost", (Circle((lat, lng), 400.0),)),), 0.0)
    report = await run_check(pair.proposer, RESPONDER, zone)
    assert report.zone == zone
    assert report.strike_cells == zone.cover(RES)
    assert report.result.conflicting_tokens == expected_hits(report.strike_cells, PROTECTED)
    evidence = ZoneEvidence.from_json((report.directory / "evidence.json").read_bytes())
    assert evidence.zone is not None
    assert evidence.zone.zone == zone
    assert evidence.zone.res == RES
    verdict = verify_zone_evidence(evidence, pair.proposer.peer(RESPONDER).identity.verify_key)
    assert verdict.conflict
    assert verdict.conflicting_cells == report.result.conflicting_cells
    assert verdict.zone_cells == len(report.strike_cells)
    assert verdict.received_at == report.received_at


async def test_a_receipt_dated_beyond_the_clock_skew_is_refused(
    pair: Pair, served: RunningServer
) -> None:
    """The proposer's clock runs ahead of the responder's by more than the skew allowed:
    the receipt's time would misstate when the zone was checked, so nothing is kept."""
    ahead = CLOCK_SKEW_SECONDS + 60.0
    with pytest.raises(StaleError, match="of skew is accepted"):
        await run_check(
            pair.proposer, RESPONDER, STRIKES["direct"], now=lambda: time.time() + ahead
        )
    assert not (pair.proposer.directory / "checks").exists()


async def test_a_new_epoch_is_picked_up_by_the_running_server(
    pair: Pair, served: RunningServer
) -> None:
    strike = STRIKES["far"]
    first = await run_check(pair.proposer, RESPONDER, strike)
    assert not first.result.conflict
    make_epoch(pair.responder, PROTECTED | {FAR})
    second = await run_check(pair.proposer, RESPONDER, strike)
    assert second.result.conflict
    assert second.descriptor.descriptor.sequence == first.descriptor.descriptor.sequence + 1
    assert second.result.epoch_id != first.result.epoch_id
    assert second.result.conflicting_tokens == expected_hits(strike, PROTECTED | {FAR})


async def test_a_replayed_older_descriptor_is_refused(pair: Pair, served: RunningServer) -> None:
    await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
    make_epoch(pair.responder)
    await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
    assert SnapshotCache(pair.proposer.directory).latest_sequence(RESPONDER) == 2
    # The responder (or whoever controls its disk) serves epoch 1 again.
    current = pair.responder.directory / EPOCHS_DIR / CURRENT_FILE
    current.write_text("1\n")
    with pytest.raises(StaleError, match="older than 2"):
        await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
    # The next epoch the responder makes is numbered above the one the proposer saw.
    make_epoch(pair.responder)
    report = await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
    assert report.descriptor.descriptor.sequence == 3


async def test_an_unpinned_client_is_refused(
    tmp_path: Path, pair: Pair, served: RunningServer
) -> None:
    # A node that pinned alpha, but alpha never pinned it: the handshake fails.
    stranger = make_nodes(tmp_path / "other", ["mallory"])["mallory"]
    stranger.add_peer(pair.responder.own_identity())
    with pytest.raises(HexpsiError, match="unreachable") as caught:
        await run_check(Node(stranger.directory), RESPONDER, STRIKES["direct"])
    assert caught.value.status is Status.UNAVAILABLE
    assert served.audit.entries() == []


async def test_a_server_that_is_not_the_pinned_one_is_refused(tmp_path: Path, pair: Pair) -> None:
    # Someone else listens at alpha's address with its own certificate.
    impostor = make_nodes(tmp_path / "other", ["alpha"])["alpha"]
    impostor.add_peer(pair.proposer.own_identity())
    impostor = Node(impostor.directory)
    make_epoch(impostor)
    running = await start_server(impostor, listen=pair.responder.config.listen)
    try:
        with pytest.raises(HexpsiError, match="unreachable") as caught:
            await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
        assert caught.value.status is Status.UNAVAILABLE
    finally:
        await running.stop(grace=1.0)


async def test_an_unreachable_peer_is_named(pair: Pair) -> None:
    with pytest.raises(HexpsiError, match=r"peer alpha is unreachable at 127\.0\.0\.1:") as caught:
        await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
    assert caught.value.status is Status.UNAVAILABLE


async def test_budget_exhaustion_reaches_the_proposer_with_what_is_left(tmp_path: Path) -> None:
    pair = make_pair(tmp_path, budget_km2=1.0)
    running = await start_server(pair.responder)
    try:
        await run_check(pair.proposer, RESPONDER, STRIKES["edge-of-outpost"])
        with pytest.raises(
            HexpsiError, match=r"is left; enough frees up at \S+Z \(in 2[34] h"
        ) as caught:
            await run_check(pair.proposer, RESPONDER, STRIKES["edge-of-outpost"])
        assert caught.value.status is Status.RESOURCE_EXHAUSTED
    finally:
        await running.stop(grace=1.0)


async def test_a_slow_responder_hits_the_deadline(
    pair: Pair, served: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stuck(*args: object, **kwargs: object) -> None:
        time.sleep(1.0)

    monkeypatch.setattr(served.servicer.ledger, "admit", stuck)
    peer = pair.proposer.peer(RESPONDER)
    async with PeerClient(pair.proposer, peer, timeout=0.2) as client:
        descriptor = await client.fetch_descriptor(now=time.time())
        assert descriptor.descriptor.node == RESPONDER
        query = request_to_query(evaluate_request(descriptor.digest))
        with pytest.raises(HexpsiError, match="did not answer the check in time") as caught:
            await client.evaluate(query)
    assert caught.value.status is Status.DEADLINE_EXCEEDED


# ---------------------------------------------------------------- snapshot cache


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One block per streamed chunk, and a record of where each stream started."""
    monkeypatch.setattr("hexpsi.server.services.check.SNAPSHOT_CHUNK_BYTES", 1)
    starts: list[int] = []
    original = BlockFile.chunks

    def recording(
        self: BlockFile, start: int, *, max_bytes: int
    ) -> Iterator[tuple[int, list[bytes]]]:
        starts.append(start)
        return original(self, start, max_bytes=max_bytes)

    monkeypatch.setattr(BlockFile, "chunks", recording)
    return starts


class Interrupted(Exception):
    pass


def cache_dir(pair: Pair) -> Path:
    (epoch,) = [
        p for p in (pair.proposer.directory / CACHE_DIR / RESPONDER).iterdir() if p.is_dir()
    ]
    return epoch


async def test_an_interrupted_download_resumes_from_the_stored_blocks(
    pair: Pair, served: RunningServer, small_chunks: list[int]
) -> None:
    block_count = served.servicer.epochs.get().blocks.count
    assert block_count >= 3

    def stop_after_two(done: int, total: int) -> None:
        if done and len(seen) == 1:
            raise Interrupted
        seen.append(done)

    seen: list[int] = []
    with pytest.raises(Interrupted):
        await run_check(pair.proposer, RESPONDER, STRIKES["direct"], progress=stop_after_two)
    stored = cache_dir(pair)
    assert not (stored / "complete").exists()
    assert len((stored / "offsets").read_bytes()) == 2 * 8

    report = await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
    assert small_chunks == [0, 2]
    assert report.result.conflicting_tokens == expected_hits(STRIKES["direct"], PROTECTED)
    assert (stored / "complete").exists()
    # A third check needs no download at all.
    await run_check(pair.proposer, RESPONDER, STRIKES["far"])
    assert small_chunks == [0, 2]


async def test_a_corrupted_cached_block_is_detected_and_fetched_again(
    pair: Pair, served: RunningServer, small_chunks: list[int]
) -> None:
    await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
    blocks = cache_dir(pair) / "blocks"
    data = bytearray(blocks.read_bytes())
    data[len(data) // 2] ^= 0x40
    blocks.write_bytes(bytes(data))
    report = await run_check(pair.proposer, RESPONDER, STRIKES["outpost-res7"])
    assert small_chunks == [0, 0]
    assert report.result.conflicting_tokens == expected_hits(STRIKES["outpost-res7"], PROTECTED)
    assert report.result.conflict
    assert (cache_dir(pair) / "blocks").read_bytes() != bytes(data)


async def test_a_partial_download_that_fails_its_digest_is_fetched_again(
    tmp_path: Path, pair: Pair, served: RunningServer, small_chunks: list[int]
) -> None:
    def stop_after_two(done: int, total: int) -> None:
        if len(seen) == 1:
            raise Interrupted
        seen.append(done)

    seen: list[int] = []
    with pytest.raises(Interrupted):
        await run_check(pair.proposer, RESPONDER, STRIKES["direct"], progress=stop_after_two)
    # Replace the two stored blocks with well-formed blocks of another snapshot with the
    # same parameters: each decodes, only the digest at the end can tell.
    other = make_nodes(tmp_path / "other", ["delta"])["delta"]
    make_epoch(other)
    foreign = EpochStore(other).current()
    assert foreign is not None
    blocks = [foreign.blocks.get(0), foreign.blocks.get(1)]
    foreign.blocks.close()
    stored = cache_dir(pair)
    (stored / "blocks").write_bytes(b"".join(blocks))
    ends = [len(blocks[0]), len(blocks[0]) + len(blocks[1])]
    (stored / "offsets").write_bytes(b"".join(end.to_bytes(8, "big") for end in ends))

    report = await run_check(pair.proposer, RESPONDER, {OUTPOST})
    assert report.result.conflict
    assert small_chunks == [0, 2, 0]


async def test_a_zone_too_large_for_one_check_is_checked_in_parts_and_answered_once(
    tmp_path: Path,
) -> None:
    """A responder taking 64 elements per check; a zone needing several times that is
    split into ordinary checks against one epoch, each with its own receipt, answered
    as one, and its one evidence bundle proves the whole zone."""
    pair = make_pair(tmp_path, limits={"max_query_tokens": 64})
    lat, lng = h3.cell_to_latlng(CENTER)
    zone = StrikeZone((Feature("ring", (Circle((lat, lng), 2500.0),)),))
    running = await start_server(pair.responder)
    try:
        report = await run_check(pair.proposer, RESPONDER, zone)
        evaluations = [e for e in running.audit.entries() if e.kind == "evaluate"]
    finally:
        await running.stop(grace=1.0)
    res = report.descriptor.descriptor.res
    cells = frozenset(zone.cover(res))
    assert len(report.parts) >= 2
    assert len({r.receipt_id for r in report.receipts}) == len(report.parts)
    assert report.result.conflict
    assert report.result.conflicting_tokens == expected_hits(cells, PROTECTED)
    assert report.result.tokens_sent == 2 * sum(
        len(group) for group in query_tokens(cells, res=res, res_min=RES_MIN).values()
    )
    assert report.area_km2 == pytest.approx(sum(r.area_km2 for r in report.receipts))
    bundle = ZoneEvidence.from_json((report.directory / "evidence.json").read_bytes())
    assert len(bundle.parts) == len(report.parts)
    verdict = verify_zone_evidence(bundle, pair.proposer.peer(RESPONDER).identity.verify_key)
    assert verdict.conflict
    assert verdict.conflicting_cells == report.result.conflicting_cells
    assert verdict.receipt_ids == tuple(r.receipt_id for r in report.receipts)
    assert len(evaluations) == len(report.parts)
    # A bundle missing one part no longer shows the whole zone.
    cut = ZoneEvidence(bundle.parts[1:], bundle.zone)
    with pytest.raises(VerificationError, match="lacks"):
        verify_zone_evidence(cut, pair.proposer.peer(RESPONDER).identity.verify_key)


async def test_a_peer_that_starts_over_with_new_keys_is_checked_again(
    tmp_path: Path, pair: Pair
) -> None:
    running = await start_server(pair.responder)
    try:
        make_epoch(pair.responder)
        await run_check(pair.proposer, RESPONDER, STRIKES["direct"])  # saw sequence 2
    finally:
        await running.stop(grace=1.0)
    # alpha is rebuilt from scratch (new keys, sequences from 1) at the same address;
    # both sides pin the new identities.
    reborn = make_nodes(tmp_path / "reborn", [RESPONDER])[RESPONDER]
    address = pair.responder.config.listen
    edit_config(reborn.directory, listen=address, address=address)
    reborn = Node(reborn.directory)
    reborn.add_peer(pair.proposer.own_identity())
    pair.proposer.add_peer(reborn.own_identity(), replace=True)
    reborn = Node(reborn.directory)
    make_epoch(reborn)
    running = await start_server(reborn)
    try:
        report = await run_check(Node(pair.proposer.directory), RESPONDER, STRIKES["direct"])
    finally:
        await running.stop(grace=1.0)
    assert report.descriptor.descriptor.sequence == 1
    assert report.result.conflict
