"""Times as people read them: RFC 3339 UTC and durations in words."""

from __future__ import annotations

import math

import pytest

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.times import duration_words, moment_from_now, rfc3339


def test_rfc3339_is_utc_with_a_z_to_the_second() -> None:
    assert rfc3339(0.0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1_750_000_000.9) == "2025-06-15T15:06:40Z"


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 s"),
        (0.2, "1 s"),
        (59, "59 s"),
        (60, "1 min 0 s"),
        (301, "5 min 1 s"),
        (3 * 3600 + 12 * 60 + 5, "3 h 12 min"),
        (72_000, "20 h 0 min"),
        (86400 + 3600, "25 h 0 min"),
        (2 * 86400 + 3600, "2 d 1 h"),
        (86400 * 3, "3 d 0 h"),
    ],
)
def test_durations_keep_their_two_largest_units(seconds: float, words: str) -> None:
    assert duration_words(seconds) == words


def test_a_moment_is_placed_from_now() -> None:
    assert moment_from_now(3600.0, 0.0) == "1970-01-01T01:00:00Z (in 1 h 0 min)"
    assert moment_from_now(0.0, 90.0) == "1970-01-01T00:00:00Z (1 min 30 s ago)"


@pytest.mark.parametrize("moment", [math.nan, math.inf])
def test_a_non_moment_is_an_input_error(moment: float) -> None:
    with pytest.raises(InputError):
        rfc3339(moment)
