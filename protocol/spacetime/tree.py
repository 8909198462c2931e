"""An epoch's time tree: slots over its horizon, and binary nodes over the slots.

The horizon starts at the epoch's creation, rounded down to a whole slot (so
slots fall on the clock: :00, :15, ...), and runs to its expiry: ``slots``
slots of ``slot_seconds``. They are the leaves (level ``levels``) of a binary
tree whose root (level 0) spans ``2**levels`` slots, as H3 resolutions form a
tree over space. Node ``(level, index)`` spans slots
``[index * 2**(levels - level), (index + 1) * 2**(levels - level))``.

Intervals are rounded *outward* to slots: every slot an interval touches is
in, so rounding can only add time (a false alarm), never drop it (a miss).

- A timed position contributes every node at every level that holds one of
  its slots (:meth:`TimeTree.position_nodes`).
- A strike window is asked as its canonical cover, the fewest nodes whose
  slots are exactly the window's (:meth:`TimeTree.window_cover`). A position
  and a window share a slot exactly when the cover holds a node the position
  contributed, so a hit is a real overlap and no overlap is missed.
- The cover's shape (how many nodes at each level) depends on where the
  window lies, so a query pads it to a shape that depends only on the
  window's length rounded down to a power of two (:func:`padded_levels`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from hexpsi.protocol.errors import InputError, LocalProtocolError
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.protocol.times import rfc3339

MAX_LEVELS = 24
"""At most 2**24 slots: a year of one-minute slots needs 20 levels."""
DEFAULT_SLOT_SECONDS = 15 * 60

Node = tuple[int, int]
"""``(level, index)`` of a time-tree node."""
SlotRange = tuple[int, int]
"""``(first, last)`` slot, both included."""


@dataclass(frozen=True, slots=True)
class TimeTree:
    """The slots of one epoch's horizon and the binary tree over them."""

    origin: float
    """Start of slot 0, Unix seconds: a whole multiple of ``slot_seconds``."""
    slot_seconds: int
    slots: int
    """Slots in the horizon (the tree's last ``2**levels - slots`` leaves are past it)."""

    def __post_init__(self) -> None:
        if not isinstance(self.slot_seconds, int) or not 1 <= self.slot_seconds <= 86_400:
            raise LocalProtocolError(f"slot length must be 1..86400 s, got {self.slot_seconds}")
        if not 1 <= self.slots <= 1 << MAX_LEVELS:
            raise LocalProtocolError(f"a time tree has 1..2**{MAX_LEVELS} slots, not {self.slots}")
        if not math.isfinite(self.origin) or self.origin % self.slot_seconds:
            raise LocalProtocolError("the time tree's origin must be a whole slot")

    @classmethod
    def for_horizon(cls, start: float, end: float, slot_seconds: int) -> TimeTree:
        """The tree over ``[start, end]``, its origin rounded down to a whole slot."""
        origin = math.floor(start / slot_seconds) * slot_seconds
        slots = max(1, math.ceil((end - origin) / slot_seconds))
        if slots > 1 << MAX_LEVELS:
            raise InputError(
                f"an epoch of {(end - start) / 3600:g} h has more than 2**{MAX_LEVELS} slots "
                f"of {slot_seconds} s",
                hint="use longer slots (slot_minutes) or a shorter epoch",
            )
        return cls(float(origin), slot_seconds, slots)

    @property
    def levels(self) -> int:
        """Depth of the leaves: the root is level 0, slots are level ``levels``."""
        return (self.slots - 1).bit_length()

    @property
    def horizon(self) -> Interval:
        return Interval(self.origin, self.origin + self.slots * self.slot_seconds)

    def slot_range(self, interval: Interval) -> SlotRange | None:
        """The slots ``interval`` touches inside the horizon, or None if it misses it."""
        first = math.floor((interval.start - self.origin) / self.slot_seconds)
        last = math.floor((interval.end - self.origin) / self.slot_seconds)
        if last < 0 or first >= self.slots:
            return None
        return max(first, 0), min(last, self.slots - 1)

    def require_slots(self, interval: Interval, what: str) -> SlotRange:
        """:meth:`slot_range` for an interval that must lie inside the horizon."""
        horizon = self.horizon
        if interval.start < horizon.start or interval.end > horizon.end:
            raise InputError(
                f"{what} {interval} is outside the epoch's horizon {horizon}",
                hint="check a window inside the peer's current epoch (hexpsi check --dry-run "
                "shows it), or wait for the epoch that holds it",
            )
        found = self.slot_range(interval)
        if found is None:  # pragma: no cover - excluded by the test above
            raise AssertionError("an interval inside the horizon touches a slot")
        return found

    def node_slots(self, node: Node) -> SlotRange:
        """The slots of ``node`` that lie in the horizon (a node past it has none)."""
        level, index = node
        self._check_node(node)
        width = 1 << (self.levels - level)
        return index * width, min((index + 1) * width, self.slots) - 1

    def node_interval(self, node: Node) -> Interval:
        """The time ``node`` spans inside the horizon."""
        first, last = self.node_slots(node)
        return Interval(
            self.origin + first * self.slot_seconds,
            self.origin + (last + 1) * self.slot_seconds,
        )

    def node_hours(self, node: Node) -> float:
        """How long ``node`` lasts inside the horizon, in hours: what a timed element charges."""
        first, last = self.node_slots(node)
        return max(0, last - first + 1) * self.slot_seconds / 3600.0

    def level_hours(self, level: int) -> float:
        """What one element at ``level`` is charged for, in hours: a node's span at that
        level, within the horizon (the responder does not know which node it is)."""
        if not 0 <= level <= self.levels:
            raise LocalProtocolError(f"time level {level} is not in a tree of {self.levels}")
        return min(1 << (self.levels - level), self.slots) * self.slot_seconds / 3600.0

    def _check_node(self, node: Node) -> None:
        level, index = node
        if not 0 <= level <= self.levels or not 0 <= index < 1 << level:
            raise LocalProtocolError(f"time node {node} is not in a tree of {self.levels} levels")
        if index << (self.levels - level) >= self.slots:
            raise LocalProtocolError(f"time node {node} lies past the horizon")

    def position_nodes(self, slots: SlotRange) -> Iterator[Node]:
        """Every node, at every level, that holds one of ``slots``: what a timed position
        contributes (about twice its slot count plus the depth)."""
        first, last = slots
        for level in range(self.levels + 1):
            shift = self.levels - level
            for index in range(first >> shift, (last >> shift) + 1):
                yield level, index

    def position_node_count(self, slots: SlotRange) -> int:
        first, last = slots
        return sum(
            (last >> (self.levels - level)) - (first >> (self.levels - level)) + 1
            for level in range(self.levels + 1)
        )

    def window_cover(self, slots: SlotRange) -> list[Node]:
        """The canonical cover of ``slots``: the fewest nodes whose slots are exactly those
        (past the horizon, a node may also hold slots no position can have)."""
        first, last = slots
        if first == 0 and last == self.slots - 1:
            return [(0, 0)]
        cover: list[Node] = []
        start, end = first, last + 1
        while start < end:
            # The largest aligned block starting at ``start`` that fits in [start, end).
            size = start & -start if start else 1 << self.levels
            while size > end - start:
                size >>= 1
            level = self.levels - (size.bit_length() - 1)
            cover.append((level, start // size))
            start += size
        return cover

    def describe(self) -> str:
        return (
            f"{self.slots} slots of {self.slot_seconds // 60 or self.slot_seconds} "
            f"{'min' if self.slot_seconds >= 60 else 's'} from {rfc3339(self.origin)}"
        )


def padded_levels(tree: TimeTree, slots: SlotRange) -> dict[int, int]:
    """How many nodes a window's query group holds at each level, dummies included.

    The whole horizon is asked as the root alone. Any other window of ``m``
    slots has a cover with at most two nodes per level, at levels whose nodes
    span at most ``2**floor(log2 m)`` slots; each of those levels is padded to
    two. The shape then tells the responder only ``floor(log2 m)``.
    """
    first, last = slots
    if first == 0 and last == tree.slots - 1:
        return {0: 1}
    span = (last - first + 1).bit_length() - 1
    return dict.fromkeys(range(tree.levels - span, tree.levels + 1), 2)
