"""Area budgets: how much ground a peer may query per window, as pure logic.

The responder cannot see which cells a proposer asks about, but it sees each
blinded element's declared resolution. A token at resolution ``r`` covers
``7**(res - r)`` finest cells, so the area charged is known without seeing the
token. A token declared finer than it really is matches nothing (it is
evaluated under the wrong resolution's key), so lying only costs the liar.

Windows are fixed and aligned to the Unix epoch (``floor(now / window)``) so
"when does it reset" has one answer that survives restarts. The server
persists spending per (peer, window start); this module decides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import h3.api.basic_int as h3

from hexpsi.protocol.errors import BudgetExhausted, InputError


def cell_area_km2(res: int) -> float:
    """Average area of one H3 cell at ``res``, the unit every charge is made of."""
    return float(h3.average_hexagon_area(res, unit="km^2"))


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


@dataclass(frozen=True, slots=True)
class Window:
    """The fixed window containing a moment: [start, start + length)."""

    start: float
    length: float

    @property
    def end(self) -> float:
        """When the window resets: exactly the next aligned window's start."""
        index = round(self.start / self.length)
        if index * self.length == self.start:
            return (index + 1) * self.length
        return self.start + self.length

    @classmethod
    def containing(cls, now: float, length_seconds: float) -> Window:
        """The window ``[k * length, (k + 1) * length)`` that holds ``now``.

        Boundaries are the float products ``k * length``, so consecutive windows meet
        exactly. ``now / length`` is rounded, so near a boundary its floor can name
        the neighbouring window; the products decide.
        """
        if not (math.isfinite(length_seconds) and length_seconds > 0):
            raise InputError(
                f"budget window must be a positive number of seconds, got {length_seconds}"
            )
        if not math.isfinite(now):
            raise InputError(f"the time must be a finite number of seconds, got {now}")
        index = math.floor(now / length_seconds)
        if index * length_seconds > now:
            index -= 1
        elif (index + 1) * length_seconds <= now:
            index += 1
        return cls(index * length_seconds, length_seconds)


@dataclass(frozen=True, slots=True)
class Charge:
    """An approved charge: what was spent and what is left in the window."""

    amount: float
    spent_before: float
    limit: float
    window: Window

    @property
    def remaining(self) -> float:
        return max(0.0, self.limit - self.spent_before - self.amount)


def decide_charge(
    *, amount: float, spent_in_window: float, limit: float, window: Window, unit: str = "km²"
) -> Charge:
    """Approve ``amount`` if it fits in what is left of ``limit``; raise otherwise.

    Raises :class:`BudgetExhausted` carrying what remains and when the window resets,
    so the refusal tells the peer exactly how long to wait or how much smaller to ask.
    """
    if amount < 0 or not math.isfinite(amount):
        raise InputError(f"cannot charge {amount}")
    left = max(0.0, limit - spent_in_window)
    if amount > left:
        raise BudgetExhausted(
            f"query needs {amount:.3f} {unit} but only {left:.3f} {unit} of {limit:.3f} {unit} "
            f"remain in this window; the window resets at {window.end:.0f} (Unix time)",
            remaining=left,
            resets_at=window.end,
        )
    return Charge(amount=amount, spent_before=spent_in_window, limit=limit, window=window)
