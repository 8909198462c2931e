"""ISO 8601 durations and intervals: every accepted form, and the ones refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.protocol.spacetime.iso8601 import parse_duration, parse_interval, parse_seconds

SIX = datetime(2026, 12, 5, 6, tzinfo=UTC).timestamp()
EIGHT = SIX + 2 * 3600


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT2H", 7200),
        ("PT90M", 5400),
        ("PT45S", 45),
        ("PT0S", 0),
        ("P1D", 86400),
        ("P2W", 14 * 86400),
        ("P1DT12H", 129600),
        ("P1DT1H1M1S", 90061),
        ("PT0.5S", 0.5),
        ("PT2,25S", 2.25),
        ("PT1.5H", 5400),
        ("PT1H30.5M", 3600 + 1830),
        ("pt10m", 600),
        (" PT10M ", 600),
    ],
)
def test_durations_in_weeks_days_hours_minutes_and_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-9)


@pytest.mark.parametrize("text", ["P1Y", "P2M", "P1Y2M10DT2H30M", "P1M2D", "P0.5Y"])
def test_years_and_months_are_refused_with_a_hint(text: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_duration(text, what="--window duration")
    message = caught.value.explain()
    assert message.startswith(f"--window duration {text!r} counts years or months")
    assert "P30D" in message


@pytest.mark.parametrize(
    "text",
    ["", "P", "PT", "P1DT", "2H", "PT-1H", "-PT1H", "P1W2D", "PT1.5H30M", "PT1H1H", "T1H", "P1S"],
)
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_duration(text)
    assert "\n" not in caught.value.explain()


@given(
    st.integers(0, 400),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
)
def test_a_duration_is_the_sum_of_its_parts(days: int, hours: int, minutes: int, secs: int) -> None:
    text = f"P{days}DT{hours}H{minutes}M{secs}S"
    expected = timedelta(days=days, hours=hours, minutes=minutes, seconds=secs).total_seconds()
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-05T06:00:00Z/2026-12-05T08:00:00Z",
        "2026-12-05T06:00:00Z/PT2H",
        "PT2H/2026-12-05T08:00:00Z",
        "2026-12-05T07:00:00+01:00/PT120M",
        "2026-12-05T06:00Z/2026-12-05T10:00:00+02:00",
    ],
)
def test_the_three_interval_forms_give_the_same_window(text: str) -> None:
    assert parse_interval(text) == Interval(SIX, EIGHT)


def test_an_instant_window_and_fractional_seconds() -> None:
    assert parse_interval("2026-12-05T06:00:00Z/PT0S") == Interval(SIX, SIX)
    assert parse_interval("2026-12-05T06:00:00Z/PT0.25S") == Interval(SIX, SIX + 0.25)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-12-05T06:00:00Z", "not an ISO 8601 interval"),
        ("2026-12-05T06:00:00Z/PT1H/PT1H", "not an ISO 8601 interval"),
        ("PT1H/PT2H", "two durations and no time"),
        ("2026-12-05T06:00:00/PT2H", "--window start '2026-12-05T06:00:00' has no time zone"),
        ("2026-12-05T06:00:00Z/2026-12-05T08:00:00", "--window end '2026-12-05T08:00:00' has no"),
        ("2026-12-05T08:00:00Z/2026-12-05T06:00:00Z", "ends before it starts"),
        ("tomorrow/PT2H", "--window start 'tomorrow' is not a time"),
        ("2026-12-05T06:00:00Z/P1M", "counts years or months"),
        ("R2/2026-12-05T06:00:00Z/PT1H", "not an ISO 8601 interval"),
        ("2026-12-05T06:00:00Z/08:00", "--window end '08:00'"),
    ],
)
def test_bad_windows_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_interval(text, what="--window")
    message = caught.value.explain()
    assert says in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "seconds"), [("600", 600.0), ("90.5", 90.5), ("0", 0.0), ("PT10M", 600.0)]
)
def test_a_time_buffer_is_seconds_or_a_duration(text: str, seconds: float) -> None:
    assert parse_seconds(text, what="--time-buffer") == seconds


@pytest.mark.parametrize("text", ["-5", "nan", "inf", "ten minutes", "", "P1Y"])
def test_a_bad_time_buffer_names_the_option(text: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_seconds(text, what="--time-buffer")
    assert caught.value.explain().startswith("--time-buffer")
