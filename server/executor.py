"""Where the embarrassingly parallel work runs: one small interface, local pools behind it.

``protocol`` takes any order-preserving ``map``; this module makes one that
spreads chunks over the machine's cores. A cluster engine (Ray, Dask) slots in
by providing the same ``map(func, iterable)`` shape over picklable jobs.

Two local flavours: threads, which cost nothing to start and scale well when
the work is long libsodium calls (ctypes releases the GIL during them), and
processes, which also parallelise the Python around the calls (hashing inputs,
truncating outputs) and win for big batches such as a snapshot build. Processes
are started with ``spawn`` so a pool can be made from a process that already
runs gRPC threads.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Literal

Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]
PoolKind = Literal["thread", "process"]


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


@contextmanager
def local_mapper(workers: int | None = None, *, kind: PoolKind = "thread") -> Iterator[Mapper]:
    """An order-preserving parallel ``map`` over a local pool, shut down on exit."""
    count = workers or default_workers()
    if count == 1:
        yield map
        return
    if kind == "process":
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=count, mp_context=context) as processes:
            yield processes.map
        return
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="hexpsi-worker") as threads:
        yield threads.map
