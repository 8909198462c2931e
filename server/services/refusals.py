"""Refused calls, counted per peer and reason and written to the audit log in batches.

A refusal must leave a trace (an operator wants to see a peer hammering at a
spent budget), but one audit entry per refused call would let a flood grow the
log without bound. So refusals are counted in memory and each peer's counts
become one signed ``refusals`` entry per interval: the log grows with peers ×
time, never with the number of calls.
"""

from __future__ import annotations

import threading
from collections import Counter

from hexpsi.protocol.errors import BudgetExhausted, HexpsiError
from hexpsi.protocol.times import rfc3339
from hexpsi.server.node.auditlog import AuditLog

INTERVAL_SECONDS = 600.0
"""How often counted refusals become audit entries (and at shutdown)."""
UNKNOWN_CALLER = "(unpinned)"
"""The name refusals of callers that are not pinned peers are counted under."""
AUDIT_KIND = "refusals"


def reason_of(error: HexpsiError) -> str:
    """A short, bounded name for why a call was refused (never the message itself)."""
    if isinstance(error, BudgetExhausted):
        return "budget"
    return error.status.value.lower()


class RefusalTally:
    """Counts per (peer, reason) since the last flush; thread-safe."""

    def __init__(self, audit: AuditLog, *, started: float) -> None:
        self.audit = audit
        self._since = started
        self._counts: dict[str, Counter[str]] = {}
        self._lock = threading.Lock()

    def note(self, peer: str | None, error: HexpsiError) -> None:
        """Count one refused call of ``peer`` (None: a caller that is not pinned)."""
        with self._lock:
            self._counts.setdefault(peer or UNKNOWN_CALLER, Counter())[reason_of(error)] += 1

    def flush(self, now: float) -> int:
        """One audit entry per peer with refusals since the last flush; returns how many."""
        with self._lock:
            counts, self._counts = self._counts, {}
            since, self._since = self._since, now
        for peer, reasons in sorted(counts.items()):
            self.audit.append(
                AUDIT_KIND,
                peer,
                {
                    "from": rfc3339(since),
                    "until": rfc3339(now),
                    "refused": sum(reasons.values()),
                    "reasons": dict(sorted(reasons.items())),
                },
                now,
            )
        return len(counts)
