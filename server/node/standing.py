"""Where each peer's budget stands now: one computation for ``hexpsi status`` and the metrics."""

from __future__ import annotations

from dataclasses import dataclass

from hexpsi.server.node.directory import Node
from hexpsi.server.node.ledger import NODE, Ledger, Operation


@dataclass(frozen=True, slots=True)
class Standing:
    """One budget over its rolling window: the limit, what was spent, what is left."""

    limit: float
    spent: float
    window_hours: float

    @property
    def left(self) -> float:
        return max(0.0, self.limit - self.spent)


@dataclass(frozen=True, slots=True)
class PeerStanding:
    """A peer's area budget and, where it has one, its mutual-check allowance."""

    name: str
    area: Standing
    mutual_checks: Standing | None
    volume: Standing | None = None
    """Its space-time budget (km²·h) for timed elements."""


def node_standing(node: Node, ledger: Ledger, *, now: float) -> Standing:
    """The node-wide area budget, shared by all peers."""
    budget = node.config.budget
    spent = ledger.spent(NODE, now=now, window_seconds=budget.window_seconds)
    return Standing(budget.node_km2_per_window, spent, budget.window_hours)


def node_volume_standing(node: Node, ledger: Ledger, *, now: float) -> Standing:
    """The node-wide space-time budget, shared by all peers."""
    budget = node.config.budget
    spent = ledger.spent_volume(NODE, now=now, window_seconds=budget.window_seconds)
    return Standing(budget.node_km2h_per_window, spent, budget.window_hours)


def peer_standings(node: Node, ledger: Ledger, *, now: float) -> list[PeerStanding]:
    """Every pinned peer's standing, by name."""
    standings = []
    for peer in node.peers():
        allowances = node.allowances(peer, Operation.MUTUAL)
        area = allowances.peer
        spent = ledger.spent(peer.name, now=now, window_seconds=area.window_seconds)
        mutual = None
        calls = allowances.mutual_calls
        if calls is not None:
            made = ledger.calls(
                peer.name, Operation.MUTUAL, now=now, window_seconds=calls.window_seconds
            )
            mutual = Standing(calls.limit, made, calls.window_seconds / 3600.0)
        volume_spent = ledger.spent_volume(peer.name, now=now, window_seconds=peer.window_seconds)
        standings.append(
            PeerStanding(
                peer.name,
                Standing(area.limit, spent, peer.window_hours),
                mutual,
                Standing(peer.budget_km2h, volume_spent, peer.window_hours),
            )
        )
    return standings
