"""What a report page shows, built from an encoding or a finished check.

A :class:`ReportPage` is plain data: the cells to draw (each with its role and
the targets whose cover holds it), the targets (input features) with their
verdicts, label/value facts, and optionally the operator's tile server.
``hexpsi.server.cli.html_report`` turns one into an HTML page; ``encode`` and
``check`` only build the model (:func:`encoding_to_page`, :func:`check_to_page`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, TypeAlias

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.shapes import FeatureId
from hexpsi.server.cli.formats import Encoding, utc_time

if TYPE_CHECKING:
    from hexpsi.server.clients.check import CheckReport

TILE_PLACEHOLDERS = ("{z}", "{x}", "{y}")


class CellRole(StrEnum):
    """Why a cell is on the map."""

    COVERED = "covered"
    """A cell an encoded input covers."""
    STRIKE = "strike"
    """A strike cell the check found clear."""
    CONFLICT = "conflict"
    """A strike cell that holds a peer's protected position."""


class Verdict(StrEnum):
    CONFLICT = "CONFLICT"
    CLEAR = "CLEAR"


@dataclass(frozen=True, slots=True)
class PageCell:
    """One H3 cell to draw, and the ids of the targets whose cover holds it, in input order."""

    cell: int
    role: CellRole
    features: tuple[FeatureId, ...]


@dataclass(frozen=True, slots=True)
class PageTarget:
    """One input feature: its id, how many cells it covers, and a check's verdict on it."""

    id: FeatureId
    cells: int
    conflicting: int | None = None
    """How many of its cells conflict (a check), or None (an encoding)."""
    verdict: Verdict | None = None


@dataclass(frozen=True, slots=True)
class ReportPage:
    """Everything a report page shows; nothing in it is looked up again when drawn."""

    title: str
    cells: tuple[PageCell, ...]
    targets: tuple[PageTarget, ...]
    facts: tuple[tuple[str, str], ...]
    """Label and value rows, in the order shown."""
    summary: str = ""
    """One sentence under the title (after the verdict, when there is one)."""
    verdict: Verdict | None = None
    """The check's overall verdict; None for an encoding."""
    tiles: str | None = None
    """An XYZ tile URL template with ``{z}``, ``{x}`` and ``{y}``, or None for no base map."""

    def __post_init__(self) -> None:
        if self.tiles is not None:
            check_tiles_template(self.tiles)
        ids = [str(target.id) for target in self.targets]
        if len(set(ids)) != len(ids):
            raise ValueError("target ids must be unique (as text)")
        known = set(ids)
        seen: set[int] = set()
        for cell in self.cells:
            if cell.cell in seen:
                raise ValueError(f"cell {cell.cell:x} is listed twice")
            seen.add(cell.cell)
            unknown = {str(f) for f in cell.features} - known
            if unknown:
                raise ValueError(f"cell {cell.cell:x} names unknown targets {sorted(unknown)}")


def check_tiles_template(template: str) -> str:
    """An XYZ URL template naming ``{z}``, ``{x}`` and ``{y}`` and no other placeholder."""
    missing = [name for name in TILE_PLACEHOLDERS if name not in template]
    if missing:
        raise InputError(
            f"--tiles {template!r} lacks {', '.join(missing)}",
            hint="give an XYZ template such as https://tiles.example.org/{z}/{x}/{y}.png",
        )
    rest = template
    for name in TILE_PLACEHOLDERS:
        rest = rest.replace(name, "")
    if "{" in rest or "}" in rest:
        raise InputError(
            f"--tiles {template!r} has a placeholder other than {{z}}, {{x}} and {{y}}",
            hint="write one tile server's URL, without {s} or similar",
        )
    if any(ch.isspace() or ord(ch) < 0x20 for ch in template):
        raise InputError(f"--tiles {template!r} contains whitespace or control characters")
    return template


