"""How big a cover will be, before it is built; and building it only when it fits.

A fine resolution multiplies the cell count by 7 per level, so a radius that is
harmless at resolution 9 is billions of cells at 15. Callers refuse such a
cover before spending minutes and gigabytes on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.cover import feature_to_cover
from hexpsi.protocol.geo.shapes import Feature

ESTIMATE_FROM_RES = 4
"""Size estimates start here: the whole Earth has only 288,122 cells at resolution 4."""
RELIABLE_ESTIMATE_CELLS = 500
"""From this many coarse cells on, the coarse cover's edge band is a small share."""
CHILDREN_PER_CELL = 7


def _union_cover(features: Sequence[Feature], res: int) -> set[int]:
    return set().union(*(feature_to_cover(feature, res) for feature in features))


def check_cover_size(features: Sequence[Feature], res: int, max_cells: int) -> None:
    """Refuse a cover that would be too large to build, before building it.

    A fine resolution multiplies the cell count by 7 per level, so a radius that is
    harmless at resolution 9 is billions of cells at 15. The union is covered at
    coarser resolutions first (cheap: a fraction of the final size) and projected
    down; a coarse cover over-counts only its edge band, so once it holds a few
    hundred cells the projection is within a few percent of the real size. The
    built cover is checked exactly afterwards as well.
    """
    if max_cells < 1:
        raise InputError(f"--max-cells must be at least 1, got {max_cells}")
    for coarse in range(min(ESTIMATE_FROM_RES, res), res):
        count = len(_union_cover(features, coarse))
        projected = count * CHILDREN_PER_CELL ** (res - coarse)
        if projected <= max_cells:
            return
        if count >= RELIABLE_ESTIMATE_CELLS:
            raise InputError(
                f"the cover at resolution {res} would be about {projected:,} cells, "
                f"more than --max-cells {max_cells:,}",
                hint="use a coarser --res, or raise --max-cells",
            )


def _refusal(res: int, max_cells: int) -> InputError:
    return InputError(
        f"the shapes would cover more than {max_cells:,} cells at resolution {res}",
        hint="check their radius_m and buffer_m",
    )


def check_bounded(features: Sequence[Feature], res: int, max_cells: int) -> None:
    """Refuse, before anything is covered, shapes whose cover the estimate says is too
    large, in the words :func:`bounded_cover` uses."""
    try:
        check_cover_size(features, res, max_cells)
    except InputError:
        raise _refusal(res, max_cells) from None


def check_bounded_size(count: int, res: int, max_cells: int) -> None:
    """Refuse a built cover of ``count`` cells over ``max_cells``."""
    if count > max_cells:
        raise _refusal(res, max_cells)


def bounded_cover(features: Sequence[Feature], res: int, max_cells: int) -> set[int]:
    """The union of every feature's cover at ``res``, refused when it holds more than
    ``max_cells`` cells, and before it is built when the estimate says so: a typo'd
    radius, or a hostile evidence bundle, would otherwise cost minutes and gigabytes
    before anything else could object."""
    check_bounded(features, res, max_cells)
    cells = _union_cover(features, res)
    check_bounded_size(len(cells), res, max_cells)
    return cells
