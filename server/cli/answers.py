"""A check's answer as an operator reads it: text, JSON and GeoJSON, per target and per peer.

Everything here is built from finished reports (or, for ``--dry-run``, from a
plan); nothing talks to a peer. Cells are H3 index strings and times RFC 3339
UTC at this edge.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hexpsi.server.cli.formats import (
    cell_geometry,
    cell_str,
    feature,
    outline_geometry,
    sorted_cell_strs,
    utc_time,
)

if TYPE_CHECKING:
    from hexpsi.protocol.check.targets import TargetVerdict
    from hexpsi.protocol.epoch.descriptor import SignedDescriptor
    from hexpsi.server.clients.check import CheckPlan, CheckReport

CONFLICT, CLEAR = "CONFLICT", "CLEAR"


def epoch_json(descriptor: SignedDescriptor) -> dict[str, object]:
    """The peer's epoch: id, sequence and when it was made and until when it holds."""
    d = descriptor.descriptor
    return {
        "id": d.epoch_id.hex(),
        "sequence": d.sequence,
        "created": utc_time(d.created_at),
        "valid_until": utc_time(d.valid_until),
    }


def epoch_text(descriptor: SignedDescriptor) -> str:
    epoch = epoch_json(descriptor)
    return (
        f"epoch {epoch['sequence']} ({epoch['id']}), created {epoch['created']}, "
        f"valid until {epoch['valid_until']}"
    )


def targets(report: CheckReport) -> tuple[TargetVerdict, ...]:
    """The verdict of every target of the strike, in input order."""
    from hexpsi.protocol.check.targets import target_verdicts

    d = report.descriptor.descriptor
    horizon = d.time_tree.horizon if d.time_tree is not None else None
    return target_verdicts(
        None if report.zone is None else report.zone.features,
        res=d.res,
        strike_cells=report.strike_cells,
        conflicting_cells=report.result.conflicting_cells,
        standing_cells=report.result.standing_cells,
        timed_hits=report.result.timed_hits,
        horizon=horizon,
    )


def windows_json(target: TargetVerdict) -> list[dict[str, object]]:
    """When the target conflicts: ``[{"start", "end", "cells"}]`` in time order."""
    return [
        {
            "start": utc_time(interval.start),
            "end": utc_time(interval.end),
            "cells": sorted_cell_strs(cells),
        }
        for interval, cells in target.windows
    ]


def report_json(report: CheckReport) -> dict[str, object]:
    """The ``--json`` object of one completed check."""
    result = report.result
    return {
        "peer": report.peer,
        "epoch": epoch_json(report.descriptor),
        "conflict": result.conflict,
        "conflicting_cells": sorted_cell_strs(result.conflicting_cells),
        "conflicting_tokens": len(result.conflicting_tokens),
        "tokens_sent": result.tokens_sent,
        "elements_sent": result.elements_sent,
        "strike_cells": len(report.strike_cells),
        "checks": len(report.receipts),
        "area_charged_km2": report.area_km2,
        "volume_charged_km2h": report.volume_km2h,
        "receipt": report.receipt_id,
        "receipts": [receipt.receipt_id for receipt in report.receipts],
        "evidence": str(report.directory / "evidence.json"),
        "features": [
            {
                "id": target.id,
                "conflict": target.conflict,
                "cells": sorted_cell_strs(target.cells),
                "conflicting_cells": sorted_cell_strs(target.conflicting_cells),
                "windows": windows_json(target),
            }
            for target in targets(report)
        ],
        "timings": report.timings,
    }


def report_text(report: CheckReport) -> str:
    result = report.result
    verdict = CONFLICT if result.conflict else CLEAR
    lines = [
        f"{verdict}: {len(result.conflicting_cells)} of {len(report.strike_cells)} strike cells "
        f"conflict with {report.peer}'s protected positions "
        f"({len(result.conflicting_tokens)} of {result.tokens_sent} tokens hit)"
    ]
    verdicts = targets(report)
    hit = [t for t in verdicts if t.conflict]
    if hit:
        named = ", ".join(
            f"{t.id} ({len(t.conflicting_cells)} of {len(t.cells)} cells)" for t in hit
        )
        lines.append(f"  targets in conflict: {named}")
        lines += [
            f"    {t.id}: {len(cells)} cells from {utc_time(interval.start)} "
            f"to {utc_time(interval.end)}"
            for t in hit
            for interval, cells in t.windows
        ]
    if len(verdicts) > 1 or not hit:
        clear = [str(t.id) for t in verdicts if not t.conflict]
        lines.append(f"  clear: {', '.join(clear) if clear else 'none'}")
    receipts = ", ".join(r.receipt_id for r in report.receipts)
    checks = f" ({len(report.receipts)} checks)" if len(report.receipts) > 1 else ""
    lines.append(
        f"{epoch_text(report.descriptor)}; receipt {receipts}{checks}, "
        f"area charged {report.area_km2:.2f} km²{_volume(report.volume_km2h)}"
    )
    return "\n".join(lines) + "\n"


