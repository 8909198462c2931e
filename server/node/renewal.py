"""Publishing a node's epochs: from ``hexpsi positions``, and renewed by a running server.

Both paths build the epoch with :class:`EpochStore` and log it in the audit
log as an ``epoch`` entry, so the log tells every epoch a peer may have been
answered from, when it began and when it ends.

A renewal republishes the served epoch's own protected cells, standing and
timed (the positions the operator last set, not whatever the source files
hold now), with fresh keys over its own horizon, before the served one
expires: timed cells whose interval has passed drop out on their own.
Several servers of one node (replicas) may try at once: the first takes
``epochs/.renew.lock`` and the others then find the renewal done.
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from hexpsi.protocol.epoch import schedule
from hexpsi.protocol.errors import HexpsiError
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.protocol.times import rfc3339
from hexpsi.server.node.auditlog import AuditLog
from hexpsi.server.node.epochs import (
    SOURCES_FILE,
    EpochStore,
    ServedEpoch,
    load_cells,
    load_timed_cells,
)
from hexpsi.server.node.files import ensure_private_dir

log = logging.getLogger(__name__)

EPOCH_AUDIT_KIND = "epoch"
RENEW_LOCK = ".renew.lock"


def publish(
    store: EpochStore,
    audit: AuditLog,
    cells: Collection[int],
    *,
    now: float,
    valid_from: float | None = None,
    valid_until: float | None = None,
    sources: Mapping[str, Any] | None = None,
    renewed_from: int | None = None,
    timed_cells: Collection[tuple[int, Interval]] = (),
) -> ServedEpoch:
    """Build, publish and log one epoch of ``cells`` (and ``timed_cells``)."""
    epoch = store.create(
        cells,
        now=now,
        valid_from=valid_from,
        valid_until=valid_until,
        sources=sources,
        timed_cells=timed_cells,
    )
    d = epoch.descriptor.descriptor
    audit.append(
        EPOCH_AUDIT_KIND,
        store.node.name,
        {
            "epoch_sequence": d.sequence,
            "epoch_id": d.epoch_id.hex(),
            "descriptor_digest": epoch.descriptor.digest.hex(),
            "protected_cells": len(cells),
            "timed_cells": len(timed_cells),
            "snapshot_values": epoch.params.count,
            "created_at": d.created_at,
            "valid_until": d.valid_until,
            "renewed_from": renewed_from,
        },
        time.time(),
    )
    return epoch


def stored_sources(directory: Path) -> dict[str, Any] | None:
    """What ``positions`` read for the epoch in ``directory`` (None if not recorded)."""
    try:
        data = json.loads((directory / SOURCES_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def renew_if_due(store: EpochStore, audit: AuditLog, *, now: float) -> ServedEpoch | None:
    """Publish a fresh epoch if the last one ends within ``renew_before_hours``.

    Returns the new epoch, or None when nothing was due (or another server of
    this node renewed first). Warns when a scheduled epoch begins only after
    the served one has expired.
    """
    renew_before = store.node.config.renew_before_hours * 3600.0
    times = store.schedule()
    latest = store.current_sequence()
    hole = schedule.gap(times, latest=latest, now=now)
    if hole is not None:
        log.warning(
            "the served epoch ends at %s but the next scheduled one begins only at %s: "
            "peers will be refused in between (run hexpsi positions)",
            rfc3339(hole[0]),
            rfc3339(hole[1]),
        )
    if not schedule.renewal_due(times, latest=latest, now=now, renew_before_seconds=renew_before):
        return None
    ensure_private_dir(store.root)
    with (store.root / RENEW_LOCK).open("a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        # Another server of this node may have renewed while this one waited.
        latest = store.current_sequence()
        if latest is None or not schedule.renewal_due(
            store.schedule(), latest=latest, now=now, renew_before_seconds=renew_before
        ):
            return None
        directory = store.root / f"{latest:06d}"
        cells = load_cells(directory)
        timed = load_timed_cells(directory)
        sources = stored_sources(directory) or {}
        sources["renewed_from"] = latest
        epoch = publish(
            store, audit, cells, now=now, sources=sources, renewed_from=latest, timed_cells=timed
        )
    d = epoch.descriptor.descriptor
    log.info(
        "renewed epoch %d as epoch %d (same %d cells, new keys), valid until %s",
        latest,
        d.sequence,
        len(cells),
        rfc3339(d.valid_until),
    )
    return epoch


def try_renewal(store: EpochStore, audit: AuditLog, *, now: float) -> ServedEpoch | None:
    """:func:`renew_if_due` for the housekeeping loop: a failure is logged, not raised."""
    try:
        return renew_if_due(store, audit, now=now)
    except (HexpsiError, OSError) as error:
        reason = error.explain() if isinstance(error, HexpsiError) else str(error)
        log.error("could not renew the epoch: %s (run hexpsi positions)", reason)
        return None
