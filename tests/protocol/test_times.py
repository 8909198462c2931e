"""Times as people read them: RFC 3339 UTC and durations in words."""

from __future__ import annotations

import math

import pytest

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.times import duration_words, moment_from_now, parse_moment, rfc3339


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


def test_a_moment_is_read_with_its_zone() -> None:
    assert parse_moment("1970-01-01T00:00:00Z") == 0.0
    assert parse_moment("1970-01-01T02:00:00+02:00") == 0.0
    assert parse_moment(rfc3339(1_796_000_000)) == 1_796_000_000


@pytest.mark.parametrize(
    ("text", "says"),
    [("2026-12-05T06:00:00", "no time zone"), ("tomorrow", "is not a time"), ("", "not a time")],
)
def test_a_moment_without_a_zone_or_in_words_is_refused(text: str, says: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_moment(text, what="--valid-from")
    assert says in caught.value.message
    assert "--valid-from" in caught.value.message
