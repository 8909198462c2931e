"""The mutual check end to end: two nodes, real gRPC with mutual TLS on loopback.

``mutual_100k`` compares two maps of 100,000 res-9 cells each (one third of
them shared) exactly as ``hexpsi mutual`` does: the responder runs ``hexpsi
serve`` in a child process, the proposer's client runs here, and the 2 cores
are shared by both sides (on two machines each side would have its own).
Quick mode uses 2,000 cells a side.

The floor on 2 cores: 4 set-sized scalar-multiplication passes and 2 hash
passes (about 86 and 20 us per element on one core), plus validating both
double-blinded sets. ``proposer_cpu_s`` in the extras is the proposer's CPU
time for the last run; the ``*_s`` phases are the proposer's view of it.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import os
import sys
import time
from typing import TypeVar

import h3.api.basic_int as h3

from hexpsi.protocol.crypto.group import random_scalar
from hexpsi.protocol.mutual.sets import Slot, batched, blind_slots
from hexpsi.server.bench.harness import Extra, RunOnce, Workload, run_workloads
from hexpsi.server.bench.loopback import RESPONDER, ServedPair
from hexpsi.server.clients.mutual import run_mutual
from hexpsi.server.workers import default_workers, local_mapper

RES = 9
CENTER = h3.latlng_to_cell(33.50, 38.62, RES)
"""At-Tanf; both maps are hexagonal spirals of cells around points near it."""
T = TypeVar("T")


def spiral(center: int, count: int) -> list[int]:
    """The ``count`` cells nearest ``center``, ring by ring."""
    cells: list[int] = []
    radius = 0
    while len(cells) < count:
        ring = [center] if radius == 0 else sorted(h3.grid_ring(center, radius))
        cells.extend(ring[: count - len(cells)])
        radius += 1
    return cells


def maps(count: int) -> tuple[list[int], list[int]]:
    """Two maps of ``count`` cells whose centres are far enough apart to share about a third."""
    responder = spiral(CENTER, count)
    radius = h3.grid_distance(CENTER, responder[-1])
    shifted = sorted(h3.grid_ring(CENTER, radius))[0]
    return responder, spiral(shifted, count)


class LoopbackPair:
    """The two maps on a :class:`ServedPair`: responder in a child process, proposer here."""

    def __init__(self, count: int) -> None:
        responder_cells, proposer_cells = maps(count)
        self.shared = len(set(responder_cells) & set(proposer_cells))
        self._pair = ServedPair(responder_cells, proposer_cells)
        self.proposer = self._pair.proposer

    def run_once(self) -> Extra:
        cpu = time.process_time()
        report = asyncio.run(run_mutual(self.proposer, RESPONDER))
        if report.result.shared_cells != self.shared:
            raise AssertionError(
                f"mutual check counted {report.result.shared_cells} shared cells, not {self.shared}"
            )
        extra: Extra = {
            "cells_each": report.result.own_cells,
            "shared_cells": report.result.shared_cells,
            "padded_sizes": f"{report.result.receipt.statement.proposer_set_size}/"
            f"{report.result.receipt.statement.responder_set_size}",
            "proposer_cpu_s": round(time.process_time() - cpu, 2),
        }
        extra.update({name: round(value, 3) for name, value in report.timings.items()})
        return extra

    def close(self) -> None:
        self._pair.close()


_PAIRS: list[LoopbackPair] = []


def _prepare(count: int) -> RunOnce:
    for pair in _PAIRS:
        pair.close()
    _PAIRS.clear()
    pair = LoopbackPair(count)
    _PAIRS.append(pair)
    atexit.register(pair.close)  # the harness has no teardown; stop the server at exit
    return pair.run_once


def _prepare_100k(quick: bool) -> RunOnce:
    return _prepare(2_000 if quick else 100_000)


def _prepare_thread_scaling(quick: bool) -> RunOnce:
    """The own-set blinding (hash, then scalar mult) on one worker thread, then on all cores."""
    slots: list[Slot] = list(spiral(CENTER, 4_000 if quick else 20_000))
    key = random_scalar(os.urandom)
    blind = functools.partial(blind_slots, key)
    workers = default_workers()

    def run() -> Extra:
        started = time.perf_counter()
        batched(map, blind, slots)
        one = time.perf_counter() - started
        with local_mapper(workers) as mapper:
            started = time.perf_counter()
            batched(mapper, blind, slots)
            many = time.perf_counter() - started
        return {
            "elements": len(slots),
            "workers": workers,
            "one_worker_us_per_element": round(one / len(slots) * 1e6, 1),
            "all_workers_us_per_element": round(many / len(slots) * 1e6, 1),
            "speedup": round(one / many, 2),
        }

    return run


WORKLOADS = [
    Workload(
        "mutual_100k",
        "mutual check of 100,000 x 100,000 res-9 cells over gRPC with mutual TLS on "
        "loopback, the responder in its own process (quick: 2,000 cells a side)",
        _prepare_100k,
        runs=5,
        interleave="mutual_100k",
    ),
    Workload(
        "mutual_blind_threads",
        "blinding 20,000 cells (hash to group, then scalar mult) on one worker thread and "
        "then on one per core through the thread-pool map (quick: 4,000)",
        _prepare_thread_scaling,
        runs=3,
    ),
]


def main(argv: list[str]) -> int:
    """``python -m hexpsi.server.bench.mutual [--quick] [NAME ...]``: run workloads, print JSON."""
    names = [arg for arg in argv if not arg.startswith("-")]
    chosen = [w for w in WORKLOADS if not names or w.name in names]
    try:
        results = run_workloads(chosen, quick="--quick" in argv)
    finally:
        for pair in _PAIRS:
            pair.close()
        _PAIRS.clear()
    for name, stats in results.items():
        print(json.dumps({name: stats.as_dict()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
