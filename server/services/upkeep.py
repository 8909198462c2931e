"""What a running server does now and then: log refusals, prune the ledger, renew epochs.

At start, charges that a stopped process left without their record (between
charge and audit entry) get an audit entry, so no charged area goes unlogged.
Every interval, counted refusals become audit entries, the ledger drops
charges no budget window can count any more and session ids of past epochs,
and the epoch is renewed when it ends within ``renew_before_hours``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from hexpsi.protocol.errors import HexpsiError
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS
from hexpsi.server.node.auditlog import AuditLog
from hexpsi.server.node.directory import Node
from hexpsi.server.node.ledger import Ledger
from hexpsi.server.node.renewal import try_renewal
from hexpsi.server.services.current_epoch import EpochWatcher
from hexpsi.server.services.refusals import INTERVAL_SECONDS, RefusalTally

log = logging.getLogger(__name__)

UNFINISHED_KIND = "charge-unfinished"


class Upkeep:
    """One server's periodic housekeeping."""

    def __init__(
        self,
        node: Node,
        *,
        ledger: Ledger,
        audit: AuditLog,
        refusals: RefusalTally,
        epochs: EpochWatcher,
        clock: Callable[[], float],
    ) -> None:
        self.node = node
        self.ledger = ledger
        self.audit = audit
        self.refusals = refusals
        self.epochs = epochs
        self.clock = clock
        self._busy = threading.Lock()
        """Held while a step runs in its thread: stopping waits for it before closing stores."""

    def recover(self) -> int:
        """Log every charge a stopped process left unrecorded; the area stays charged."""
        unrecorded = self.ledger.unrecorded()
        for charge in unrecorded:
            self.audit.append(
                UNFINISHED_KIND,
                charge.peer,
                {
                    "operation": charge.operation,
                    "charged_at": charge.at,
                    "area_km2": charge.area_km2,
                    "session_id": None if charge.session_id is None else charge.session_id.hex(),
                },
                self.clock(),
            )
            self.ledger.confirm(charge.charge_id)
        if unrecorded:
            log.warning("logged %d charges left unfinished by a stopped server", len(unrecorded))
        return len(unrecorded)

    def longest_window(self) -> float:
        budget = self.node.config.budget
        return max([budget.window_seconds, *(p.window_seconds for p in self.node.peers())])

    def run_once(self) -> None:
        """Flush refusals and prune the ledger."""
        with self._busy:
            self._run_once()

    def _run_once(self) -> None:
        now = self.clock()
        self.refusals.flush(now)
        try:
            # Session ids stay while an epoch they could be replayed against is answered.
            answering = self.epochs.answering(now)
            began = min(epoch.descriptor.descriptor.created_at for epoch in answering)
            sessions_before = began - CLOCK_SKEW_SECONDS
        except HexpsiError:
            sessions_before = 0.0
        charges, sessions = self.ledger.prune(
            charges_before=now - self.longest_window(), sessions_before=sessions_before
        )
        if charges or sessions:
            log.info("pruned %d old charges and %d past session ids", charges, sessions)

    def renew(self) -> None:
        """Publish a fresh epoch if the served one ends soon (failures are logged)."""
        with self._busy:
            epoch = try_renewal(self.epochs.store, self.audit, now=self.clock())
        if epoch is not None:
            epoch.blocks.close()

    def interval(self) -> float:
        """Often enough to renew in time: a quarter of ``renew_before_hours``, at most
        ``INTERVAL_SECONDS``, at least a second."""
        renew_before = self.node.config.renew_before_hours * 3600.0
        if renew_before <= 0:
            return INTERVAL_SECONDS
        return min(INTERVAL_SECONDS, max(1.0, renew_before / 4))

    async def loop(self, interval: float | None = None) -> None:
        """Renew at once if due, then housekeeping every ``interval`` seconds until cancelled."""
        interval = self.interval() if interval is None else interval
        while True:
            await asyncio.to_thread(self.renew)
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.run_once)
            except HexpsiError as error:
                log.error("housekeeping failed: %s", error.explain())
