"""hexpsi against OpenMined PSI, from one ``hexpsi bench`` run: the ratios and their targets.

Every ratio is formed from workloads measured in the same invocation on the
same machine, never from figures carried over from elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Results = Mapping[str, Mapping[str, object]]


@dataclass(frozen=True)
class Comparison:
    name: str
    description: str
    value: float
    target: str
    met: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "description": self.description,
            "value": round(self.value, 3),
            "target": self.target,
            "met": self.met,
        }


def _number(results: Results, workload: str, key: str = "seconds") -> float | None:
    value = results.get(workload, {}).get(key)
    return float(value) if isinstance(value, int | float) else None


def compare(results: Results) -> dict[str, Comparison]:
    """The comparisons whose workloads were all measured in ``results``."""
    found: dict[str, Comparison] = {}

    def add(name: str, description: str, value: float | None, target: str, met: bool) -> None:
        if value is not None:
            found[name] = Comparison(name, description, value, target, met)

    snapshot = _number(results, "snapshot_1m")
    setup = _number(results, "openmined_setup_1m")
    if snapshot and setup:
        speedup = setup / snapshot
        add(
            "snapshot_speedup",
            "OpenMined setup time / hexpsi snapshot time, 1,000,000 items",
            speedup,
            ">= 2.5",
            speedup >= 2.5,
        )
    limit = _number(results, "snapshot_1m", "vs_primitive_limit")
    if limit is not None:
        add(
            "snapshot_vs_primitive_limit",
            "hexpsi snapshot time / (tokens x (hash-to-group + scalar mult) / cores)",
            limit,
            "<= 1.4",
            limit <= 1.4,
        )
    online = _number(results, "check_1k_vs_1m")
    baseline = _number(results, "openmined_online_1k_vs_1m")
    if online and baseline:
        ratio = online / baseline
        add(
            "check_online_ratio",
            "hexpsi verified 1k check (gRPC, DLEQ proofs) / OpenMined 1k request (in process)",
            ratio,
            "<= 1.0",
            ratio <= 1.0,
        )
    mutual = _number(results, "mutual_100k")
    cardinality = _number(results, "openmined_cardinality_100k")
    if mutual and cardinality:
        speedup = cardinality / mutual
        add(
            "mutual_speedup",
            "OpenMined cardinality time / hexpsi mutual time, 100,000 x 100,000",
            speedup,
            ">= 2.5",
            speedup >= 2.5,
        )
    ours = _number(results, "setcode_encode_1m", "bytes_per_value")
    theirs = _number(results, "openmined_setup_1m", "bytes_per_item")
    if ours and theirs:
        ratio = ours / theirs
        add(
            "snapshot_bytes_ratio",
            "hexpsi bytes per value / OpenMined GCS bytes per item (fpr 1e-9, 1,000 queries)",
            ratio,
            "<= 1.05",
            ratio <= 1.05,
        )
        padded = _number(results, "setcode_encode_1m", "bytes_per_real_token_padded")
        if padded:
            add(
                "snapshot_bytes_per_real_token_ratio",
                "the same with hexpsi's size-bucket padding charged to the real tokens",
                padded / theirs,
                "<= 1.05",
                padded / theirs <= 1.05,
            )
    return found
