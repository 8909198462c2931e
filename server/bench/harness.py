"""Measure a workload several times and report the median with min and max.

Machines here are shared and noisy, so the median of several runs is the figure
we quote, and baselines are measured in the same invocation as what they are
compared with.
"""

from __future__ import annotations

import importlib
import pkgutil
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

Extra = dict[str, float | int | str]
RunOnce = Callable[[], Extra | None]


@dataclass(frozen=True)
class Workload:
    """A named benchmark: ``prepare(quick)`` does untimed setup and returns the timed call."""

    name: str
    description: str
    prepare: Callable[[bool], RunOnce]
    runs: int = 5


@dataclass
class Stats:
    """Median, min and max wall-clock seconds over ``runs`` timed calls."""

    seconds: float
    min: float
    max: float
    runs: int
    extra: Extra = field(default_factory=dict)

    def as_dict(self) -> dict[str, float | int | str]:
        return {"seconds": self.seconds, "min": self.min, "max": self.max, "runs": self.runs} | (
            self.extra
        )


def measure(run_once: RunOnce, runs: int) -> Stats:
    """Time ``run_once`` ``runs`` times; the extras of the last run are kept."""
    times: list[float] = []
    extra: Extra = {}
    for _ in range(runs):
        start = time.perf_counter()
        result = run_once()
        times.append(time.perf_counter() - start)
        if result:
            extra = result
    return Stats(statistics.median(times), min(times), max(times), runs, extra)


def discover() -> dict[str, Workload]:
    """Every workload defined by a module of this package, by name."""
    package = importlib.import_module("server.bench")
    found: dict[str, Workload] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in {"harness", "__main__", "compare", "report", "loopback"}:
            continue
        module = importlib.import_module(f"server.bench.{info.name}")
        for workload in getattr(module, "WORKLOADS", []):
            found[workload.name] = workload
    return found


def run_workloads(
    workloads: Iterable[Workload], *, quick: bool, runs: int | None = None
) -> dict[str, Stats]:
    """Run each workload; progress goes to stderr, results come back as values."""
    results: dict[str, Stats] = {}
    for workload in workloads:
        count = runs or (1 if quick else workload.runs)
        print(f"bench: {workload.name} ({count} runs)...", file=sys.stderr, flush=True)
        run_once = workload.prepare(quick)
        results[workload.name] = measure(run_once, count)
    return results
