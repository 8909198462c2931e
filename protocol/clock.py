"""Judging another node's dated statements against our own clock.

A time inside a signed statement (a receipt's ``issued_at``, a mutual
statement's) is the signer's word: a node whose clock is off, or that lies,
dates a check hours away from when it happened, and everything built on the
statement (evidence, audit entries) then carries that date. So a node refuses a
statement dated more than an allowed skew from its own clock, either way. The
time to judge by and the skew allowed are arguments: this module reads no clock.
"""

from __future__ import annotations

import math

from hexpsi.protocol.errors import StaleError
from hexpsi.protocol.times import duration_words


def check_skew(
    what: str,
    dated: float,
    *,
    now: float,
    max_skew: float,
    clock: str = "this node's clock",
) -> None:
    """Refuse ``what``, dated ``dated``, if that is more than ``max_skew`` s from ``now``.

    ``clock`` names whose clock ``now`` is, for the message.

    Raises :class:`StaleError` (a remote protocol error: the peer's statement is
    not acceptable now) with a message that says which way and how far, and what
    to do about it.
    """
    if not math.isfinite(dated):
        raise StaleError(f"{what} carries no usable time ({dated!r})")
    if not math.isfinite(now):
        raise StaleError(f"{clock} gives no usable time ({now!r}) to judge {what} by")
    offset = dated - now
    if abs(offset) <= max_skew:
        return
    direction = "ahead of" if offset > 0 else "behind"
    raise StaleError(
        f"{what} dated {duration_words(abs(offset))} {direction} {clock}; "
        f"at most {max_skew:.0f} s of skew is accepted — check both clocks"
    )
