"""Which target of a strike conflicts: the answer per feature, from the answer per cell.

A strike package holds several targets (features). The check answers which of
the proposer's strike cells conflict; a target conflicts when any cell of its
own cover does. Covers of neighbouring targets may share cells, so a shared
conflicting cell names both.

With time, each target also says *when*: a cell that meets a standing
position conflicts over the target's whole window (or the epoch, without
one); a cell that meets a timed position conflicts over the time node it was
asked with, inside the window rounded outward to slots.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hexpsi.protocol.check.session import TimedHit
from hexpsi.protocol.geo.cover import feature_to_cover
from hexpsi.protocol.geo.shapes import Feature, FeatureId
from hexpsi.protocol.spacetime.interval import Interval

WHOLE_STRIKE = "strike"
"""The one target of a check that was given cells rather than shapes."""


Window = tuple[Interval, frozenset[int]]
"""When some of a target's cells conflict: an interval and those cells."""


@dataclass(frozen=True, slots=True)
class TargetVerdict:
    """One target: its cells at the checked resolution, those that conflict, and when."""

    id: FeatureId
    cells: frozenset[int]
    conflicting_cells: frozenset[int]
    windows: tuple[Window, ...] = ()
    """The conflicting cells by time, in time order (merged where the interval is equal)."""

    @property
    def conflict(self) -> bool:
        return bool(self.conflicting_cells)


def target_verdicts(
    features: Iterable[Feature] | None,
    *,
    res: int,
    strike_cells: frozenset[int],
    conflicting_cells: frozenset[int],
    standing_cells: frozenset[int] | None = None,
    timed_hits: Sequence[TimedHit] = (),
    horizon: Interval | None = None,
) -> tuple[TargetVerdict, ...]:
    """Each feature's verdict in input order (one ``strike`` target without features).

    ``standing_cells`` and ``timed_hits`` (a check's result) and the epoch's
    ``horizon`` say when each target conflicts; without them, no windows.
    """
    if features is None:
        windows = _windows(strike_cells, None, standing_cells, timed_hits, horizon)
        return (TargetVerdict(WHOLE_STRIKE, strike_cells, conflicting_cells, windows),)
    verdicts = []
    for feature in features:
        cells = frozenset(feature_to_cover(feature, res))
        window = feature.when[0] if feature.when else None
        windows = _windows(cells, window, standing_cells, timed_hits, horizon)
        verdicts.append(TargetVerdict(feature.id, cells, cells & conflicting_cells, windows))
    return tuple(verdicts)


def _windows(
    cells: frozenset[int],
    window: Interval | None,
    standing_cells: frozenset[int] | None,
    timed_hits: Sequence[TimedHit],
    horizon: Interval | None,
) -> tuple[Window, ...]:
    found: dict[Interval, set[int]] = {}
    whole = window or horizon
    if standing_cells is not None and whole is not None and cells & standing_cells:
        found.setdefault(whole, set()).update(cells & standing_cells)
    for hit in timed_hits:
        if hit.window == window and cells & hit.cells:
            found.setdefault(hit.interval, set()).update(cells & hit.cells)
    return tuple((interval, frozenset(found[interval])) for interval in sorted(found))
