"""Where the embarrassingly parallel work runs: one pool per process, local pools behind it.

``protocol`` takes any order-preserving ``map`` (:data:`hexpsi.protocol.parallel.Mapper`);
this module makes the ones that spread work over the machine's cores.

:class:`WorkerPool` is the thread pool a running server or a command owns: the
server builds one when it starts, hands it to every service and shuts it down
when it stops; a command (``check``, ``mutual``, the demo) owns one for its
run. Threads cost nothing to start and scale when the work is long libsodium
calls (ctypes releases the GIL during them).

:func:`local_mapper` adds processes, which also parallelise the Python around
the calls (hashing inputs, truncating outputs) and win for big batches such as
a snapshot build. Processes are started with ``spawn`` so a pool can be made
from a process that already runs gRPC threads, and each loads libsodium
through :func:`hexpsi.server.sodium.load`. A cluster engine slots in by
providing the same ``map(func, iterable)`` shape over picklable jobs.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from types import TracebackType
from typing import Literal, TypeVar

from hexpsi.protocol.parallel import Mapper
from hexpsi.server import sodium

PoolKind = Literal["thread", "process"]
T = TypeVar("T")


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class WorkerPool:
    """The threads this server or command runs group work on; shut down by its owner."""

    def __init__(self, workers: int | None = None, *, name: str = "hexpsi-worker") -> None:
        self.workers = workers or default_workers()
        self._threads = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=name)

    @property
    def map(self) -> Mapper:
        """An order-preserving parallel ``map`` over the pool's threads."""
        return self._threads.map

    def shutdown(self) -> None:
        """Stop taking work and let idle threads go; running work is not waited for."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()


@contextmanager
def local_mapper(workers: int | None = None, *, kind: PoolKind = "thread") -> Iterator[Mapper]:
    """An order-preserving parallel ``map`` over a local pool, shut down on exit."""
    count = workers or default_workers()
    if count == 1:
        yield map
        return
    if kind == "process":
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=count, mp_context=context, initializer=sodium.load
        ) as processes:
            yield processes.map
        return
    with WorkerPool(count) as pool:
        yield pool.map


async def in_threads(iterator: Iterator[T]) -> AsyncIterator[T]:
    """Drive a blocking iterator from worker threads, one item at a time."""
    while True:
        item = await asyncio.to_thread(next, iterator, None)
        if item is None:
            return
        yield item
