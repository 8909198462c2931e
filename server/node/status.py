"""What an operator needs to know about a node, read from its directory: ``hexpsi status``.

Nothing here talks to the network or to a running server: the servers' own
records (``run/``), the epochs, the ledger, the audit log and the kept peer
descriptors say it all. Times are RFC 3339 in UTC; areas in km².
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from hexpsi.protocol.epoch import schedule
from hexpsi.protocol.epoch.schedule import EpochTimes
from hexpsi.protocol.errors import HexpsiError
from hexpsi.protocol.times import rfc3339
from hexpsi.server.node.descriptors import AcceptedDescriptors, equivocations
from hexpsi.server.node.directory import Node
from hexpsi.server.node.epochs import EpochStore, load_cells
from hexpsi.server.node.renewal import stored_sources
from hexpsi.server.node.running import peers_digest, running
from hexpsi.server.node.standing import (
    Standing,
    node_standing,
    node_volume_standing,
    peer_standings,
)

CHECK_SERVED_KIND = "evaluate"
"""The audit entry a responder writes for each check it answers."""
CHECK_SENT_KIND = "check"
"""The audit entry a proposer writes for each check it makes."""


def _when(moment: float | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def _standing(standing: Standing, volume: Standing | None = None) -> dict[str, float]:
    members = {
        "budget_km2": standing.limit,
        "spent_km2": round(standing.spent, 6),
        "left_km2": round(standing.left, 6),
        "window_hours": standing.window_hours,
    }
    if volume is not None:
        members |= {
            "budget_km2h": volume.limit,
            "spent_km2h": round(volume.spent, 6),
            "left_km2h": round(volume.left, 6),
        }
    return members


def _sources(directory: Path) -> list[dict[str, Any]] | None:
    """The files an epoch was built from, and whether each still holds what was read."""
    recorded = stored_sources(directory)
    if recorded is None:
        return None
    files = []
    for entry in recorded.get("files", []):
        path, digest = entry.get("path"), entry.get("sha256")
        try:
            now_digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            state = "unchanged" if now_digest == digest else "changed"
        except (OSError, TypeError):
            state = "missing" if path != "-" else "stdin"
        files.append({"path": path, "sha256": digest, "now": state})
    return files


def _epoch(store: EpochStore, times: EpochTimes) -> dict[str, Any]:
    directory = store.root / f"{times.sequence:06d}"
    summary: dict[str, Any] = {
        "sequence": times.sequence,
        "created": rfc3339(times.created_at),
        "valid_until": rfc3339(times.valid_until),
    }
    try:
        epoch = store.load(times.sequence)
    except HexpsiError as error:
        summary["error"] = error.explain()
        return summary
    try:
        summary = {
            "id": epoch.descriptor.descriptor.epoch_id.hex(),
            **summary,
            "cells": len(load_cells(directory)),
            "padded": epoch.params.count,
            "snapshot_bytes": epoch.descriptor.descriptor.snapshot_bytes,
            "sources": _sources(directory),
        }
    finally:
        epoch.blocks.close()
    return summary


def _epochs(node: Node, now: float) -> dict[str, Any]:
    store = EpochStore(node)
    try:
        latest = store.current_sequence()
    except HexpsiError as error:
        return {"epoch": None, "next_epoch": None, "epoch_error": error.explain()}
    times = store.schedule()
    current = schedule.serving(times, latest=latest, now=now)
    following = schedule.upcoming(times, latest=latest, now=now)
    renew_before = node.config.renew_before_hours
    last = next((t for t in times if t.sequence == latest), None)
    renewal_at = None
    if renew_before > 0 and last is not None and last.begun(now):
        renewal_at = last.valid_until - renew_before * 3600.0
    gap = schedule.gap(times, latest=latest, now=now)
    return {
        "epoch": None if current is None else _epoch(store, current),
        "next_epoch": None if following is None else _epoch(store, following),
        "renewal": {
            "renew_before_hours": renew_before,
            "next": _when(renewal_at),
        },
        "gap": None if gap is None else {"from": rfc3339(gap[0]), "until": rfc3339(gap[1])},
    }


def _peers(node: Node, now: float) -> list[dict[str, Any]]:
    accepted = AcceptedDescriptors(node.directory)
    with node.open_ledger() as ledger:
        standings = {s.name: s for s in peer_standings(node, ledger, now=now)}
    with node.open_audit_log() as audit:
        last = {
            peer.name: (
                audit.last_time(CHECK_SERVED_KIND, peer.name),
                audit.last_time(CHECK_SENT_KIND, peer.name),
            )
            for peer in node.peers()
        }
    listed = []
    for peer in node.peers():
        standing = standings[peer.name]
        cached = accepted.newest_descriptor(peer.name, peer.identity.verify_key)
        cached_epoch = None
        if cached is not None:
            d = cached.descriptor
            cached_epoch = {
                "id": d.epoch_id.hex(),
                "sequence": d.sequence,
                "valid_until": rfc3339(d.valid_until),
                "expired": now > d.valid_until,
            }
        served, sent = last[peer.name]
        listed.append(
            {
                "name": peer.name,
                "address": peer.address,
                **_standing(standing.area, standing.volume),
                "mutual_checks_left": (
                    None if standing.mutual_checks is None else standing.mutual_checks.left
                ),
                "last_check": _when(served),
                "last_check_sent": _when(sent),
                "cached_epoch": cached_epoch,
                "certificate_sha256": peer.certificate_sha256,
            }
        )
    return listed


def node_status(node: Node, *, now: float) -> dict[str, Any]:
    """Everything ``hexpsi status`` shows, as JSON-ready values."""
    digest = peers_digest(node.book.signature())
    servers = [
        {
            "listen": record.listen,
            "pid": record.pid,
            "started": rfc3339(record.started),
            "peers_applied": record.peers == digest,
        }
        for record in running(node.directory)
    ]
    with node.open_ledger() as ledger:
        budget = _standing(
            node_standing(node, ledger, now=now), node_volume_standing(node, ledger, now=now)
        )
    return {
        "name": node.name,
        "fingerprint": node.certificate_sha256,
        "signing_key": bytes(node.signing_key.verify_key).hex(),
        "listen": node.config.listen,
        "address": node.config.address,
        "serving": bool(servers),
        "servers": servers,
        **_epochs(node, now),
        "budget": budget,
        "peers": _peers(node, now),
        "equivocations": [
            {
                "peer": record.peer,
                "sequence": record.sequence,
                "first_digest": record.first_digest.hex(),
                "second_digest": record.second_digest.hex(),
                "proof": str(record.directory.relative_to(node.directory)),
            }
            for record in equivocations(node.directory)
        ],
        "now": rfc3339(now),
    }
