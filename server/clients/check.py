"""The proposer's check over gRPC: fetch, verify, check, keep the evidence.

``run_check`` is the whole check: descriptor (signature, freshness, no replay,
no equivocation: ``PeerClient.fetch_descriptor``), snapshot (cached, resumable,
verified), the verified evaluation with its receipt dated within ``[limits]
clock_skew_seconds`` of this node's clock when the response arrived, then the
result, receipt and evidence bundle (``hexpsi/v2/evidence``, with the strike
zone when the caller gave one) stored in the node directory and logged.
Nothing is stored or logged as a check when it is refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hexpsi.protocol.check.messages import Receipt
from hexpsi.protocol.check.pieces import Piece, piece_plan, plan_pieces, zone_windows
from hexpsi.protocol.check.plan import QueryPlan
from hexpsi.protocol.check.session import CheckResult, ProposerCheck
from hexpsi.protocol.check.zone_evidence import export_zone_evidence
from hexpsi.protocol.epoch.descriptor import SignedDescriptor
from hexpsi.protocol.errors import LocalProtocolError
from hexpsi.protocol.geo.zone import StrikeZone
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.server.clients.peer import PeerClient, Progress
from hexpsi.server.node.directory import Node
from hexpsi.server.node.files import atomic_write, ensure_private_dir, make_private_dir
from hexpsi.server.node.snapshot_cache import SnapshotCache
from hexpsi.server.workers import WorkerPool

log = logging.getLogger(__name__)

CHECKS_DIR = "checks"


@dataclass
class CheckReport:
    """A finished check as the proposer keeps it.

    A zone too large for one check is checked in parts (each an ordinary check
    with its own receipt, against the same epoch); ``result`` is their union:
    conflict if any part conflicts, every conflicting token and cell, tokens and
    elements summed, and the first part's receipt (``parts`` holds them all).
    """

    peer: str
    result: CheckResult
    descriptor: SignedDescriptor
    strike_cells: frozenset[int]
    zone: StrikeZone | None
    """The strike's shapes, when the check was given them rather than bare cells."""
    received_at: float
    """When the (last) response arrived, by this node's clock."""
    directory: Path
    parts: tuple[CheckResult, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def receipt_id(self) -> str:
        return self.result.receipt.receipt_id

    @property
    def receipts(self) -> tuple[Receipt, ...]:
        return tuple(part.receipt for part in self.parts) or (self.result.receipt,)

    @property
    def area_km2(self) -> float:
        """What the responder charged, over every part."""
        return sum(receipt.area_km2 for receipt in self.receipts)

    @property
    def volume_km2h(self) -> float:
        """The space-time volume the responder charged, over every part."""
        return sum(receipt.volume_km2h for receipt in self.receipts)


@dataclass(frozen=True)
class CheckPlan:
    """What a check of a zone would send, from the peer's descriptor, before anything is sent."""

    peer: str
    descriptor: SignedDescriptor
    strike_cells: frozenset[int]
    parts: tuple[QueryPlan, ...]

    @property
    def tokens(self) -> int:
        return sum(part.tokens for part in self.parts)

    @property
    def padded(self) -> int:
        return sum(part.padded for part in self.parts)

    @property
    def area_km2(self) -> float:
        res = self.descriptor.descriptor.res
        return sum(part.area_km2(res) for part in self.parts)

    @property
    def volume_km2h(self) -> float:
        d = self.descriptor.descriptor
        if d.time_tree is None:
            return 0.0
        return sum(part.volume_km2h(d.res, d.time_tree.level_hours) for part in self.parts)


def _merged(parts: Sequence[CheckResult]) -> CheckResult:
    first = parts[0]
    return CheckResult(
        responder=first.responder,
        epoch_id=first.epoch_id,
        conflict=any(part.conflict for part in parts),
        conflicting_tokens=frozenset().union(*(p.conflicting_tokens for p in parts)),
        conflicting_cells=frozenset().union(*(p.conflicting_cells for p in parts)),
        tokens_sent=sum(part.tokens_sent for part in parts),
        elements_sent=sum(part.elements_sent for part in parts),
        receipt=first.receipt,
        standing_cells=frozenset().union(*(p.standing_cells for p in parts)),
        timed_hits=tuple(hit for part in parts for hit in part.timed_hits),
    )


def _store_check(node: Node, report: CheckReport, evidence_json: bytes) -> None:
    ensure_private_dir(report.directory.parent)
    make_private_dir(report.directory)
    atomic_write(report.directory / "evidence.json", evidence_json, mode=0o600)
    for number, receipt in enumerate(report.receipts, start=1):
        name = "receipt.bin" if number == 1 else f"receipt-{number}.bin"
        atomic_write(report.directory / name, receipt.encode(), mode=0o600)


def _strike_windows(
    strike: StrikeZone | Iterable[int], res: int
) -> dict[Interval | None, set[int]]:
    """The strike's cells at ``res`` by window (bare cells: no window)."""
    if isinstance(strike, StrikeZone):
        return zone_windows(strike, res)
    return {None: set(strike)}


def _union(windows: Mapping[Interval | None, set[int]]) -> frozenset[int]:
    return frozenset().union(*windows.values())


async def plan_check(
    node: Node,
    peer_name: str,
    strike: StrikeZone | Iterable[int],
    *,
    plaintext: bool = False,
    now: Callable[[], float] = time.time,
) -> CheckPlan:
    """What checking ``strike`` against ``peer_name`` would send and cost; nothing is evaluated.

    The peer's descriptor is fetched (and verified and kept as any check keeps
    it), the zone covered at its ``res`` and the query planned, split into parts
    if it exceeds the peer's limit per check.
    """
    peer = node.peer(peer_name)
    async with PeerClient(node, peer, plaintext=plaintext) as client:
        descriptor = await client.fetch_descriptor(now=now())
    d = descriptor.descriptor
    windows = await asyncio.to_thread(_strike_windows, strike, d.res)
    cells = _union(windows)
    if not cells:
        raise LocalProtocolError("the strike zone covers no cells; nothing to check")
    pieces = await asyncio.to_thread(plan_pieces, windows, d)
    return CheckPlan(peer.name, descriptor, cells, tuple(piece_plan(p, d) for p in pieces))


async def run_check(
    node: Node,
    peer_name: str,
    strike: StrikeZone | Iterable[int],
    *,
    plaintext: bool = False,
    progress: Progress | None = None,
    now: Callable[[], float] = time.time,
    pool: WorkerPool | None = None,
) -> CheckReport:
    """One complete, verified check of ``strike`` against ``peer_name``.

    ``strike`` is a zone, covered at the ``res`` of the peer's verified descriptor
    (which may differ from this node's own) and kept in the evidence, so a third
    party can verify the whole zone was checked; or bare cells at the responder's
    ``res``, whose evidence then carries no zone. A zone too large for one check
    is checked in parts, one after the other over the same channel and epoch,
    and reported as one answer with one evidence bundle. Group work runs on
    ``pool`` (the caller's, shared by its checks), or on one made for this call.
    """
    if pool is None:
        with WorkerPool(name="hexpsi-check") as own:
            return await run_check(
                node,
                peer_name,
                strike,
                plaintext=plaintext,
                progress=progress,
                now=now,
                pool=own,
            )
    peer = node.peer(peer_name)
    cache = SnapshotCache(node.directory)
    timings: dict[str, float] = {}
    zone = strike if isinstance(strike, StrikeZone) else None
    async with PeerClient(node, peer, plaintext=plaintext) as client:
        started = time.perf_counter()
        descriptor = await client.fetch_descriptor(now=now())
        d = descriptor.descriptor
        windows = await asyncio.to_thread(_strike_windows, strike, d.res)
        cells = _union(windows)
        # Planned before the download: a window the epoch cannot answer is refused at once.
        pieces: list[Piece | None] = [None]
        if cells:
            pieces = list(await asyncio.to_thread(plan_pieces, windows, d))
        cached = await asyncio.to_thread(cache.open, peer.name, descriptor)
        timings["descriptor_s"] = time.perf_counter() - started
        started = time.perf_counter()
        await client.download_snapshot(cached, progress=progress)
        timings["snapshot_s"] = time.perf_counter() - started
        started = time.perf_counter()
        finished: list[tuple[ProposerCheck, float]] = []
        results: list[CheckResult] = []
        for piece in pieces:
            session = ProposerCheck(
                descriptor=descriptor,
                responder_key=client.peer.identity.verify_key,
                snapshot=cached.reader,
                proposer=node.name,
                strike_cells=cells,
                rng=os.urandom,
                mapper=pool.map,
                piece=piece,
            )
            query = await asyncio.to_thread(session.start)
            response = await client.evaluate(query)
            received_at = now()
            results.append(
                await asyncio.to_thread(
                    session.finish,
                    response,
                    now=received_at,
                    max_skew=node.config.limits.clock_skew_seconds,
                )
            )
            finished.append((session, received_at))
        timings["check_s"] = time.perf_counter() - started
    evidence = await asyncio.to_thread(export_zone_evidence, finished, zone=zone)
    result = _merged(results)
    report = CheckReport(
        peer=peer.name,
        result=result,
        descriptor=descriptor,
        strike_cells=cells,
        zone=zone,
        received_at=received_at,
        directory=node.directory / CHECKS_DIR / result.receipt.receipt_id,
        parts=tuple(results),
        timings=timings,
    )
    await asyncio.to_thread(_store_check, node, report, evidence.to_json())
    with node.open_audit_log() as audit:
        audit.append(
            "check",
            peer.name,
            {
                "receipt_id": report.receipt_id,
                "receipts": [receipt.receipt_id for receipt in report.receipts],
                "epoch_id": result.epoch_id.hex(),
                "epoch_sequence": descriptor.descriptor.sequence,
                "conflict": result.conflict,
                "conflicting_tokens": len(result.conflicting_tokens),
                "tokens_sent": result.tokens_sent,
                "elements_sent": result.elements_sent,
                "area_km2": report.area_km2,
            },
            now(),
        )
    log.info(
        "check against %s: %s (%d conflicting tokens, %d part(s)), receipt %s",
        peer.name,
        "CONFLICT" if result.conflict else "CLEAR",
        len(result.conflicting_tokens),
        len(results),
        report.receipt_id,
    )
    return report
