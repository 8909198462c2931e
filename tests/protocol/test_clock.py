"""Dated statements are judged against the caller's clock and skew, with a readable refusal."""

from __future__ import annotations

import math

import pytest

from hexpsi.protocol.clock import check_skew
from hexpsi.protocol.errors import StaleError

NOW = 1_750_000_000.0


def test_the_bound_is_inclusive_both_ways() -> None:
    for dated in (NOW - 300, NOW, NOW + 300):
        check_skew("receipt", dated, now=NOW, max_skew=300)
    with pytest.raises(StaleError, match="ahead of"):
        check_skew("receipt", NOW + 300.5, now=NOW, max_skew=300)
    with pytest.raises(StaleError, match="behind"):
        check_skew("receipt", NOW - 300.5, now=NOW, max_skew=300)


def test_the_refusal_says_which_way_how_far_and_what_to_do() -> None:
    with pytest.raises(StaleError) as caught:
        check_skew("receipt", NOW + 72_000, now=NOW, max_skew=300)
    assert caught.value.message == (
        "receipt dated 20 h 0 min ahead of this node's clock; "
        "at most 300 s of skew is accepted — check both clocks"
    )


@pytest.mark.parametrize("dated", [math.nan, math.inf, -math.inf])
def test_a_time_that_is_not_a_number_is_refused(dated: float) -> None:
    with pytest.raises(StaleError, match="no usable time"):
        check_skew("the statement", dated, now=NOW, max_skew=86_400)
