"""What every service of one running server shares, built once by the server."""

from __future__ import annotations

from dataclasses import dataclass, field

from hexpsi.server.node.auditlog import AuditLog
from hexpsi.server.node.ledger import Ledger
from hexpsi.server.services.current_epoch import EpochWatcher
from hexpsi.server.services.gate import PeerGate
from hexpsi.server.services.metrics import ServerMetrics
from hexpsi.server.services.refusals import RefusalTally
from hexpsi.server.workers import WorkerPool


@dataclass(frozen=True, slots=True)
class Shared:
    """One ledger, audit log, gate, epoch view, refusal tally, worker pool and metrics per server.

    Sharing them is what makes a peer's budget, its open-call limit and the
    current epoch the same whichever service it calls.
    """

    ledger: Ledger
    audit: AuditLog
    gate: PeerGate
    epochs: EpochWatcher
    pool: WorkerPool
    refusals: RefusalTally
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
