"""``hexpsi bench``: run the standard workloads and report medians with min and max."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hexpsi.server.bench.harness import Stats
    from hexpsi.server.cli import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure the standard workloads (medians of several runs)",
        description=(
            "Run hexpsi's benchmark workloads and print the median wall-clock time of several "
            "runs with min and max. Progress goes to stderr. Workloads that compare against "
            "OpenMined PSI need the bench extra: pip install -e '.[bench]'."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--only", metavar="NAME,...", help="comma-separated workload names (default: all)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and one run each (a smoke test)"
    )
    parser.add_argument(
        "--runs", type=int, metavar="N", help="runs per workload (default: each's own)"
    )
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    parser.set_defaults(func=run, libsodium=True)


def _format(name: str, stats: Stats) -> str:
    extras = ", ".join(f"{key}={value}" for key, value in stats.extra.items())
    return (
        f"{name:<28} median {stats.seconds:9.3f}s  (min {stats.min:.3f}, max {stats.max:.3f}, "
        f"{stats.runs} runs){'  ' + extras if extras else ''}"
    )


def run(args: argparse.Namespace) -> int:
    from hexpsi.protocol.errors import InputError
    from hexpsi.server.bench.compare import compare
    from hexpsi.server.bench.harness import discover, run_workloads

    workloads = discover()
    if args.list:
        for name, workload in sorted(workloads.items()):
            print(f"{name:<28} {workload.description}")
        return 0
    names = list(workloads)
    if args.only:
        names = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in names if name not in workloads]
        if unknown:
            raise InputError(
                f"unknown workload(s): {', '.join(unknown)}",
                hint=f"known: {', '.join(sorted(workloads))}",
            )
    if args.runs is not None and args.runs < 1:
        raise InputError(f"--runs must be at least 1, got {args.runs}")
    results = run_workloads([workloads[n] for n in names], quick=args.quick, runs=args.runs)
    comparisons = compare({name: stats.as_dict() for name, stats in results.items()})
    if args.json:
        payload = {
            "quick": args.quick,
            "workloads": {k: v.as_dict() for k, v in results.items()},
            "comparisons": {k: c.as_dict() for k, c in comparisons.items()},
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        for name, stats in results.items():
            print(_format(name, stats))
        if comparisons and args.quick:
            print("(quick sizes: the comparisons below are a smoke test, not the measurement)")
        for name, comparison in comparisons.items():
            verdict = "met" if comparison.met else "NOT met"
            print(
                f"{name:<28} {comparison.value:.3f} (target {comparison.target}: {verdict})  "
                f"{comparison.description}"
            )
    return 0
