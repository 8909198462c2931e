"""Prometheus metrics of one running server: what its peers did, and where its budgets stand.

Names follow Prometheus' practice: a ``hexpsi_`` prefix, the unit in the name
(seconds, bytes, and km², the unit every budget is configured and charged in),
counters ending in ``_total``. Labels are only ``peer`` (a pinned peer's name,
or ``(unpinned)`` for a caller that is none), ``outcome`` and ``operation``,
each from a small fixed set: never a cell, token, session or receipt id, so
the number of series is bounded by peers × outcomes.

Counters, moved by the servicers where they finish a call or note a refusal:

- ``hexpsi_checks_total{peer,outcome}``: Evaluate calls;
- ``hexpsi_area_charged_km2_total{peer,operation}``: area charged to a peer's
  budget (``check``, or ``mutual`` for the set a mutual check made it pay for);
- ``hexpsi_snapshot_downloads_total{peer,outcome}`` and
  ``hexpsi_snapshot_sent_bytes_total{peer}``: GetSnapshot calls and the block bytes
  streamed (a resumed download is a call of its own);
- ``hexpsi_mutual_checks_total{peer,outcome}``: mutual checks answered.

``outcome`` is ``ok``; a refusal's reason as the refusal tally names it
(``budget``, ``permission_denied``, ``failed_precondition``, ...: the servicers
pass :func:`hexpsi.server.services.refusals.reason_of` of the error), also
``deadline_exceeded`` for a peer that stopped reading; or ``cancelled`` when the
peer went away first.

Gauges, computed at each scrape by :class:`StateCollector` from the ledger, the
peers' budgets and the current epoch (the same sums the ledger refuses by):

- ``hexpsi_budget_limit_km2{peer}``, ``hexpsi_budget_left_km2{peer}``: each
  peer's area budget and what its rolling window leaves of it;
- ``hexpsi_node_budget_limit_km2``, ``hexpsi_node_budget_left_km2``: the same for
  the node-wide budget all peers share;
- ``hexpsi_mutual_checks_left{peer}``: mutual checks a peer may still make this window;
- ``hexpsi_epoch_sequence``, ``hexpsi_epoch_age_seconds``,
  ``hexpsi_epoch_expires_in_seconds`` (negative once expired): the epoch served.

Each server has its own registry (never prometheus_client's global one), so
several servers in one process (the tests, the demo) keep their counts apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hexpsi.protocol.errors import HexpsiError
from hexpsi.server.node.directory import Node
from hexpsi.server.node.ledger import Ledger, Operation
from hexpsi.server.node.standing import node_standing, node_volume_standing, peer_standings
from hexpsi.server.services.current_epoch import EpochWatcher
from hexpsi.server.services.refusals import UNKNOWN_CALLER

log = logging.getLogger(__name__)

OK = "ok"
CANCELLED = "cancelled"
"""The peer cancelled or hung up before the call was done."""
STALLED = "deadline_exceeded"
"""The peer stopped reading; named like a refusal for a deadline (``reason_of``)."""
PEER = "peer"
OUTCOME = "outcome"


class ServerMetrics:
    """The counters of one server, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._checks = Counter(
            "hexpsi_checks",
            "Checks (Evaluate calls) answered or refused, by peer and outcome.",
            [PEER, OUTCOME],
            registry=self.registry,
        )
        self._charged = Counter(
            "hexpsi_area_charged_km2",
            "Area charged to peers' budgets, in km², by peer and operation.",
            [PEER, "operation"],
            registry=self.registry,
        )
        self._downloads = Counter(
            "hexpsi_snapshot_downloads",
            "Snapshot downloads (GetSnapshot calls), by peer and outcome.",
            [PEER, OUTCOME],
            registry=self.registry,
        )
        self._sent = Counter(
            "hexpsi_snapshot_sent_bytes",
            "Snapshot block bytes streamed to peers.",
            [PEER],
            registry=self.registry,
        )
        self._mutual = Counter(
            "hexpsi_mutual_checks",
            "Mutual checks answered or refused, by peer and outcome.",
            [PEER, OUTCOME],
            registry=self.registry,
        )

    def check(self, peer: str | None, outcome: str) -> None:
        self._checks.labels(peer or UNKNOWN_CALLER, outcome).inc()

    def charged(self, peer: str, operation: Operation, area_km2: float) -> None:
        self._charged.labels(peer, operation.value).inc(area_km2)

    def snapshot_download(self, peer: str | None, outcome: str) -> None:
        self._downloads.labels(peer or UNKNOWN_CALLER, outcome).inc()

    def snapshot_sent(self, peer: str, size: int) -> None:
        self._sent.labels(peer).inc(size)

    def mutual_check(self, peer: str | None, outcome: str) -> None:
        self._mutual.labels(peer or UNKNOWN_CALLER, outcome).inc()


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


