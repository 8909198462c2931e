"""A closed time interval in Unix seconds: when a position holds, or a strike may fall."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.times import rfc3339


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """``[start, end]`` in Unix seconds; an instant has ``start == end``."""

    start: float
    end: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end)):
            raise InputError("a time interval needs finite start and end times")
        if self.end < self.start:
            raise InputError(
                f"a time interval ends ({rfc3339(self.end)}) before it starts "
                f"({rfc3339(self.start)})",
                hint="put the earlier time first",
            )

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def widened(self, seconds: float) -> Interval:
        """The interval grown by ``seconds`` on each side (a time buffer)."""
        if not math.isfinite(seconds) or seconds < 0:
            raise InputError(f"a time buffer must be a number of seconds >= 0, got {seconds}")
        return Interval(self.start - seconds, self.end + seconds)

    def overlaps(self, other: Interval) -> bool:
        return self.start <= other.end and other.start <= self.end

    def __str__(self) -> str:
        return f"{rfc3339(self.start)}/{rfc3339(self.end)}"
