"""When a feature holds: the time members of a position or a strike, read and checked.

A feature without time is *standing* (``Feature.when is None``): a position
valid for the whole epoch, a strike at any time in it. Otherwise:

- A protected position is *timed* by ``valid_from`` and ``valid_until`` (RFC
  3339, both or neither): the one interval holds for every shape.
- A LineString with ``times`` (one RFC 3339 time per vertex, never
  decreasing) is a unit *moving along a route*: leg ``i`` is the two-point
  ``Path`` from vertex ``i`` to ``i + 1`` with the feature's buffer, held over
  ``[times[i], times[i + 1]]``. The unit is taken to move along the
  great-circle arc between vertices, as every hexpsi line is drawn.
- An OGC Moving Features ``MovingPoint`` is read the same way (``moving``).
- A strike's *window* is ``not_before`` and ``not_after`` (both or neither),
  else the command's ``--window``, else none (the whole epoch).
- ``time_buffer_s`` (seconds >= 0), else the command's ``--time-buffer``,
  widens every interval of a timed feature on both sides; standing features
  have nothing to widen.

Positions and strikes name their times differently on purpose, so a strike
file handed to ``positions`` (or the other way round) is refused rather than
read with its times dropped: positions refuse ``not_before``/``not_after``,
strikes refuse ``valid_from``/``valid_until``, ``times`` and moving points.
``encode`` only shows cells, so it reads either kind. One feature gives its
time one way only. GeoJSON property names are matched exactly, so a
``Valid_From`` is refused, naming the spelling that is read, rather than
ignored.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.shapes import LatLng, Path
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.protocol.times import parse_moment

VALID_FROM = "valid_from"
VALID_UNTIL = "valid_until"
NOT_BEFORE = "not_before"
NOT_AFTER = "not_after"
TIMES = "times"
TIME_BUFFER = "time_buffer_s"
TIME_MEMBERS = (VALID_FROM, VALID_UNTIL, NOT_BEFORE, NOT_AFTER, TIMES, TIME_BUFFER)
"""Every attribute that says when (read by name, exactly in GeoJSON, in any case in CSV)."""
TEMPORAL_GEOMETRY = "temporalGeometry"
EXAMPLE_TIME = "2026-12-05T06:00:00Z"

Member = Callable[[str], str]
"""How a message names an attribute: ``properties.valid_from``, ``column 'Valid_From'``."""


class Role(enum.StrEnum):
    """What a file is read as: which time members it may carry."""

    POSITIONS = "positions"
    STRIKES = "strikes"
    ENCODE = "encode"
    """Offline, only to show cells: either kind of time is read."""


class TimeKind(enum.StrEnum):
    """How a feature gave its time, for the line saying what was read."""

    STANDING = "standing"
    TIMED = "timed"
    """One interval for all its shapes: valid_from/valid_until or a strike window."""
    ROUTE = "route with times"
    MOVING_POINT = "moving point"


@dataclass(frozen=True, slots=True)
class TimeRules:
    """The command's side of reading time: the role, the default buffer and window.

    ``buffer_s`` widens timed features that give no ``time_buffer_s``;
    ``window`` is the strike window of strike features that give none.
    """

    role: Role = Role.ENCODE
    buffer_s: float | None = None
    window: Interval | None = None

    def __post_init__(self) -> None:
        if self.buffer_s is not None:
            check_buffer_seconds(self.buffer_s, "--time-buffer")
        if self.window is not None and self.role is not Role.STRIKES:
            raise InputError(
                f"--window is a strike's window, but this reads {self.role.value}",
                hint="give --window to hexpsi check",
            )


def check_buffer_seconds(seconds: object, member: str, where: str = "") -> float:
    """A time buffer: a finite number of seconds >= 0."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InputError(f"{member} must be a number of seconds, got {seconds!r}", where=where)
    if not math.isfinite(seconds) or seconds < 0:
        raise InputError(
            f"{member} must be a finite number of seconds >= 0, got {seconds}", where=where
        )
    return float(seconds)


