"""What a check will send, before anything is blinded: group sizes, padding, area, parts.

A proposer pads each resolution group of its query to a size bucket, and a
responder accepts at most ``max_query_tokens`` padded elements per check (and
one batched proof covers at most ``MAX_BATCH`` elements). :func:`plan_query`
says what a set of tokens costs; :func:`split_tokens` cuts a zone too large
for one check into parts that each fit, so one answer can come from several
checks, each with its own receipt. Splitting reveals nothing the sizes would
not: each part is an ordinary padded query.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from hexpsi.protocol.budget import query_area_km2, query_volume_km2h
from hexpsi.protocol.crypto.oprf import MAX_BATCH
from hexpsi.protocol.errors import LocalProtocolError
from hexpsi.protocol.padding import size_bucket

QUERY_BUCKET_MINIMUM = 8
"""Every resolution group is padded to at least this many elements."""


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """One resolution group: its real tokens and what it is padded to."""

    resolution: int
    tokens: int
    padded: int


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """A query's standing groups, in ascending resolution, and its timed group sizes."""

    groups: tuple[GroupPlan, ...]
    timed: Mapping[tuple[int, int], int] = field(default_factory=dict)
    """Padded elements per (resolution, time level) (``protocol.check.pieces``)."""
    timed_tokens: int = 0

    @property
    def tokens(self) -> int:
        return sum(group.tokens for group in self.groups) + self.timed_tokens

    @property
    def padded(self) -> int:
        return sum(group.padded for group in self.groups) + sum(self.timed.values())

    def sizes(self) -> dict[int, int]:
        """Padded standing elements per resolution: what the responder sees and charges."""
        return {group.resolution: group.padded for group in self.groups}

    def area_km2(self, res: int) -> float:
        """What the responder will charge for it (padding included)."""
        return query_area_km2(self.sizes(), res)

    def volume_km2h(self, res: int, level_hours: Callable[[int], float]) -> float:
        """The space-time volume it will be charged for its timed groups."""
        return query_volume_km2h(self.timed, res, level_hours)


def plan_query(
    tokens: Mapping[int, Collection[int]],
    timed: Mapping[tuple[int, int], int] | None = None,
    timed_tokens: int = 0,
) -> QueryPlan:
    """The padded groups of a query holding ``tokens`` (empty groups dropped), with the
    padded sizes of its timed groups and how many real timed tokens they hold."""
    return QueryPlan(
        tuple(
            GroupPlan(r, len(tokens[r]), size_bucket(len(tokens[r]), minimum=QUERY_BUCKET_MINIMUM))
            for r in sorted(tokens)
            if tokens[r]
        ),
        dict(timed or {}),
        timed_tokens,
    )


def check_fits(plan: QueryPlan, *, max_query_tokens: int, node: str) -> None:
    """Refuse a query the responder would not take in one check."""
    sizes = [(f"resolution {g.resolution}", g.padded) for g in plan.groups] + [
        (f"resolution {r}, time level {level}", size) for (r, level), size in plan.timed.items()
    ]
    for where, size in sizes:
        if size > MAX_BATCH:
            raise LocalProtocolError(
                f"the strike zone needs {size} tokens at {where}; one proof covers at most "
                f"{MAX_BATCH}, so split the zone into smaller checks"
            )
    if plan.padded > max_query_tokens:
        raise LocalProtocolError(
            f"the strike zone needs {plan.padded} padded tokens but {node!r} accepts at "
            f"most {max_query_tokens} per check; split the zone into smaller checks"
        )


def split_tokens(
    tokens: Mapping[int, Collection[int]], *, max_query_tokens: int, max_group: int = MAX_BATCH
) -> list[dict[int, list[int]]]:
    """``tokens`` in parts whose padded queries each fit one check, in a fixed order.

    Greedy over tokens sorted by resolution then cell: a token joins the current
    part while the part's padded total (and its group's padded size, at most
    ``max_group``) stays within the limits, else it starts the next part. Padding grows with the
    count, so a part never pays for another's tokens.
    """
    limit_group = min(MAX_BATCH, max_group, max_query_tokens)
    if max_query_tokens < QUERY_BUCKET_MINIMUM:
        raise LocalProtocolError(
            f"a responder limit of {max_query_tokens} elements fits no padded query"
        )
    parts: list[dict[int, list[int]]] = []
    current: dict[int, list[int]] = {}
    for resolution in sorted(tokens):
        for token in sorted(tokens[resolution]):
            trial = {r: len(cells) for r, cells in current.items()}
            trial[resolution] = trial.get(resolution, 0) + 1
            padded = {r: size_bucket(n, minimum=QUERY_BUCKET_MINIMUM) for r, n in trial.items()}
            if current and (
                sum(padded.values()) > max_query_tokens or padded[resolution] > limit_group
            ):
                parts.append(current)
                current = {}
            current.setdefault(resolution, []).append(token)
    if current:
        parts.append(current)
    return parts