def _volume(volume_km2h: float) -> str:
    return f" and {volume_km2h:,.2f} km²·h" if volume_km2h else ""


def report_html(report: CheckReport, *, tiles: str | None) -> str:
    """The self-contained HTML page of one check (map, verdicts, peer, epoch, receipt)."""
    from hexpsi.server.cli.html_report import page_to_html
    from hexpsi.server.cli.report_page import check_to_page

    verdicts = targets(report) if report.zone is not None else ()
    times = [
        (t.id, interval.start, interval.end, len(cells))
        for t in targets(report)
        for interval, cells in t.windows
    ]
    page = check_to_page(
        report, {t.id: (t.conflict, t.cells) for t in verdicts}, tiles=tiles, times=times
    )
    return page_to_html(page)


def plan_json(plan: CheckPlan) -> dict[str, object]:
    """The ``--dry-run --json`` object: what a check would send and cost."""
    return {
        "peer": plan.peer,
        "dry_run": True,
        "epoch": epoch_json(plan.descriptor),
        "strike_cells": len(plan.strike_cells),
        "tokens": plan.tokens,
        "padded_elements": plan.padded,
        "checks": len(plan.parts),
        "area_km2": plan.area_km2,
        "groups": [
            [
                {"resolution": g.resolution, "tokens": g.tokens, "padded": g.padded}
                for g in part.groups
            ]
            for part in plan.parts
        ],
    }


def plan_text(plan: CheckPlan) -> str:
    checks = "1 check" if len(plan.parts) == 1 else f"{len(plan.parts)} checks"
    return (
        f"dry run against {plan.peer}: {len(plan.strike_cells)} strike cells, {plan.tokens} "
        f"tokens in {plan.padded} padded elements ({checks}), would be charged "
        f"{plan.area_km2:.2f} km² of its budget; nothing was sent\n"
        f"{epoch_text(plan.descriptor)}\n"
    )


def reports_geojson(reports: Sequence[CheckReport], *, outline: bool) -> str:
    """Every target of every peer's check as GeoJSON Features.

    Each Feature carries ``peer``, ``epoch``, ``receipt``, ``feature_id`` and
    ``role``: ``conflict`` for conflicting cells, ``strike`` for the others (one
    hexagon per cell); with ``outline``, ``strike`` is the target's whole outline
    and ``conflict`` the outline of its conflicting cells. A conflicting cell's
    Feature also carries ``times``, ``[[start, end], ...]`` (RFC 3339): when it
    conflicts; the conflict outline carries the target's ``windows``.
    """
    features: list[dict[str, object]] = []
    for report in reports:
        common: dict[str, object] = {
            "peer": report.peer,
            "epoch": report.result.epoch_id.hex(),
            "receipt": report.receipt_id,
        }
        for target in targets(report):
            keyed = {**common, "feature_id": target.id}
            if outline:
                if target.cells:
                    strike = {**keyed, "role": "strike"}
                    features.append(feature(outline_geometry(target.cells), strike))
                if target.conflicting_cells:
                    conflict = {**keyed, "role": "conflict", "windows": windows_json(target)}
                    features.append(feature(outline_geometry(target.conflicting_cells), conflict))
                continue
            for cell in sorted(target.cells):
                properties: dict[str, object] = {**keyed, "role": "strike", "cell": cell_str(cell)}
                if cell in target.conflicting_cells:
                    properties["role"] = "conflict"
                    properties["times"] = [
                        [utc_time(interval.start), utc_time(interval.end)]
                        for interval, cells in target.windows
                        if cell in cells
                    ]
                features.append(feature(cell_geometry(cell), properties))
    collection = {"type": "FeatureCollection", "features": features}
    return json.dumps(collection, allow_nan=False) + "\n"


def combined_json(
    answers: Mapping[str, dict[str, object] | str], *, dry_run: bool
) -> dict[str, object]:
    """Several peers at once: each peer's object, or ``{"peer", "error"}``."""
    results: list[dict[str, object]] = [
        {"peer": peer, "error": answer} if isinstance(answer, str) else answer
        for peer, answer in answers.items()
    ]
    if dry_run:
        return {"dry_run": True, "results": results}
    conflict = any(result.get("conflict") is True for result in results)
    return {"conflict": conflict, "results": results}