def _absent(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def given_members(values: Mapping[str, object]) -> frozenset[str]:
    """The time members ``values`` fills (``None`` and empty text are not given)."""
    return frozenset(name for name in TIME_MEMBERS if not _absent(values.get(name)))


# --- which members a role reads --------------------------------------------------------


_WAYS = (
    ("valid_from/valid_until", (VALID_FROM, VALID_UNTIL)),
    ("times", (TIMES,)),
    (TEMPORAL_GEOMETRY, (TEMPORAL_GEOMETRY,)),
    ("not_before/not_after", (NOT_BEFORE, NOT_AFTER)),
)
_POSITION_ONLY = (VALID_FROM, VALID_UNTIL, TIMES, TEMPORAL_GEOMETRY)
_STRIKE_ONLY = (NOT_BEFORE, NOT_AFTER)


def check_time_members(
    given: Collection[str], rules: TimeRules, *, member: Member, where: str
) -> None:
    """Refuse time members this role does not read, and a feature giving its time twice.

    ``given`` holds the filled time members, and ``temporalGeometry`` when the
    feature is a moving point.
    """

    def shown(name: str) -> str:
        return name if name == TEMPORAL_GEOMETRY else member(name)

    wrong: tuple[str, ...] = ()
    if rules.role is Role.STRIKES:
        wrong = _POSITION_ONLY
    elif rules.role is Role.POSITIONS:
        wrong = _STRIKE_ONLY
    for name in wrong:
        if name not in given:
            continue
        if rules.role is Role.STRIKES:
            raise InputError(
                f"{shown(name)} says when a protected position holds; a strike's window is "
                f"given by {member(NOT_BEFORE)} and {member(NOT_AFTER)}",
                where=where,
                hint="strikes use not_before/not_after, or hexpsi check --window; a moving "
                "strike is not read",
            )
        raise InputError(
            f"{shown(name)} is a strike's window; a protected position's time is given by "
            f"{member(VALID_FROM)} and {member(VALID_UNTIL)}, or by {member(TIMES)} along a route",
            where=where,
            hint="positions use valid_from/valid_until",
        )
    ways = [way for way, names in _WAYS if any(name in given for name in names)]
    if len(ways) > 1:
        raise InputError(
            f"gives its time both by {ways[0]} and by {ways[1]}; pick one", where=where
        )


def check_member_names(
    values: Mapping[str, object], *, ignore: Collection[str], member: Member, where: str
) -> None:
    """Refuse a filled time member spelled in another case (``Valid_From``): it would be
    ignored, and the feature read as standing. ``ignore`` names attributes set aside."""
    for name, value in values.items():
        folded = name.casefold()
        if folded != name and folded in TIME_MEMBERS and name not in ignore and not _absent(value):
            raise InputError(
                f"{member(name)} is not read: hexpsi reads {member(folded)} (names are matched "
                "exactly)",
                where=where,
                hint=f"rename it to {folded}; if it is not that time, --ignore-field {name}",
            )


# --- reading times ---------------------------------------------------------------------


def read_moment(value: object, what: str, where: str) -> float:
    """One RFC 3339 time with its zone, as Unix seconds; ``what`` names it in messages."""
    if not isinstance(value, str):
        raise InputError(
            f"{what} must be an RFC 3339 time such as {EXAMPLE_TIME}, got {value!r}",
            where=where,
        )
    try:
        return parse_moment(value, what=what)
    except InputError as error:
        raise InputError(error.message, where=where, hint=error.hint) from None


def read_pair(
    values: Mapping[str, object], names: tuple[str, str], *, member: Member, where: str
) -> Interval | None:
    """The interval two members give (``valid_from``/``valid_until``), or None if neither."""
    first, last = names
    start_value, end_value = values.get(first), values.get(last)
    if _absent(start_value) and _absent(end_value):
        return None
    if _absent(start_value) or _absent(end_value):
        given, missing = (last, first) if _absent(start_value) else (first, last)
        raise InputError(
            f"{member(given)} is given without {member(missing)}; give both",
            where=where,
            hint=f"an interval needs both its start, {first}, and its end, {last}",
        )
    start = read_moment(start_value, member(first), where)
    end = read_moment(end_value, member(last), where)
    if end < start:
        raise InputError(
            f"{member(last)} {end_value} is before {member(first)} {start_value}: the times "
            "are out of order",
            where=where,
            hint=f"put the earlier time in {first}",
        )
    return Interval(start, end)


def _count(count: int, noun: str, plural: str = "") -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {plural or noun + 's'}"


def read_times(value: object, vertices: int, *, member: str, where: str) -> list[float]:
    """One time per vertex of a route, never decreasing."""
    if not isinstance(value, list):
        raise InputError(
            f"{member} must be an array of RFC 3339 times, one per vertex of the route, got "
            f"{value!r}",
            where=where,
        )
    if len(value) != vertices:
        raise InputError(
            f"{member} has {_count(len(value), 'time')} but the route has "
            f"{_count(vertices, 'vertex', 'vertices')}",
            where=where,
            hint="give one time per vertex, in the order of the coordinates",
        )
    times = [read_moment(item, f"{member}[{i}]", where) for i, item in enumerate(value)]
    check_non_decreasing(times, value, member=member, where=where)
    return times


def check_non_decreasing(
    times: Sequence[float], written: Sequence[object], *, member: str, where: str
) -> None:
    """Refuse the first time that is earlier than the one before it, naming its index."""
    for i in range(1, len(times)):
        if times[i] < times[i - 1]:
            raise InputError(
                f"{member}[{i}] {written[i]} is before {member}[{i - 1}] {written[i - 1]}: the "
                "times are out of order",
                where=where,
                hint="times must not decrease along the route",
            )


def read_time_buffer(value: object, *, member: str, where: str) -> float | None:
    """A feature's own time buffer in seconds, or None if it gives none."""
    if _absent(value):
        return None
    return check_buffer_seconds(value, member, where)


# --- building when -----------------------------------------------------------------------


def route_legs(
    points: Sequence[LatLng], times: Sequence[float], buffer_m: float
) -> tuple[tuple[Path, ...], tuple[Interval, ...]]:
    """A route with a time per vertex as one two-point ``Path`` per leg and its interval."""
    if len(points) != len(times) or len(points) < 2:
        raise InputError("a route needs at least two vertices and one time per vertex")
    legs = tuple(Path((a, b), buffer_m) for a, b in itertools.pairwise(points))
    intervals = tuple(Interval(s, e) for s, e in itertools.pairwise(times))
    return legs, intervals


def widen(when: tuple[Interval, ...] | None, seconds: float | None) -> tuple[Interval, ...] | None:
    """Every interval grown by the time buffer on both sides (standing stays standing)."""
    if when is None or not seconds:
        return when
    return tuple(interval.widened(seconds) for interval in when)


def fixed_interval(
    values: Mapping[str, object], rules: TimeRules, *, member: Member, where: str
) -> Interval | None:
    """The one interval a timed position or a strike window gives (None: standing).

    A strike without ``not_before``/``not_after`` takes the command's ``--window``.
    """
    valid = read_pair(values, (VALID_FROM, VALID_UNTIL), member=member, where=where)
    if valid is not None:
        return valid
    window = read_pair(values, (NOT_BEFORE, NOT_AFTER), member=member, where=where)
    if window is None and rules.role is Role.STRIKES:
        return rules.window
    return window
