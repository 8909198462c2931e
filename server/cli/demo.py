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
            "TLS and check two planned strikes: one at At-Tanf (must conflict) and one more "
            "than 300 km from every protected position (must be clear)."
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
    from hexpsi.server.cli.formats import sorted_cell_strs

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
                "area_charged_km2": check.report.result.receipt.area_km2,
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


def demo_text(run: DemoRun) -> str:
    lines = ["hexpsi demo: the At-Tanf scenario, two peers on loopback with mutual TLS", ""]
    for name, facts in run.nodes.items():
        lines.append(
            f"  {name:<10} protects {facts['protected_cells']} cells (res 9), "
            f"snapshot padded to {facts['snapshot_values']} values, serving on {facts['address']}"
        )
    lines.append("")
    for check in run.checks:
        result = check.report.result
        verdict = "CONFLICT" if result.conflict else "CLEAR"
        ok = "as expected" if result.conflict == check.expected_conflict else "UNEXPECTED"
        lines.append(
            f"  russia checks {check.name:<15} against coalition: {verdict:<8} ({ok}) "
            f"{len(result.conflicting_cells)}/{len(check.report.strike_cells)} strike cells "
            f"conflict, {result.tokens_sent} tokens in {result.elements_sent} padded elements, "
            f"{check.seconds:.2f}s"
        )
        lines.append(
            f"      receipt {check.report.receipt_id}, {result.receipt.area_km2:.1f} km² "
            f"charged, evidence {'verified' if check.evidence_verified else 'FAILED'} "
            "by a third party"
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
