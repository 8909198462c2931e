"""Budgets: how much of my map a peer may probe in any rolling window, as pure logic.

The budget is the one defence against sweeping, so every operation that can
reveal my cells to a peer is charged to that peer's one area budget, at the
most it could reveal if it cheats:

- a check, by the area of its query elements, padding included. The responder
  cannot see which cells are asked about, but it sees each blinded element's
  declared resolution: a token at resolution ``r`` covers ``7**(res - r)``
  finest cells, so the area is known without seeing the token (a token
  declared finer than it is matches nothing: lying only costs the liar);
- a mutual check, by the other side's padded set size S at the agreed
  resolution, ``S × cell area``: a peer that blinds its elements under
  different keys learns, for about S chosen cells, whether each is in my map.

Peers can collude, each staying within its own budget, so a node-wide
allowance bounds what all of them together may probe, charged beside each
peer's own.

What "km²" means: cells × H3's *average* cell area at the resolution charged
(:func:`cell_area_km2`). Real cells vary with latitude and their place on the
grid (at resolution 9, cells near At-Tanf are 1.09× the average, across Syria
1.03× to 1.13×), so the ground a budget covers varies too; what it really
bounds is a number of cells.

Windows roll: what counts is the sum over the last W hours, so nobody spends a
budget twice across a boundary. A refusal says when enough frees up, in RFC
3339 UTC and from now. The server keeps every charge with its time; this
module decides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import h3.api.basic_int as h3

from hexpsi.protocol.errors import BudgetExhausted, InputError
from hexpsi.protocol.geo.resolution import check_resolution
from hexpsi.protocol.times import moment_from_now

AREA_UNIT = "km²"
VOLUME_UNIT = "km²·h"
"""Timed elements are charged by space-time volume: area times the span of their time level."""
MEASURED_UNITS = (AREA_UNIT, VOLUME_UNIT)


def cell_area_km2(res: int) -> float:
    """Average area of one H3 cell at ``res``, the unit every charge is made of."""
    return float(h3.average_hexagon_area(check_resolution(res), unit="km^2"))


def query_area_km2(group_sizes: Mapping[int, int], res: int) -> float:
    """Area charged for a query with ``group_sizes[r]`` elements declared at resolution r.

    Padding elements are charged like real ones: the responder cannot tell them apart.
    """
    finest_cells = 0
    for token_res, count in group_sizes.items():
        if not 0 <= token_res <= res:
            raise InputError(f"token resolution {token_res} is outside 0..{res}")
        if count < 0:
            raise InputError(f"negative element count {count}")
        finest_cells += count * 7 ** (res - token_res)
    return finest_cells * cell_area_km2(res)


def query_volume_km2h(
    timed_sizes: Mapping[tuple[int, int], int], res: int, level_hours: Callable[[int], float]
) -> float:
    """Space-time volume charged for a query's timed groups: each element's area (as in
    :func:`query_area_km2`) times the span of its time level, padding included."""
    volume = 0.0
    for (token_res, level), count in timed_sizes.items():
        volume += query_area_km2({token_res: count}, res) * level_hours(level)
    return volume


def set_area_km2(set_size: int, res: int) -> float:
    """What a mutual check against a padded set of ``set_size`` elements can reveal."""
    if isinstance(set_size, bool) or not isinstance(set_size, int) or set_size < 0:
        raise InputError(f"a set size must be a count, got {set_size!r}")
    return set_size * cell_area_km2(res)


@dataclass(frozen=True, slots=True)
class Allowance:
    """At most ``limit`` over any ``window_seconds``: one budget, with what to call it."""

    limit: float
    window_seconds: float
    name: str = "area budget"
    unit: str = AREA_UNIT

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not (math.isfinite(self.limit) and self.limit >= 0):
            raise InputError(f"a budget must be a finite number >= 0, got {self.limit!r}")
        if not (math.isfinite(self.window_seconds) and self.window_seconds > 0):
            raise InputError(
                f"a budget window must be a positive number of seconds, got {self.window_seconds}"
            )

    def describe(self) -> str:
        """``bravo's area budget (20 km² per 24 h)``, ``… allowance (12 per 24 h)``."""
        hours = self.window_seconds / 3600
        if self.unit in MEASURED_UNITS:
            return f"{self.name} ({self.limit:,.6g} {self.unit} per {hours:g} h)"
        return f"{self.name} ({self.limit:,.0f} per {hours:g} h)"

    def amount(self, value: float) -> str:
        """``12.345 km²``, ``3.000 km²·h`` or ``3 checks``."""
        if self.unit in MEASURED_UNITS:
            return f"{value:,.3f} {self.unit}"
        return f"{value:,.0f} {self.unit}"


@dataclass(frozen=True, slots=True)
class Spending:
    """One past charge: when, and how much."""

    at: float
    amount: float


@dataclass(frozen=True, slots=True)
class Charge:
    """An approved charge: what was spent before it in the window and what is left."""

    amount: float
    spent_before: float
    allowance: Allowance

    @property
    def remaining(self) -> float:
        return max(0.0, self.allowance.limit - self.spent_before - self.amount)


def in_window(history: Iterable[Spending], allowance: Allowance, now: float) -> list[Spending]:
    """The charges that still count at ``now``: made within the last window, oldest first.

    A charge dated after ``now`` counts too: concurrent requests take their time
    before they are charged, so one may be charged after a later one.
    """
    start = now - allowance.window_seconds
    return sorted((s for s in history if start < s.at), key=lambda s: s.at)


def frees_at(
    history: Sequence[Spending], amount: float, allowance: Allowance, now: float
) -> float | None:
    """The earliest moment from which ``amount`` fits, or None if it never can.

    Charges leave the window one by one as they age past it; the first moment
    at which what is left of them plus ``amount`` fits under the limit is when
    enough has freed up.
    """
    if amount > allowance.limit:
        return None
    counting = in_window(history, allowance, now)
    spent = math.fsum(s.amount for s in counting)
    if spent + amount <= allowance.limit:
        return now
    for spending in counting:
        spent -= spending.amount
        if spent + amount <= allowance.limit:
            return spending.at + allowance.window_seconds
    return now


def decide_charge(
    *,
    amount: float,
    history: Sequence[Spending],
    allowance: Allowance,
    now: float,
    what: str = "this request",
) -> Charge:
    """Approve ``amount`` if it fits in what the last window left of ``allowance``.

    Raises :class:`BudgetExhausted` naming the budget, what is left and when
    enough frees up (``what`` names the request in the message).
    """
    if amount < 0 or not math.isfinite(amount):
        raise InputError(f"cannot charge {amount}")
    counting = in_window(history, allowance, now)
    spent = math.fsum(s.amount for s in counting)
    left = max(0.0, allowance.limit - spent)
    if amount <= left:
        return Charge(amount=amount, spent_before=spent, allowance=allowance)
    needs = "could expose up to" if allowance.unit == AREA_UNIT else "needs"
    asked = f"{what} {needs} {allowance.amount(amount)}"
    when = frees_at(counting, amount, allowance, now)
    if when is None:
        raise BudgetExhausted(
            f"{asked}, more than {allowance.describe()} allows at all",
            remaining=left,
            frees_at=None,
            hint="ask for less at a time, or have the operator raise the budget",
        )
    raise BudgetExhausted(
        f"{asked}; {allowance.amount(left)} of {allowance.describe()} is left; "
        f"enough frees up at {moment_from_now(when, now)}",
        remaining=left,
        frees_at=when,
    )