class StateCollector(Collector):
    """The gauges, read from the node's state when Prometheus scrapes.

    A part that cannot be read (no epoch yet, a damaged peer file) is left out of
    that scrape and logged; the rest is still served.
    """

    def __init__(
        self, node: Node, ledger: Ledger, epochs: EpochWatcher, clock: Callable[[], float]
    ) -> None:
        self.node = node
        self.ledger = ledger
        self.epochs = epochs
        self.clock = clock

    def describe(self) -> Iterator[Metric]:
        yield from self._budget_families()
        yield from self._epoch_families()

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        try:
            budgets = self._budgets(now)
        except HexpsiError as error:
            log.warning("metrics: budgets left out of this scrape: %s", error.explain())
        else:
            yield from budgets
        try:
            epoch = self._epoch(now)
        except HexpsiError as error:
            log.info("metrics: no epoch gauges: %s", error.explain())
        else:
            yield from epoch

    @staticmethod
    def _budget_families() -> tuple[GaugeMetricFamily, ...]:
        return (
            _gauge("hexpsi_budget_limit_km2", "A peer's area budget per window, in km².", [PEER]),
            _gauge(
                "hexpsi_budget_left_km2",
                "What a peer's area budget has left over its rolling window, in km².",
                [PEER],
            ),
            _gauge(
                "hexpsi_mutual_checks_left",
                "Mutual checks a peer may still make over its rolling window.",
                [PEER],
            ),
            _gauge("hexpsi_node_budget_limit_km2", "The node-wide area budget per window, in km²."),
            _gauge(
                "hexpsi_node_budget_left_km2",
                "What the node-wide area budget has left over its rolling window, in km².",
            ),
            _gauge(
                "hexpsi_budget_left_km2h",
                "What a peer's space-time budget has left over its rolling window, in km²·h.",
                [PEER],
            ),
            _gauge(
                "hexpsi_node_budget_left_km2h",
                "What the node-wide space-time budget has left over its window, in km²·h.",
            ),
        )

    @staticmethod
    def _epoch_families() -> tuple[GaugeMetricFamily, ...]:
        return (
            _gauge("hexpsi_epoch_sequence", "Sequence number of the epoch served."),
            _gauge("hexpsi_epoch_age_seconds", "Seconds since the epoch served was created."),
            _gauge(
                "hexpsi_epoch_expires_in_seconds",
                "Seconds until the epoch served expires (negative once it has).",
            ),
        )

    def _budgets(self, now: float) -> tuple[GaugeMetricFamily, ...]:
        families = self._budget_families()
        limit, left, mutual_left, node_limit, node_left, volume_left, node_volume_left = families
        node = node_standing(self.node, self.ledger, now=now)
        node_limit.add_metric([], node.limit)
        node_left.add_metric([], node.left)
        node_volume_left.add_metric([], node_volume_standing(self.node, self.ledger, now=now).left)
        for peer in peer_standings(self.node, self.ledger, now=now):
            limit.add_metric([peer.name], peer.area.limit)
            left.add_metric([peer.name], peer.area.left)
            if peer.mutual_checks is not None:
                mutual_left.add_metric([peer.name], peer.mutual_checks.left)
            if peer.volume is not None:
                volume_left.add_metric([peer.name], peer.volume.left)
        return families

    def _epoch(self, now: float) -> tuple[GaugeMetricFamily, ...]:
        families = self._epoch_families()
        sequence, age, expires_in = families
        descriptor = self.epochs.get().descriptor.descriptor
        sequence.add_metric([], descriptor.sequence)
        age.add_metric([], now - descriptor.created_at)
        expires_in.add_metric([], descriptor.valid_until - now)
        return families
