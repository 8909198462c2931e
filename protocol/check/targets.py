"""Which target of a strike conflicts: the answer per feature, from the answer per cell.

A strike package holds several targets (features). The check answers which of
the proposer's strike cells conflict; a target conflicts when any cell of its
own cover does. Covers of neighbouring targets may share cells, so a shared
conflicting cell names both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hexpsi.protocol.geo.cover import feature_to_cover
from hexpsi.protocol.geo.shapes import Feature, FeatureId

WHOLE_STRIKE = "strike"
"""The one target of a check that was given cells rather than shapes."""


@dataclass(frozen=True, slots=True)
class TargetVerdict:
    """One target: its cells at the checked resolution and those that conflict."""

    id: FeatureId
    cells: frozenset[int]
    conflicting_cells: frozenset[int]

    @property
    def conflict(self) -> bool:
        return bool(self.conflicting_cells)


def target_verdicts(
    features: Iterable[Feature] | None,
    *,
    res: int,
    strike_cells: frozenset[int],
    conflicting_cells: frozenset[int],
) -> tuple[TargetVerdict, ...]:
    """Each feature's verdict in input order (one ``strike`` target without features)."""
    if features is None:
        return (TargetVerdict(WHOLE_STRIKE, strike_cells, conflicting_cells),)
    verdicts = []
    for feature in features:
        cells = frozenset(feature_to_cover(feature, res))
        verdicts.append(TargetVerdict(feature.id, cells, cells & conflicting_cells))
    return tuple(verdicts)
