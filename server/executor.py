"""Where the embarrassingly parallel work runs: one small interface, local pools behind it.

``protocol`` takes any order-preserving ``map``; this module makes one that
spreads chunks over the machine's cores. A cluster engine (Ray, Dask) slots in
by providing the same ``map(func, iterable)`` shape.

Threads are enough here: every chunk's time goes into libsodium calls through
ctypes, which release the GIL, so threads run the group operations truly in
parallel without pickling keys and results between processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


@contextmanager
def local_mapper(workers: int | None = None) -> Iterator[Mapper]:
    """An order-preserving parallel ``map`` over a thread pool, closed on exit."""
    count = workers or default_workers()
    if count == 1:
        yield map
        return
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="hexpsi-worker") as pool:
        yield pool.map