def encoding_to_page(encoding: Encoding, *, source: str, tiles: str | None = None) -> ReportPage:
    """The page for ``hexpsi encode``: every covered cell, grouped by the features covering it."""
    owners = encoding.features_by_cell()
    return ReportPage(
        title=f"hexpsi encode: {source}",
        summary=(
            f"{len(encoding.features)} feature(s) cover {len(encoding.cells):,} cell(s) "
            f"at resolution {encoding.resolution}, {encoding.area_km2:.3f} km²."
        ),
        cells=tuple(PageCell(cell, CellRole.COVERED, tuple(ids)) for cell, ids in owners.items()),
        targets=tuple(PageTarget(f.id, len(f.cells)) for f in encoding.features),
        facts=(
            ("Input", source),
            ("Resolution", str(encoding.resolution)),
            ("Cells", f"{len(encoding.cells):,}"),
            ("Area", f"{encoding.area_km2:.3f} km²"),
            ("Features", str(len(encoding.features))),
            *((("Base map", tiles),) if tiles else ()),
        ),
        tiles=tiles,
    )


TargetResult: TypeAlias = tuple[bool, Collection[int]]
"""A target's verdict in a check: whether it conflicts, and its strike cells (its cover)."""


def check_to_page(
    report: CheckReport,
    targets: Mapping[FeatureId, TargetResult],
    *,
    tiles: str | None = None,
    times: Sequence[tuple[FeatureId, float, float, int]] = (),
) -> ReportPage:
    """The page for ``hexpsi check``: the strike cells, the conflicting ones marked.

    ``targets`` maps each strike feature's id, in input order, to its conflict
    flag and its cells (every one a strike cell of the report); a check of bare
    cells passes an empty mapping. A target's conflicting cells are its cells
    among the report's conflicting cells.
    """
    result = report.result
    descriptor = report.descriptor.descriptor
    conflicting = result.conflicting_cells
    owners: dict[int, list[FeatureId]] = {cell: [] for cell in sorted(report.strike_cells)}
    page_targets = []
    for target_id, (conflict, cells) in targets.items():
        outside = set(cells) - report.strike_cells
        if outside:
            raise ValueError(f"target {target_id!r} has {len(outside)} cell(s) outside the strike")
        for cell in cells:
            owners[cell].append(target_id)
        page_targets.append(
            PageTarget(
                id=target_id,
                cells=len(set(cells)),
                conflicting=len(conflicting.intersection(cells)),
                verdict=Verdict.CONFLICT if conflict else Verdict.CLEAR,
            )
        )
    verdict = Verdict.CONFLICT if result.conflict else Verdict.CLEAR
    strike = len(report.strike_cells)
    return ReportPage(
        title=f"hexpsi check against {report.peer}",
        summary=(
            f"{len(conflicting & report.strike_cells):,} of {strike:,} strike cells "
            f"conflict with {report.peer}'s protected positions."
        ),
        verdict=verdict,
        cells=tuple(
            PageCell(
                cell,
                CellRole.CONFLICT if cell in conflicting else CellRole.STRIKE,
                tuple(ids),
            )
            for cell, ids in owners.items()
        ),
        targets=tuple(page_targets),
        facts=(
            ("Peer", report.peer),
            ("Verdict", str(verdict)),
            ("Conflicting cells", f"{len(conflicting & report.strike_cells):,} of {strike:,}"),
            (
                "Tokens",
                f"{len(result.conflicting_tokens):,} of {result.tokens_sent:,} hit, "
                f"{result.elements_sent:,} padded elements sent",
            ),
            ("Epoch sequence", str(descriptor.sequence)),
            ("Epoch id", result.epoch_id.hex()),
            ("Epoch created", utc_time(descriptor.created_at)),
            ("Epoch valid until", utc_time(descriptor.valid_until)),
            ("Resolution", str(descriptor.res)),
            ("Checked at", utc_time(report.received_at)),
            ("Receipt", report.receipt_id),
            ("Area charged", f"{result.receipt.area_km2:.2f} km²"),
            *(
                (("Space-time charged", f"{report.volume_km2h:,.2f} km²·h"),)
                if report.volume_km2h
                else ()
            ),
            *(
                (
                    (
                        "Conflicting times",
                        "; ".join(
                            f"{target} {utc_time(start)} to {utc_time(end)} ({cells:,} cells)"
                            for target, start, end, cells in times
                        ),
                    ),
                )
                if times
                else ()
            ),
            ("Evidence", str(report.directory / "evidence.json")),
            *((("Base map", tiles),) if tiles else ()),
        ),
        tiles=tiles,
    )
