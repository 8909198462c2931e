"""What the checks of a strike send, with time: standing tokens, and timed tokens per window.

A strike's cells are grouped by window: the cells of features with the same
window (``None``: no window, the whole horizon) form one part. Every check
asks:

- **standing tokens**: the strike's cells compacted (standing positions hold
  at any time, so every strike cell is asked whatever its window);
- **timed tokens**, per part: the part's cells compacted, crossed with the
  canonical cover of its window in the epoch's time tree (the root for the
  whole horizon).

Padding keeps the query proportional to the strike: a part's timed group at
(resolution r, level l) holds the part's padded cell count at r (the same
bucket a standing group uses) times the padded node count at l
(:func:`~hexpsi.protocol.spacetime.tree.padded_levels`), and is not padded
again. The sizes then tell the responder the bucket of each resolution's
cells, as before, and for each window only ``floor(log2 m)`` of its ``m``
slots, or that it asks the whole horizon: never where the window lies.

A strike too large for one check is cut into pieces (:func:`plan_pieces`),
each an ordinary check; with time, each piece holds one part's cells, asked
both ways. The pieces are a function of the strike and the descriptor alone,
so an evidence verifier derives exactly the same ones.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from hexpsi.protocol.check.plan import QUERY_BUCKET_MINIMUM, QueryPlan, plan_query, split_tokens
from hexpsi.protocol.crypto.oprf import MAX_BATCH
from hexpsi.protocol.epoch.descriptor import Descriptor
from hexpsi.protocol.errors import LocalProtocolError
from hexpsi.protocol.geo.cover import shape_to_cover
from hexpsi.protocol.geo.estimate import check_bounded, check_bounded_size
from hexpsi.protocol.geo.tokens import TokensByResolution, query_tokens
from hexpsi.protocol.geo.zone import StrikeZone
from hexpsi.protocol.limits import DEFAULT_MAX_COVER_CELLS
from hexpsi.protocol.padding import size_bucket
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.protocol.spacetime.tokens import TimedGroup
from hexpsi.protocol.spacetime.tree import Node, SlotRange, TimeTree, padded_levels

WindowedCells = Mapping[Interval | None, Collection[int]]
"""Strike cells (at the responder's ``res``) by the window they are asked for."""


@dataclass(frozen=True, slots=True)
class TimedPart:
    """One window's cells, compacted, and the slots they are asked over."""

    window: Interval | None
    slots: SlotRange
    tokens: dict[int, list[int]]
    cells: frozenset[int]
    """The strike cells of this window: what a hit maps back to."""

    def cover(self, tree: TimeTree) -> list[Node]:
        return tree.window_cover(self.slots)

    def padded_levels(self, tree: TimeTree) -> dict[int, int]:
        return padded_levels(tree, self.slots)

    def sizes(self, tree: TimeTree) -> dict[TimedGroup, int]:
        """Elements per timed group, padding included."""
        sizes: dict[TimedGroup, int] = {}
        for r, cells in self.tokens.items():
            if not cells:
                continue
            padded_cells = size_bucket(len(cells), minimum=QUERY_BUCKET_MINIMUM)
            for level, count in self.padded_levels(tree).items():
                sizes[r, level] = sizes.get((r, level), 0) + padded_cells * count
        return sizes


@dataclass(frozen=True, slots=True)
class Piece:
    """What one check sends: standing tokens, and each window's timed tokens."""

    standing: dict[int, list[int]]
    timed: tuple[TimedPart, ...] = ()

    def timed_sizes(self, tree: TimeTree | None) -> dict[TimedGroup, int]:
        sizes: dict[TimedGroup, int] = {}
        if tree is None:
            return sizes
        for part in self.timed:
            for group, size in part.sizes(tree).items():
                sizes[group] = sizes.get(group, 0) + size
        return sizes


def zone_windows(
    zone: StrikeZone, res: int, *, max_cells: int = DEFAULT_MAX_COVER_CELLS
) -> dict[Interval | None, set[int]]:
    """A strike zone's cells at ``res`` by window: each shape's cover goes to its feature's
    window (its own interval, for a feature whose shapes have several), no window to None.
    Refused before anything is covered when the zone would be too large."""
    check_bounded(zone.features, res, max_cells)
    windows: dict[Interval | None, set[int]] = {}
    for feature in zone.features:
        whens = feature.when or (None,) * len(feature.shapes)
        for shape, when in zip(feature.shapes, whens, strict=True):
            windows.setdefault(when, set()).update(shape_to_cover(shape, res))
    if sum(len(cells) for cells in windows.values()) > max_cells:
        check_bounded_size(len(set().union(*windows.values())), res, max_cells)
    return windows


def _sorted_tokens(tokens: TokensByResolution) -> dict[int, list[int]]:
    return {r: sorted(cells) for r, cells in sorted(tokens.items()) if cells}


def _window_slots(tree: TimeTree, window: Interval | None) -> SlotRange:
    if window is None:
        return 0, tree.slots - 1
    return tree.require_slots(window, "the strike window")


def timed_parts(strike: WindowedCells, descriptor: Descriptor) -> tuple[TimedPart, ...]:
    """Each window's compacted cells and slots, in a fixed order (no window first)."""
    tree = descriptor.time_tree
    if tree is None:
        return ()
    parts = []
    ordered = sorted(strike, key=lambda w: (-1.0, -1.0) if w is None else (w.start, w.end))
    for window in ordered:
        cells = frozenset(strike[window])
        if not cells:
            continue
        tokens = query_tokens(cells, res=descriptor.res, res_min=descriptor.res_min)
        parts.append(TimedPart(window, _window_slots(tree, window), _sorted_tokens(tokens), cells))
    return tuple(parts)


def check_windows(strike: WindowedCells, descriptor: Descriptor) -> None:
    """A window can only be asked of an epoch with a time tree."""
    if descriptor.time_tree is None and any(w is not None for w in strike if strike[w]):
        raise LocalProtocolError(
            f"{descriptor.node!r} serves an epoch without a time tree, which cannot answer "
            "for a window",
            hint="check without --window (and without not_before/not_after), or ask its "
            "operator to set slot_minutes",
        )


def piece_elements(piece: Piece, tree: TimeTree | None) -> int:
    standing = sum(
        size_bucket(len(cells), minimum=QUERY_BUCKET_MINIMUM)
        for cells in piece.standing.values()
        if cells
    )
    return standing + sum(piece.timed_sizes(tree).values())


def _fits(piece: Piece, descriptor: Descriptor) -> bool:
    tree = descriptor.time_tree
    if piece_elements(piece, tree) > descriptor.max_query_tokens:
        return False
    largest = max(piece.timed_sizes(tree).values(), default=0)
    return largest <= MAX_BATCH


def plan_pieces(strike: WindowedCells, descriptor: Descriptor) -> list[Piece]:
    """The checks a strike needs against an epoch, in a fixed order; one when it fits.

    Without a time tree, as before time: the strike's compacted tokens, split
    if they exceed the responder's limit. With one, a single check holds the
    standing tokens and every window's timed tokens when that fits; otherwise
    each window's cells are split on their own, each piece asking its cells
    both ways, with the split limit divided by what one cell costs (one
    standing element and its window's padded nodes).
    """
    check_windows(strike, descriptor)
    cells = frozenset().union(*(frozenset(c) for c in strike.values()))
    if not cells:
        raise LocalProtocolError("the strike zone covers no cells; nothing to check")
    standing = _sorted_tokens(query_tokens(cells, res=descriptor.res, res_min=descriptor.res_min))
    tree = descriptor.time_tree
    if tree is None:
        return [
            Piece(part)
            for part in split_tokens(standing, max_query_tokens=descriptor.max_query_tokens)
        ]
    parts = timed_parts(strike, descriptor)
    whole = Piece(standing, parts)
    if _fits(whole, descriptor):
        return [whole]
    pieces = []
    for part in parts:
        nodes = part.padded_levels(tree)
        per_cell = 1 + sum(nodes.values())
        limit = descriptor.max_query_tokens // per_cell
        group_limit = MAX_BATCH // max(nodes.values())
        for tokens in split_tokens(part.tokens, max_query_tokens=limit, max_group=group_limit):
            pieces.append(Piece(tokens, (TimedPart(part.window, part.slots, tokens, part.cells),)))
    return pieces


def piece_plan(piece: Piece, descriptor: Descriptor) -> QueryPlan:
    """What one piece sends: its padded standing and timed group sizes and real tokens."""
    tree = descriptor.time_tree
    timed_tokens = 0
    if tree is not None:
        for part in piece.timed:
            nodes = len(part.cover(tree))
            timed_tokens += nodes * sum(len(cells) for cells in part.tokens.values())
    return plan_query(piece.standing, piece.timed_sizes(tree), timed_tokens)
