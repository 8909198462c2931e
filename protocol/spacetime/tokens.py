"""Space-time tokens: a cell and a time-tree node, in their own token domain.

A timed token is ``b"hexpsi/v1/timed" || res || cell || level || index``:
another label and length than a standing cell token (``protocol.geo.tokens``),
so the two domains never meet. A responder's timed tokens are grouped by
(space resolution, time level), the unit its keys and charges are per, and
generated one group at a time, so memory holds one group, never the whole
expanded set.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import h3.api.basic_int as h3

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.resolution import check_resolutions
from hexpsi.protocol.spacetime.tree import MAX_LEVELS, Node, SlotRange, TimeTree

TIMED_TOKEN_LABEL = b"hexpsi/v1/timed"
TIMED_TOKEN_SIZE = len(TIMED_TOKEN_LABEL) + 1 + 8 + 1 + 4
INDEX_BITS = 32

TimedGroup = tuple[int, int]
"""``(space resolution, time level)``: one key, one charge rate, one query group."""
TimedCell = tuple[int, SlotRange]
"""A protected cell at the node's resolution and the slots it holds."""


def pack(cell: int, index: int) -> int:
    """A (cell, node index) pair as one int: what a group's token sets hold."""
    return cell << INDEX_BITS | index


def unpack(packed: int) -> tuple[int, int]:
    return packed >> INDEX_BITS, packed & ((1 << INDEX_BITS) - 1)


def timed_token_bytes(cell: int, node: Node) -> bytes:
    """``label || res (1) || cell (8, big-endian) || level (1) || index (4, big-endian)``."""
    level, index = node
    if not 0 <= level <= MAX_LEVELS or not 0 <= index < 1 << INDEX_BITS:
        raise InputError(f"time node {node} is out of range")
    return (
        TIMED_TOKEN_LABEL
        + bytes([h3.get_resolution(cell)])
        + cell.to_bytes(8, "big")
        + bytes([level])
        + index.to_bytes(4, "big")
    )


def packed_token_bytes(level: int, packed: int) -> bytes:
    cell, index = unpack(packed)
    return timed_token_bytes(cell, (level, index))


def timed_groups(res: int, res_min: int, tree: TimeTree) -> list[TimedGroup]:
    """Every (resolution, level) group of an epoch, in a fixed order."""
    check_resolutions(res, res_min)
    return [(r, level) for r in range(res_min, res + 1) for level in range(tree.levels + 1)]


def responder_timed_tokens(
    timed_cells: Sequence[TimedCell], *, res: int, res_min: int, tree: TimeTree
) -> Iterator[tuple[TimedGroup, list[int]]]:
    """Each group's tokens (packed, sorted, distinct), one group at a time.

    A timed cell contributes, for itself and each ancestor down to ``res_min``,
    every node at every level that holds one of its slots.
    """
    for r in range(res_min, res + 1):
        parents = [(h3.cell_to_parent(cell, r), slots) for cell, slots in timed_cells]
        for level in range(tree.levels + 1):
            shift = tree.levels - level
            group: set[int] = set()
            for parent, (first, last) in parents:
                base = parent << INDEX_BITS
                group.update(range(base | (first >> shift), base | (last >> shift) + 1))
            if group:
                yield (r, level), sorted(group)


def responder_timed_count(
    timed_cells: Sequence[TimedCell], *, res: int, res_min: int, tree: TimeTree
) -> int:
    """How many tokens :func:`responder_timed_tokens` yields (same pass, nothing kept)."""
    return sum(
        len(tokens)
        for _, tokens in responder_timed_tokens(timed_cells, res=res, res_min=res_min, tree=tree)
    )


def query_timed_tokens(
    cells_by_res: Iterable[tuple[int, Iterable[int]]], cover: Iterable[Node]
) -> dict[TimedGroup, list[int]]:
    """A strike's compacted cells crossed with its window's cover, grouped and packed."""
    nodes = list(cover)
    groups: dict[TimedGroup, list[int]] = {}
    for r, cells in cells_by_res:
        for cell in sorted(cells):
            for level, index in nodes:
                groups.setdefault((r, level), []).append(pack(cell, index))
    return groups
