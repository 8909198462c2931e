"""Covers of timed features: every cell a shape touches, with the time it is held.

A standing feature's cover is a set of cells. A timed feature holds each of
its shapes over that shape's interval (a timed position or strike window: one
interval for all; a movement: each leg its own), so its cover pairs every cell
of a shape's cover (``cover.shape_to_cover``) with the shape's interval. A
cell held over intervals that overlap or touch is held over their union: a
convoy passing through a cell on two consecutive legs is there from the first
leg's start to the second's end, and the list stays about as long as the set
of cells. Merging only joins intervals that share a moment, so no time is
added and none is dropped.

The cover is bounded like a standing one (``estimate``): refused before it is
built when its cells are estimated above the limit, and refused when the
merged list is longer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hexpsi.protocol.errors import InputError, LocalProtocolError
from hexpsi.protocol.geo.cover import shape_to_cover
from hexpsi.protocol.geo.estimate import check_cover_size
from hexpsi.protocol.geo.shapes import Feature
from hexpsi.protocol.spacetime.interval import Interval

TimedCell = tuple[int, Interval]
"""A cell and one interval it is held over."""


def split_timed(features: Iterable[Feature]) -> tuple[list[Feature], list[Feature]]:
    """``(standing, timed)``: the features without time, and those with, in order."""
    standing: list[Feature] = []
    timed: list[Feature] = []
    for feature in features:
        (timed if feature.timed else standing).append(feature)
    return standing, timed


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of ``intervals`` as the fewest intervals, sorted: overlapping or touching
    ones joined."""
    merged: list[Interval] = []
    for interval in sorted(intervals, key=lambda i: (i.start, i.end)):
        if merged and interval.start <= merged[-1].end:
            if interval.end > merged[-1].end:
                merged[-1] = Interval(merged[-1].start, interval.end)
        else:
            merged.append(interval)
    return merged


def timed_cover(features: Sequence[Feature], res: int, max_cells: int) -> list[TimedCell]:
    """Every ``(cell, interval)`` the timed ``features`` hold at ``res``, intervals of a
    cell merged, sorted by cell then start; refused past ``max_cells`` entries."""
    standing = [feature for feature in features if not feature.timed]
    if standing:
        raise LocalProtocolError(
            f"timed_cover covers timed features, but feature {standing[0].id!r} is standing"
        )
    refusal = InputError(
        f"the timed shapes would cover more than {max_cells:,} cells at resolution {res}",
        hint="check their radius_m and buffer_m",
    )
    try:
        check_cover_size(features, res, max_cells)
    except InputError:
        raise refusal from None
    held: dict[int, list[Interval]] = {}
    for feature in features:
        assert feature.when is not None
        for shape, interval in zip(feature.shapes, feature.when, strict=True):
            for cell in shape_to_cover(shape, res):
                spans = held.setdefault(cell, [])
                # Legs come in time order: most joins are with the cell's last interval.
                if spans and spans[-1].start <= interval.start <= spans[-1].end:
                    if interval.end > spans[-1].end:
                        spans[-1] = Interval(spans[-1].start, interval.end)
                else:
                    spans.append(interval)
            if len(held) > max_cells:
                raise refusal
    cover = [(cell, span) for cell in sorted(held) for span in merge_intervals(held[cell])]
    if len(cover) > max_cells:
        raise refusal
    return cover
