"""Area budgets: charged by declared resolution, in fixed aligned windows, refused with a reason."""

from __future__ import annotations

import math

import h3.api.basic_int as h3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hexpsi.protocol.budget import Charge, Window, cell_area_km2, decide_charge, query_area_km2
from hexpsi.protocol.errors import BudgetExhausted, InputError

WINDOW = Window(3600.0, 3600.0)


def test_cell_area_is_h3s_average() -> None:
    for res in (5, 7, 9):
        assert cell_area_km2(res) == h3.average_hexagon_area(res, unit="km^2")
    assert cell_area_km2(9) == pytest.approx(0.1053, rel=1e-3)


def test_each_element_costs_seven_to_the_resolution_gap_finest_cells() -> None:
    finest = cell_area_km2(9)
    assert query_area_km2({9: 8}, 9) == pytest.approx(8 * finest)
    assert query_area_km2({8: 8}, 9) == pytest.approx(8 * 7 * finest)
    assert query_area_km2({5: 8, 7: 16, 9: 18}, 9) == pytest.approx(
        (8 * 7**4 + 16 * 49 + 18) * finest
    )
    assert query_area_km2({}, 9) == 0.0
    assert query_area_km2({7: 0}, 9) == 0.0


@settings(max_examples=60)
@given(
    st.dictionaries(
        st.integers(min_value=0, max_value=9), st.integers(min_value=0, max_value=10**5)
    ),
    st.dictionaries(
        st.integers(min_value=0, max_value=9), st.integers(min_value=0, max_value=10**5)
    ),
)
def test_area_adds_up_over_elements(first: dict[int, int], second: dict[int, int]) -> None:
    merged = {r: first.get(r, 0) + second.get(r, 0) for r in first.keys() | second.keys()}
    total = query_area_km2(first, 9) + query_area_km2(second, 9)
    assert query_area_km2(merged, 9) == pytest.approx(total, rel=1e-12)
    cells = sum(count * 7 ** (9 - r) for r, count in merged.items())
    assert query_area_km2(merged, 9) == pytest.approx(cells * cell_area_km2(9), rel=1e-12)


def test_declaring_finer_costs_less() -> None:
    assert query_area_km2({9: 8}, 9) < query_area_km2({8: 8}, 9) < query_area_km2({7: 8}, 9)


@pytest.mark.parametrize("sizes", [{10: 8}, {-1: 8}, {9: -1}])
def test_impossible_group_sizes_are_input_errors(sizes: dict[int, int]) -> None:
    with pytest.raises(InputError):
        query_area_km2(sizes, 9)


# --- windows -------------------------------------------------------------------------------

lengths = st.sampled_from([1.0, 60.0, 3600.0, 86400.0, 7.3, 0.1, 1e-3, 604800.0]) | st.floats(
    min_value=1e-3, max_value=1e7
)
moments = st.floats(min_value=0.0, max_value=4e9)


def test_windows_align_to_multiples_of_their_length() -> None:
    assert Window.containing(7199.0, 3600.0) == Window(3600.0, 3600.0)
    assert Window.containing(7200.0, 3600.0) == Window(7200.0, 3600.0)
    assert Window.containing(0.0, 86400.0) == Window(0.0, 86400.0)
    assert Window.containing(-1.0, 3600.0) == Window(-3600.0, 3600.0)
    assert Window(3600.0, 3600.0).end == 7200.0
    assert Window(5.0, 3.0).end == 8.0  # not aligned: built by hand, ends a length later


@settings(max_examples=200)
@given(moments, lengths)
def test_the_window_contains_the_moment(now: float, length: float) -> None:
    window = Window.containing(now, length)
    assert window.length == length
    assert window.start <= now < window.end
    assert Window.containing(window.start, length) == window
    index = round(window.start / length)
    assert window.start == index * length
    # Windows tile: the next one starts exactly when this one resets.
    assert Window.containing(window.end, length).start == window.end


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=10**9), lengths)
def test_just_before_a_boundary_is_still_the_earlier_window(index: int, length: float) -> None:
    boundary = index * length
    before = math.nextafter(boundary, -math.inf)
    window = Window.containing(before, length)
    assert window.start <= before < window.end
    later = Window.containing(boundary, length)
    assert later.start <= boundary < later.end


@pytest.mark.parametrize("length", [0.0, -1.0, math.nan, math.inf])
def test_window_length_must_be_positive_and_finite(length: float) -> None:
    with pytest.raises(InputError):
        Window.containing(1000.0, length)


@pytest.mark.parametrize("now", [math.nan, math.inf, -math.inf])
def test_the_moment_must_be_finite(now: float) -> None:
    with pytest.raises(InputError):
        Window.containing(now, 3600.0)


# --- charges -------------------------------------------------------------------------------


def test_a_charge_that_fits_is_approved() -> None:
    charge = decide_charge(amount=30.0, spent_in_window=50.0, limit=100.0, window=WINDOW)
    assert charge == Charge(amount=30.0, spent_before=50.0, limit=100.0, window=WINDOW)
    assert charge.remaining == 20.0
    exact = decide_charge(amount=50.0, spent_in_window=50.0, limit=100.0, window=WINDOW)
    assert exact.remaining == 0.0
    free = decide_charge(amount=0.0, spent_in_window=100.0, limit=100.0, window=WINDOW)
    assert free.remaining == 0.0


def test_an_exhausted_budget_says_what_is_left_and_when_it_resets() -> None:
    with pytest.raises(BudgetExhausted) as caught:
        decide_charge(amount=30.0, spent_in_window=80.0, limit=100.0, window=WINDOW)
    error = caught.value
    assert error.remaining == 20.0
    assert error.resets_at == WINDOW.end == 7200.0
    assert "20.000 km²" in error.message
    assert "7200" in error.message
    assert error.status.value == "RESOURCE_EXHAUSTED"


def test_overspent_windows_leave_nothing() -> None:
    with pytest.raises(BudgetExhausted) as caught:
        decide_charge(amount=1.0, spent_in_window=150.0, limit=100.0, window=WINDOW, unit="checks")
    assert caught.value.remaining == 0.0
    assert "checks" in caught.value.message


@settings(max_examples=200)
@given(
    st.floats(min_value=0, max_value=1e6),
    st.floats(min_value=0, max_value=1e6),
    st.floats(min_value=0, max_value=1e6),
)
def test_approval_is_exactly_fitting_in_what_is_left(
    amount: float, spent: float, limit: float
) -> None:
    left = max(0.0, limit - spent)
    if amount > left:
        with pytest.raises(BudgetExhausted) as caught:
            decide_charge(amount=amount, spent_in_window=spent, limit=limit, window=WINDOW)
        assert caught.value.remaining == left
        assert caught.value.resets_at == WINDOW.end
    else:
        charge = decide_charge(amount=amount, spent_in_window=spent, limit=limit, window=WINDOW)
        assert charge.remaining == max(0.0, limit - spent - amount)


@pytest.mark.parametrize("amount", [-1.0, math.nan, math.inf])
def test_nonsense_amounts_are_input_errors(amount: float) -> None:
    with pytest.raises(InputError):
        decide_charge(amount=amount, spent_in_window=0.0, limit=100.0, window=WINDOW)
