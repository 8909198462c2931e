"""How batch work is spread over cores without ``protocol`` knowing about pools.

Batch operations take a ``mapper``: anything shaped like the builtin ``map``
that preserves order. The builtin runs the chunks in turn; a thread pool's
``map`` runs them on several cores (libsodium releases the GIL); a process
pool's, or a cluster's, runs picklable jobs elsewhere. ``server.workers`` owns
the pools; this module only says what they must look like.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]
"""An order-preserving ``map``. Chunks handed to it by :func:`in_chunks` hold closures,
so such a mapper must run them in this process (threads)."""

PARALLEL_CHUNK = 128
"""Items per chunk handed to a mapper: long enough that a chunk's libsodium
time dwarfs the hand-off, short enough to balance two or more cores."""

_T = TypeVar("_T")
_R = TypeVar("_R")


def in_chunks(
    work: Callable[[Sequence[_T], int], list[_R]], items: Sequence[_T], mapper: Mapper
) -> list[_R]:
    """``work(chunk, offset)`` over consecutive chunks of ``items``, results concatenated.

    With the builtin ``map`` (or a small batch) this is one plain call, so the
    default path costs nothing. ``offset`` lets errors name the global index.
    """
    if mapper is map or len(items) <= PARALLEL_CHUNK:
        return work(items, 0)
    jobs = [
        (items[start : start + PARALLEL_CHUNK], start)
        for start in range(0, len(items), PARALLEL_CHUNK)
    ]
    result: list[_R] = []
    for part in mapper(lambda job: work(job[0], job[1]), jobs):
        result.extend(part)
    return result
