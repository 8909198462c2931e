"""Measure a workload several times and report the median with min and max.

Machines here are shared and noisy, so the median of several runs is the figure
we quote, and baselines are measured in the same invocation as what they are
compared with. Workloads that share an ``interleave`` key (hexpsi's and
OpenMined's counterparts) are prepared together and then take turns, one run
each, so both sides of a ratio see the same minutes of the machine rather than
a quiet stretch for one and a busy one for the other.
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
    interleave: str = ""
    """Workloads with the same non-empty key alternate their runs (see above)."""


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


class _Timings:
    """One workload's timed runs so far; the extras of the last run are kept."""

    def __init__(self, run_once: RunOnce, runs: int) -> None:
        self.run_once = run_once
        self.runs = runs
        self.times: list[float] = []
        self.extra: Extra = {}

    def run(self) -> None:
        start = time.perf_counter()
        result = self.run_once()
        self.times.append(time.perf_counter() - start)
        if result:
            self.extra = result

    def stats(self) -> Stats:
        times = self.times
        return Stats(statistics.median(times), min(times), max(times), len(times), self.extra)


def measure(run_once: RunOnce, runs: int) -> Stats:
    """Time ``run_once`` ``runs`` times; the extras of the last run are kept."""
    timings = _Timings(run_once, runs)
    for _ in range(runs):
        timings.run()
    return timings.stats()


def discover() -> dict[str, Workload]:
    """Every workload defined by a module of this package, by name."""
    package = importlib.import_module("hexpsi.server.bench")
    found: dict[str, Workload] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in {"harness", "__main__", "compare", "report", "loopback"}:
            continue
        module = importlib.import_module(f"hexpsi.server.bench.{info.name}")
        for workload in getattr(module, "WORKLOADS", []):
            found[workload.name] = workload
    return found


def run_workloads(
    workloads: Iterable[Workload], *, quick: bool, runs: int | None = None
) -> dict[str, Stats]:
    """Run each workload; progress goes to stderr, results come back as values.

    Workloads sharing an ``interleave`` key run as a group where the first of
    them stands: all are prepared, then they take turns one run at a time.
    """
    chosen = list(workloads)
    results: dict[str, Stats] = {}
    for workload in chosen:
        if workload.name in results:
            continue
        group = [w for w in chosen if workload.interleave and w.interleave == workload.interleave]
        timings: dict[str, _Timings] = {}
        for member in group or [workload]:
            count = runs or (1 if quick else member.runs)
            others = [w.name for w in group if w is not member]
            turns = f", taking turns with {', '.join(others)}" if others else ""
            print(f"bench: {member.name} ({count} runs{turns})...", file=sys.stderr, flush=True)
            timings[member.name] = _Timings(member.prepare(quick), count)
        for turn in range(max(timing.runs for timing in timings.values())):
            for timing in timings.values():
                if turn < timing.runs:
                    timing.run()
        results.update({name: timing.stats() for name, timing in timings.items()})
    return {workload.name: results[workload.name] for workload in chosen}
