"""ISO 8601 durations and time intervals as operators type them: ``PT2H``, ``START/PT2H``.

A strike window is given on the command line (``hexpsi check --window``) in
one of ISO 8601's three interval forms, and a time buffer as a number of
seconds or a duration:

- ``START/END`` (``2026-12-05T06:00:00Z/2026-12-05T08:00:00Z``),
- ``START/DURATION`` (``2026-12-05T06:00:00Z/PT2H``),
- ``DURATION/END`` (``PT2H/2026-12-05T08:00:00Z``).

Times are RFC 3339 with a zone (``protocol.times.parse_moment``): a time
without one is refused rather than read in some machine's local zone.
Durations are ``PnW`` alone or ``PnDTnHnMnS`` with any of its parts (``P1D``,
``PT90M``, ``P1DT12H``, ``PT0.5S``); the last part given may carry a decimal
fraction (``PT1.5H``, ``PT2,5S``), as ISO 8601 allows. Years and months are
refused: their length depends on where they fall, and a window must be a fixed
number of seconds. The ISO forms with a repetition (``R5/...``) or an
abbreviated end (``.../08:00``) are refused too: a window is one interval,
written out.
"""

from __future__ import annotations

import math
import re

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.protocol.times import parse_moment

_NUMBER = r"[0-9]+(?:[.,][0-9]+)?"
_DURATION = re.compile(
    rf"P(?:(?P<W>{_NUMBER})W"
    rf"|(?:(?P<D>{_NUMBER})D)?(?:T(?:(?P<H>{_NUMBER})H)?(?:(?P<M>{_NUMBER})M)?"
    rf"(?:(?P<S>{_NUMBER})S)?)?)"
)
_UNIT_SECONDS = {"W": 7 * 86400, "D": 86400, "H": 3600, "M": 60, "S": 1}
DURATION_FORMS = "PnW or PnDTnHnMnS, e.g. PT2H, PT90M, P1DT12H, PT0.5S"
INTERVAL_FORMS = "START/END, START/DURATION or DURATION/END, e.g. 2026-12-05T06:00:00Z/PT2H"


def parse_duration(text: str, *, what: str = "duration") -> float:
    """An ISO 8601 duration (``PT2H``) as seconds; years and months are refused."""
    if not isinstance(text, str):
        raise InputError(f"{what} must be an ISO 8601 duration such as PT2H, got {text!r}")
    written = text.strip().upper()
    found = _DURATION.fullmatch(written)
    if found is None or written in ("P", "PT") or written.endswith("T"):
        date_part = written.split("T", 1)[0]
        if written.startswith("P") and ("Y" in date_part or "M" in date_part):
            raise InputError(
                f"{what} {text!r} counts years or months, whose length varies",
                hint="give it in weeks, days, hours, minutes or seconds, e.g. P30D or PT36H",
            )
        raise InputError(
            f"{what} {text!r} is not an ISO 8601 duration", hint=f"write it as {DURATION_FORMS}"
        )
    parts = [(unit, value) for unit, value in found.groupdict().items() if value is not None]
    if any(("," in value or "." in value) for _, value in parts[:-1]):
        raise InputError(
            f"{what} {text!r} has a fraction before its last part",
            hint="only the smallest unit given may have a fraction, e.g. PT1H30.5M",
        )
    seconds = math.fsum(
        float(value.replace(",", ".")) * _UNIT_SECONDS[unit] for unit, value in parts
    )
    if not math.isfinite(seconds):
        raise InputError(f"{what} {text!r} is too long")
    return seconds


def parse_seconds(text: str, *, what: str) -> float:
    """A number of seconds (``600``, ``90.5``) or an ISO 8601 duration (``PT10M``), >= 0."""
    written = text.strip() if isinstance(text, str) else text
    if isinstance(written, str) and written.upper().startswith("P"):
        return parse_duration(written, what=what)
    try:
        seconds = float(written)
    except (TypeError, ValueError):
        raise InputError(
            f"{what} must be a number of seconds or an ISO 8601 duration, got {text!r}",
            hint="e.g. 600 or PT10M",
        ) from None
    if not math.isfinite(seconds) or seconds < 0:
        raise InputError(f"{what} must be a finite number of seconds >= 0, got {text!r}")
    return seconds


def parse_interval(text: str, *, what: str = "interval") -> Interval:
    """An ISO 8601 time interval in one of its three forms, as an :class:`Interval`."""
    if not isinstance(text, str) or text.count("/") != 1:
        raise InputError(
            f"{what} {text!r} is not an ISO 8601 interval", hint=f"write it as {INTERVAL_FORMS}"
        )
    first, second = (part.strip() for part in text.split("/"))
    first_duration = first.upper().startswith("P")
    second_duration = second.upper().startswith("P")
    if first_duration and second_duration:
        raise InputError(
            f"{what} {text!r} gives two durations and no time", hint=f"write it as {INTERVAL_FORMS}"
        )
    if first_duration:
        end = parse_moment(second, what=f"{what} end")
        start = end - parse_duration(first, what=f"{what} duration")
    else:
        start = parse_moment(first, what=f"{what} start")
        end = (
            start + parse_duration(second, what=f"{what} duration")
            if second_duration
            else parse_moment(second, what=f"{what} end")
        )
    if end < start:
        raise InputError(
            f"{what} {text!r} ends before it starts: the times are out of order",
            hint="put the earlier time first",
        )
    return Interval(start, end)
