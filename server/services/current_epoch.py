"""The epoch a node serves right now: a new ``positions``, a renewal or a scheduled start.

Shared by every service of a running server, so the check and the mutual check
always answer from the same epoch. When an epoch replaces another, requests
naming the replaced one are still answered for the short hand-over
(``protocol.epoch.schedule``), so a check that fetched the descriptor just
before the switch still completes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NoReturn

from hexpsi.protocol.epoch import schedule
from hexpsi.protocol.errors import FailedPrecondition, HexpsiError
from hexpsi.protocol.times import rfc3339
from hexpsi.server.node.epochs import EpochStore, ServedEpoch

log = logging.getLogger(__name__)


class EpochWatcher:
    """The served epoch (and the one it replaced, during the hand-over), loaded once each."""

    def __init__(self, store: EpochStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._loaded: dict[int, ServedEpoch] = {}
        self._serving: int | None = None

    def get(self, now: float | None = None) -> ServedEpoch:
        """The epoch to answer from at ``now`` (default: the clock), or a refusal."""
        now = self.clock() if now is None else now
        epoch = self._serving_epoch(now)
        if epoch is None:
            upcoming = schedule.upcoming(self.store.schedule(), latest=self._latest(), now=now)
            if upcoming is not None:
                raise FailedPrecondition(
                    f"node {self.store.node.name!r} serves no epoch before "
                    f"{rfc3339(upcoming.created_at)}, when its first scheduled one begins",
                )
            raise FailedPrecondition(
                f"node {self.store.node.name!r} has no protected positions yet "
                "(its operator runs: hexpsi positions DIR POSITIONS)",
            )
        return epoch

    def answering(self, now: float | None = None) -> tuple[ServedEpoch, ...]:
        """The served epoch, then the one it replaced while the hand-over lasts."""
        now = self.clock() if now is None else now
        current = self.get(now)
        previous = [self._load(t.sequence) for t in self._handed_over(current.sequence, now)]
        return (current, *(epoch for epoch in previous if epoch is not None))

    def _handed_over(self, sequence: int, now: float) -> list[schedule.EpochTimes]:
        times = self.store.schedule()
        served = next((t for t in times if t.sequence == sequence), None)
        replaced = None if served is None else schedule.handed_over(times, served, now=now)
        return [] if replaced is None else [replaced]

    def for_id(self, epoch_id: bytes, now: float | None = None) -> ServedEpoch:
        """The answering epoch a request names by id, else the served one (which the
        request then fails to match, with the error that says to fetch it again)."""
        epochs = self.answering(now)
        return next((e for e in epochs if e.descriptor.descriptor.epoch_id == epoch_id), epochs[0])

    def for_digest(self, digest: bytes, now: float | None = None) -> ServedEpoch:
        """The answering epoch a request names by descriptor digest, else the served one."""
        epochs = self.answering(now)
        return next((e for e in epochs if e.descriptor.digest == digest), epochs[0])

    def _latest(self) -> int | None:
        try:
            return self.store.current_sequence()
        except HexpsiError:
            return None

    def _serving_epoch(self, now: float) -> ServedEpoch | None:
        try:
            times = self.store.serving_times(now)
            sequence = times.sequence if times is not None else self.store.current_sequence()
            if sequence is None or (times is None and self._scheduled_only(sequence)):
                return None
        except HexpsiError as error:
            self._fail(error)
        epoch = self._load(sequence)
        if epoch is None:
            return None
        if self._serving is not None and self._serving != sequence:
            log.info("serving epoch %d (was %d)", sequence, self._serving)
        self._serving = sequence
        # Dropped, not closed: a download in flight keeps reading its epoch's blocks.
        keep = {sequence, *(t.sequence for t in self._handed_over(sequence, now))}
        for stale in [s for s in self._loaded if s not in keep]:
            del self._loaded[stale]
        return epoch

    def _scheduled_only(self, latest: int) -> bool:
        return any(t.sequence == latest for t in self.store.schedule())

    def _load(self, sequence: int) -> ServedEpoch | None:
        """A stored epoch; a damaged one is this node's fault, not the caller's.

        The reason goes to the operator's log; the peer learns only that the node
        cannot serve right now (never a path, never a status that blames the peer).
        """
        if sequence in self._loaded:
            return self._loaded[sequence]
        try:
            epoch = self.store.load(sequence)
        except (HexpsiError, OSError) as error:
            self._fail(error)
        self._loaded[sequence] = epoch
        return epoch

    def _fail(self, error: HexpsiError | OSError) -> NoReturn:
        reason = error.explain() if isinstance(error, HexpsiError) else str(error)
        log.error("cannot load the current epoch: %s (run hexpsi positions again)", reason)
        raise FailedPrecondition(
            f"node {self.store.node.name!r} cannot serve its current epoch right now "
            "(its operator must set its positions again)",
        ) from None
