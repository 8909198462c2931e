"""Times as people read them: RFC 3339 in UTC, and "in 3 h 12 min".

Inside hexpsi a time is a float of Unix seconds (passed in, never read from a
clock here). Anything a person reads says it in UTC with an explicit ``Z`` and,
where it is about waiting, how long from now: never a raw Unix timestamp.
"""

from __future__ import annotations

import datetime
import math

from hexpsi.protocol.errors import InputError

_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def rfc3339(moment: float) -> str:
    """``2026-12-05T05:14:53Z``: the moment in UTC, to the second."""
    if not isinstance(moment, int | float) or not math.isfinite(moment):
        raise InputError(f"{moment!r} is not a moment in time")
    when = datetime.datetime.fromtimestamp(math.floor(moment), tz=datetime.UTC)
    return when.isoformat().replace("+00:00", "Z")


def duration_words(seconds: float) -> str:
    """``3 h 12 min``, ``20 h 0 min``, ``42 s``: a duration in its two largest units.

    Seconds are rounded up; days only from two days on, so a day-long budget
    window reads as ``24 h 0 min``.
    """
    left = max(0, math.ceil(seconds))
    units = _UNITS if left >= 2 * 86400 else _UNITS[1:]
    for index, (unit, size) in enumerate(units):
        if left >= size or unit == "s":
            count, rest = divmod(left, size)
            if unit == "s":
                return f"{count} s"
            smaller, smaller_size = units[index + 1]
            return f"{count} {unit} {rest // smaller_size} {smaller}"
    raise AssertionError("unreachable: the last unit is the second")


def moment_from_now(moment: float, now: float) -> str:
    """``2026-12-05T09:26:53Z (in 3 h 12 min)``, or ``(… ago)`` for a past moment."""
    if moment >= now:
        return f"{rfc3339(moment)} (in {duration_words(moment - now)})"
    return f"{rfc3339(moment)} ({duration_words(now - moment)} ago)"


def parse_moment(text: str, *, what: str = "time") -> float:
    """An RFC 3339 / ISO 8601 time with its zone (``2026-12-05T06:00:00Z``) as Unix seconds.

    A time without a zone is refused rather than read in the machine's local zone.
    """
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"{what} {text!r} is not a time like 2026-12-05T06:00:00Z",
            hint="write it as RFC 3339: date, T, time and a zone (Z for UTC)",
        ) from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise InputError(
            f"{what} {text!r} has no time zone",
            hint="add Z for UTC (or an offset such as +02:00)",
        )
    return when.timestamp()
