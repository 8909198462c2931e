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


Measure = tuple[str, str]
"""(workload, extra key) naming one measured number; the key ``seconds`` is the median."""
ONE: Measure = ("", "")
"""The denominator of a figure that is already a ratio."""


@dataclass(frozen=True)
class Spec:
    """value = numerator / denominator; met when ``value`` is at least or at most ``bound``."""

    name: str
    description: str
    numerator: Measure
    denominator: Measure
    at_least: bool
    bound: float


SPECS = (
    Spec(
        "snapshot_speedup",
        "OpenMined setup time / hexpsi snapshot time, 1,000,000 items",
        ("openmined_setup_1m", "seconds"),
        ("snapshot_1m", "seconds"),
        True,
        2.5,
    ),
    Spec(
        "snapshot_vs_primitive_limit",
        "hexpsi snapshot time / (tokens x (hash-to-group + scalar mult) / cores)",
        ("snapshot_1m", "vs_primitive_limit"),
        ONE,
        False,
        1.4,
    ),
    Spec(
        "check_online_ratio",
        "hexpsi verified 1k check (gRPC, DLEQ proofs) / OpenMined 1k request (in process)",
        ("check_1k_vs_1m", "seconds"),
        ("openmined_online_1k_vs_1m", "seconds"),
        False,
        1.0,
    ),
    Spec(
        "mutual_speedup",
        "OpenMined cardinality time / hexpsi mutual time, 100,000 x 100,000",
        ("openmined_cardinality_100k", "seconds"),
        ("mutual_100k", "seconds"),
        True,
        2.5,
    ),
    Spec(
        "snapshot_bytes_ratio",
        "hexpsi bytes per value / OpenMined GCS bytes per item (fpr 1e-9, 1,000 queries)",
        ("setcode_encode_1m", "bytes_per_value"),
        ("openmined_setup_1m", "bytes_per_item"),
        False,
        1.05,
    ),
    Spec(
        "snapshot_bytes_per_real_token_ratio",
        "the same with hexpsi's size-bucket padding charged to the real tokens",
        ("setcode_encode_1m", "bytes_per_real_token_padded"),
        ("openmined_setup_1m", "bytes_per_item"),
        False,
        1.05,
    ),
)


def compare(results: Results) -> dict[str, Comparison]:
    """The comparisons whose workloads were all measured in ``results``."""
    found: dict[str, Comparison] = {}
    for spec in SPECS:
        top = _number(results, *spec.numerator)
        bottom = 1.0 if spec.denominator == ONE else _number(results, *spec.denominator)
        if not top or not bottom:
            continue
        value = top / bottom
        target = f"{'>=' if spec.at_least else '<='} {spec.bound}"
        met = value >= spec.bound if spec.at_least else value <= spec.bound
        found[spec.name] = Comparison(spec.name, spec.description, value, target, met)
    return found
