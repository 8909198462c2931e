"""Turn ``hexpsi bench --json`` output into the README's performance table.

``hexpsi bench --json > bench.json && python -m hexpsi.server.bench.report bench.json``
prints Markdown, so the README's figures are regenerated from a run rather than
copied by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _extras(stats: dict[str, object]) -> str:
    shown = {
        key: value
        for key, value in stats.items()
        if key not in {"seconds", "min", "max", "runs"} and not isinstance(value, str)
    }
    return ", ".join(f"{key} {value}" for key, value in shown.items())


def table(payload: dict[str, dict[str, dict[str, object]]]) -> str:
    lines = [
        "| workload | median | min – max | runs | details |",
        "|---|---|---|---|---|",
    ]
    for name, stats in payload["workloads"].items():
        median, low, high = (float(str(stats[key])) for key in ("seconds", "min", "max"))
        lines.append(
            f"| `{name}` | {median:.3f} s | {low:.3f} – {high:.3f} s "
            f"| {stats['runs']} | {_extras(stats)} |"
        )
    comparisons = payload.get("comparisons", {})
    if comparisons:
        lines += ["", "| comparison | value | target | met |", "|---|---|---|---|"]
        for name, item in comparisons.items():
            lines.append(
                f"| {item['description']} (`{name}`) | {item['value']} | {item['target']} "
                f"| {'yes' if item['met'] else 'no'} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table(json.loads(Path(sys.argv[1]).read_text())))
