"""What a running server does now and then: log refusals, prune the ledger, finish records.

At start, charges that a stopped process left without their record (between
charge and audit entry) get an audit entry, so no charged area goes unlogged.
Every interval, counted refusals become audit entries, and the ledger drops
charges no budget window can count any more and session ids of past epochs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from hexpsi.protocol.errors import HexpsiError
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS
from hexpsi.server.node.auditlog import AuditLog
from hexpsi.server.node.directory import Node
from hexpsi.server.node.ledger import Ledger
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
        now = self.clock()
        self.refusals.flush(now)
        try:
            epoch = self.epochs.get()
            sessions_before = epoch.descriptor.descriptor.created_at - CLOCK_SKEW_SECONDS
        except HexpsiError:
            sessions_before = 0.0
        charges, sessions = self.ledger.prune(
            charges_before=now - self.longest_window(), sessions_before=sessions_before
        )
        if charges or sessions:
            log.info("pruned %d old charges and %d past session ids", charges, sessions)

    async def loop(self, interval: float = INTERVAL_SECONDS) -> None:
        """``run_once`` every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.run_once)
            except HexpsiError as error:
                log.error("housekeeping failed: %s", error.explain())
