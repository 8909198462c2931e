"""Which of a node's epochs to serve at a given time, and when to renew: pure decisions.

A node publishes epochs in sequence order. Each is valid from its ``created_at``
to its ``valid_until``; one published with a later ``created_at`` is scheduled
and waits. The epoch served at a moment is the newest published one that has
begun. Peers refuse a sequence lower than one they accepted, so a later
publication always replaces earlier scheduled ones, never the other way round.

When an epoch replaces another, the one it replaced is still answered for a
short hand-over (checks in flight fetched its descriptor a moment before the
switch), never past its own expiry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

HANDOVER_SECONDS = 300.0
"""How long the replaced epoch is still answered after its successor begins: long
enough for a check that fetched the old descriptor to finish."""


@dataclass(frozen=True, slots=True)
class EpochTimes:
    """When one stored epoch is valid."""

    sequence: int
    created_at: float
    valid_until: float

    def begun(self, now: float) -> bool:
        return self.created_at <= now

    def expired(self, now: float) -> bool:
        return now > self.valid_until


def serving(times: Sequence[EpochTimes], *, latest: int | None, now: float) -> EpochTimes | None:
    """The newest epoch up to ``latest`` (the last published) that has begun at ``now``."""
    if latest is None:
        return None
    begun = [t for t in times if t.sequence <= latest and t.begun(now)]
    return max(begun, key=lambda t: t.sequence, default=None)


def handed_over(
    times: Sequence[EpochTimes],
    current: EpochTimes,
    *,
    now: float,
    handover_seconds: float = HANDOVER_SECONDS,
) -> EpochTimes | None:
    """The epoch ``current`` replaced, while its hand-over lasts and it has not expired."""
    before = [t for t in times if t.sequence < current.sequence and t.begun(current.created_at)]
    replaced = max(before, key=lambda t: t.sequence, default=None)
    if replaced is None or replaced.expired(now):
        return None
    if now >= current.created_at + handover_seconds:
        return None
    return replaced


def renewal_due(
    times: Sequence[EpochTimes], *, latest: int | None, now: float, renew_before_seconds: float
) -> bool:
    """Whether to publish a fresh epoch now: the last published one has begun and
    ends within ``renew_before_seconds`` (0 turns renewal off).

    A scheduled epoch that has not begun is the operator's plan: nothing is
    renewed until it begins (:func:`gap` says if peers will be refused meanwhile).
    """
    if latest is None or renew_before_seconds <= 0:
        return False
    last = next((t for t in times if t.sequence == latest), None)
    if last is None or not last.begun(now):
        return False
    return last.valid_until - now <= renew_before_seconds


def gap(
    times: Sequence[EpochTimes], *, latest: int | None, now: float
) -> tuple[float, float] | None:
    """``(ends, begins)`` when the served epoch expires before the next scheduled one begins."""
    following = upcoming(times, latest=latest, now=now)
    if following is None:
        return None
    current = serving(times, latest=latest, now=now)
    ends = current.valid_until if current is not None else now
    return (ends, following.created_at) if ends < following.created_at else None


def upcoming(times: Sequence[EpochTimes], *, latest: int | None, now: float) -> EpochTimes | None:
    """The next scheduled epoch to begin after ``now``, if any."""
    current = serving(times, latest=latest, now=now)
    floor = current.sequence if current is not None else 0
    waiting = [
        t for t in times if latest is not None and floor < t.sequence <= latest and not t.begun(now)
    ]
    return min(waiting, key=lambda t: t.created_at, default=None)
