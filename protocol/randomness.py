"""Uniform choices from an injected byte source.

Sessions never reach for OS randomness themselves: callers pass ``rng(n)``
(``os.urandom`` in production, a seeded stream in tests). These helpers turn
those bytes into unbiased integers and shuffles.
"""

from __future__ import annotations

from collections.abc import Callable, MutableSequence
from typing import TypeVar

T = TypeVar("T")

RandomBytes = Callable[[int], bytes]
"""A source of randomness: ``rng(n)`` returns ``n`` uniformly random bytes."""


def uniform_below(rng: RandomBytes, bound: int) -> int:
    """An unbiased integer in ``[0, bound)`` by rejection sampling."""
    if bound <= 0:
        raise ValueError("bound must be positive")
    if bound == 1:
        return 0
    bits = (bound - 1).bit_length()
    size = (bits + 7) // 8
    mask = (1 << bits) - 1
    while True:
        value = int.from_bytes(rng(size), "big") & mask
        if value < bound:
            return value


def shuffle_in_place(items: MutableSequence[T], rng: RandomBytes) -> None:
    """Fisher–Yates with unbiased draws."""
    for i in range(len(items) - 1, 0, -1):
        j = uniform_below(rng, i + 1)
        items[i], items[j] = items[j], items[i]
