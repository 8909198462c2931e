"""``hexpsi demo``: the seeds scenario end to end on two loopback peers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hexpsi.server.cli import Subparsers
    from hexpsi.server.demo.scenario import DemoRun


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the At-Tanf scenario: two nodes on loopback, mutual TLS, real checks",
        description=(
            "Create two nodes (coalition, russia) in a temporary directory, pin them to each "
            "other, load the seeds/ positions, start both gRPC servers on loopback with mutual "
            "TLS and check planned strikes: one at At-Tanf (must conflict), one more than 300 "
            "km from every protected position (must be clear), and one on the road a coalition "
            "convoy drives 3 h to 5 h from now, in a later window (must be clear) and while it "
            "passes (must conflict)."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--seeds",
        type=Path,
        metavar="DIR",
        help="a directory of scenario files to use instead of the ones shipped with hexpsi",
    )
    parser.set_defaults(func=run, libsodium=True)


def demo_json(run: DemoRun) -> dict[str, object]:
    from hexpsi.server.cli.formats import sorted_cell_strs, utc_time

    return {
        "as_expected": run.as_expected,
        "nodes": run.nodes,
        "checks": [
            {
                "name": check.name,
                "peer": check.report.peer,
                "conflict": check.report.result.conflict,
                "expected_conflict": check.expected_conflict,
                "conflicting_cells": sorted_cell_strs(check.report.result.conflicting_cells),
                "strike_cells": len(check.report.strike_cells),
                "tokens_sent": check.report.result.tokens_sent,
                "elements_sent": check.report.result.elements_sent,
                "area_charged_km2": check.report.area_km2,
                "volume_charged_km2h": check.report.volume_km2h,
                "window": None
                if check.window is None
                else {"start": utc_time(check.window.start), "end": utc_time(check.window.end)},
                "receipt": check.report.receipt_id,
                "evidence_verified": check.evidence_verified,
                "seconds": check.seconds,
            }
            for check in run.checks
        ],
        "mutual": None
        if run.mutual is None
        else {
            "peer": run.mutual.peer,
            "shared_cells": run.mutual.result.shared_cells,
            "area_km2": run.mutual.result.area_km2,
            "receipt": run.mutual.receipt_id,
            "seconds": run.mutual_seconds,
        },
        "audit_entries": run.audit_entries,
        "timings": run.timings,
    }


def _clock(moment: float) -> str:
    """``14:15``: a time of day in UTC, for the demo's one-day story."""
    from hexpsi.protocol.times import rfc3339

    return rfc3339(moment)[11:16]


def demo_text(run: DemoRun) -> str:
    lines = ["hexpsi demo: the At-Tanf scenario, two peers on loopback with mutual TLS", ""]
    for name, facts in run.nodes.items():
        timed = f" and {facts['timed_cells']} timed" if facts.get("timed_cells") else ""
        lines.append(
            f"  {name:<10} protects {facts['protected_cells']}{timed} cells (res 9), "
            f"snapshot padded to {facts['snapshot_values']} values, serving on {facts['address']}"
        )
    lines.append("")
    for check in run.checks:
        result = check.report.result
        verdict = "CONFLICT" if result.conflict else "CLEAR"
        ok = "as expected" if result.conflict == check.expected_conflict else "UNEXPECTED"
        lines.append(
            f"  russia checks {check.name:<17} against coalition: {verdict:<8} ({ok}) "
            f"{len(result.conflicting_cells)}/{len(check.report.strike_cells)} strike cells "
            f"conflict, {result.tokens_sent} tokens in {result.elements_sent} padded elements, "
            f"{check.seconds:.2f}s"
        )
        if check.window is not None:
            when = "; ".join(
                f"{_clock(hit.interval.start)}-{_clock(hit.interval.end)}"
                for hit in result.timed_hits
            )
            lines.append(
                f"      window {_clock(check.window.start)}-{_clock(check.window.end)} UTC"
                + (f", conflicting {when}" if when else "")
            )
        lines.append(
            f"      receipt {check.report.receipt_id}, {check.report.area_km2:.1f} km² and "
            f"{check.report.volume_km2h:,.0f} km²·h charged, evidence "
            f"{'verified' if check.evidence_verified else 'FAILED'} by a third party"
        )
    if run.mutual is not None:
        shared = run.mutual.result
        lines.append("")
        lines.append(
            f"  russia and coalition compare whole maps (mutual proximity): "
            f"{shared.shared_cells} shared cells ({shared.area_km2:.2f} km²), "
            f"receipt {run.mutual.receipt_id} signed by both, {run.mutual_seconds:.2f}s"
        )
    lines.append("")
    for name, count in run.audit_entries.items():
        lines.append(f"  {name} audit log: {count} signed entries, chain verified")
    total = sum(run.timings.values()) + sum(c.seconds for c in run.checks) + run.mutual_seconds
    lines.append(f"\n  done in {total:.2f}s")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from hexpsi.server.demo.scenario import run_demo_in_tempdir

    result = run_demo_in_tempdir(seeds=args.seeds)
    if args.json:
        sys.stdout.write(json.dumps(demo_json(result), indent=2) + "\n")
    else:
        sys.stdout.write(demo_text(result))
    return 0 if result.as_expected else 1
