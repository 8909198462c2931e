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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hexpsi.protocol.check.session import CheckResult, ProposerCheck
from hexpsi.protocol.check.zone_evidence import export_zone_evidence
from hexpsi.protocol.epoch.descriptor import SignedDescriptor
from hexpsi.protocol.geo.zone import StrikeZone
from hexpsi.server.clients.peer import PeerClient, Progress
from hexpsi.server.node.directory import Node
from hexpsi.server.node.files import atomic_write, ensure_private_dir, make_private_dir
from hexpsi.server.node.snapshot_cache import SnapshotCache
from hexpsi.server.workers import WorkerPool

log = logging.getLogger(__name__)

CHECKS_DIR = "checks"


@dataclass
class CheckReport:
    """A finished check as the proposer keeps it."""

    peer: str
    result: CheckResult
    descriptor: SignedDescriptor
    strike_cells: frozenset[int]
    zone: StrikeZone | None
    """The strike's shapes, when the check was given them rather than bare cells."""
    received_at: float
    """When the response arrived, by this node's clock: the time the receipt was judged by."""
    directory: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def receipt_id(self) -> str:
        return self.result.receipt.receipt_id


def _store_check(node: Node, report: CheckReport, evidence_json: bytes) -> None:
    ensure_private_dir(report.directory.parent)
    make_private_dir(report.directory)
    atomic_write(report.directory / "evidence.json", evidence_json, mode=0o600)
    atomic_write(report.directory / "receipt.bin", report.result.receipt.encode(), mode=0o600)


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
    ``res``, whose evidence then carries no zone. Group work runs on ``pool`` (the
    caller's, shared by its checks), or on one made for this call.
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
    async with PeerClient(node, peer, plaintext=plaintext) as client:
        started = time.perf_counter()
        descriptor = await client.fetch_descriptor(now=now())
        if isinstance(strike, StrikeZone):
            zone: StrikeZone | None = strike
            cells = frozenset(await asyncio.to_thread(strike.cover, descriptor.descriptor.res))
        else:
            zone, cells = None, frozenset(strike)
        cached = await asyncio.to_thread(cache.open, peer.name, descriptor)
        timings["descriptor_s"] = time.perf_counter() - started
        started = time.perf_counter()
        await client.download_snapshot(cached, progress=progress)
        timings["snapshot_s"] = time.perf_counter() - started
        started = time.perf_counter()
        session = ProposerCheck(
            descriptor=descriptor,
            responder_key=peer.identity.verify_key,
            snapshot=cached.reader,
            proposer=node.name,
            strike_cells=cells,
            rng=os.urandom,
            mapper=pool.map,
        )
        query = await asyncio.to_thread(session.start)
        response = await client.evaluate(query)
        received_at = now()
        result = await asyncio.to_thread(
            session.finish,
            response,
            now=received_at,
            max_skew=node.config.limits.clock_skew_seconds,
        )
        timings["check_s"] = time.perf_counter() - started
    evidence = await asyncio.to_thread(
        export_zone_evidence, session, zone=zone, received_at=received_at
    )
    report = CheckReport(
        peer=peer.name,
        result=result,
        descriptor=descriptor,
        strike_cells=cells,
        zone=zone,
        received_at=received_at,
        directory=node.directory / CHECKS_DIR / result.receipt.receipt_id,
        timings=timings,
    )
    await asyncio.to_thread(_store_check, node, report, evidence.to_json())
    with node.open_audit_log() as audit:
        audit.append(
            "check",
            peer.name,
            {
                "receipt_id": report.receipt_id,
                "epoch_id": result.epoch_id.hex(),
                "epoch_sequence": descriptor.descriptor.sequence,
                "conflict": result.conflict,
                "conflicting_tokens": len(result.conflicting_tokens),
                "tokens_sent": result.tokens_sent,
                "elements_sent": result.elements_sent,
                "area_km2": result.receipt.area_km2,
            },
            now(),
        )
    log.info(
        "check against %s: %s (%d conflicting tokens), receipt %s",
        peer.name,
        "CONFLICT" if result.conflict else "CLEAR",
        len(result.conflicting_tokens),
        report.receipt_id,
    )
    return report
