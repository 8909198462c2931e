"""Which epoch is served when, the hand-over, and when a renewal is due."""

from __future__ import annotations

from hexpsi.protocol.epoch.schedule import (
    HANDOVER_SECONDS,
    EpochTimes,
    gap,
    handed_over,
    renewal_due,
    serving,
    upcoming,
)

HOUR = 3600.0
FIRST = EpochTimes(1, 0.0, 24 * HOUR)
SECOND = EpochTimes(2, 20 * HOUR, 44 * HOUR)
SCHEDULED = EpochTimes(3, 30 * HOUR, 54 * HOUR)
TIMES = [FIRST, SECOND, SCHEDULED]


def test_the_newest_published_epoch_that_has_begun_is_served() -> None:
    assert serving(TIMES, latest=3, now=1 * HOUR) == FIRST
    assert serving(TIMES, latest=3, now=21 * HOUR) == SECOND
    assert serving(TIMES, latest=3, now=31 * HOUR) == SCHEDULED
    assert serving(TIMES, latest=None, now=31 * HOUR) is None
    assert serving([SCHEDULED], latest=3, now=1 * HOUR) is None


def test_nothing_above_the_last_published_epoch_is_served() -> None:
    """A stored epoch above ``current`` (a publication that did not finish) is not served."""
    assert serving(TIMES, latest=2, now=31 * HOUR) == SECOND


def test_a_later_publication_replaces_an_earlier_schedule() -> None:
    """Peers refuse lower sequences once they saw a higher one: the higher one wins."""
    early = EpochTimes(2, 30 * HOUR, 54 * HOUR)
    immediate = EpochTimes(3, 5 * HOUR, 29 * HOUR)
    times = [FIRST, early, immediate]
    assert serving(times, latest=3, now=6 * HOUR) == immediate
    assert serving(times, latest=3, now=31 * HOUR) == immediate


def test_the_replaced_epoch_is_answered_for_the_hand_over_only() -> None:
    start = SECOND.created_at
    assert handed_over(TIMES, SECOND, now=start + 1) == FIRST
    assert handed_over(TIMES, SECOND, now=start + HANDOVER_SECONDS) is None
    assert handed_over(TIMES, FIRST, now=1.0) is None


def test_an_expired_epoch_is_never_handed_over() -> None:
    late = EpochTimes(2, 24 * HOUR + 10, 48 * HOUR)
    assert handed_over([FIRST, late], late, now=24 * HOUR + 20) is None


def test_renewal_is_due_when_the_last_epoch_ends_soon() -> None:
    def due(now: float) -> bool:
        return renewal_due([FIRST], latest=1, now=now, renew_before_seconds=6 * HOUR)

    assert not due(17 * HOUR)
    assert due(18 * HOUR)
    assert due(30 * HOUR)


def test_renewal_waits_for_a_scheduled_epoch_and_can_be_off() -> None:
    assert not renewal_due(TIMES, latest=3, now=23 * HOUR, renew_before_seconds=6 * HOUR)
    assert not renewal_due([FIRST], latest=1, now=23 * HOUR, renew_before_seconds=0)
    assert not renewal_due([], latest=None, now=0.0, renew_before_seconds=HOUR)


def test_a_gap_before_a_scheduled_epoch_is_found() -> None:
    late = EpochTimes(2, 30 * HOUR, 54 * HOUR)
    assert gap([FIRST, late], latest=2, now=1 * HOUR) == (24 * HOUR, 30 * HOUR)
    assert gap(TIMES, latest=3, now=21 * HOUR) is None
    assert upcoming(TIMES, latest=3, now=21 * HOUR) == SCHEDULED
    assert upcoming(TIMES, latest=3, now=31 * HOUR) is None
