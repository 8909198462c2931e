"""Area budgets: charged by declared resolution or set size, over rolling windows, refused
with the budget named, what is left and when enough frees up."""

from __future__ import annotations

import math

import h3.api.basic_int as h3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hexpsi.protocol.budget import (
    Allowance,
    Charge,
    Spending,
    cell_area_km2,
    decide_charge,
    in_window,
    query_area_km2,
    set_area_km2,
)
from hexpsi.protocol.errors import BudgetExhausted, InputError


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


# --- rolling windows ----------------------------------------------------------------------

HOUR = 3600.0
DAY = 24 * HOUR
NOW = 1_750_000_000.0
BUDGET = Allowance(100.0, DAY, name="bravo's area budget")


def spent(*pairs: tuple[float, float]) -> list[Spending]:
    """Charges made ``hours_ago`` hours before NOW: ``(hours_ago, amount)`` pairs."""
    return [Spending(NOW - hours * HOUR, amount) for hours, amount in pairs]


def test_only_charges_of_the_last_window_count() -> None:
    history = spent((25, 90.0), (23, 30.0), (1, 40.0))
    assert [s.amount for s in in_window(history, BUDGET, NOW)] == [30.0, 40.0]
    charge = decide_charge(amount=30.0, history=history, allowance=BUDGET, now=NOW)
    assert charge == Charge(amount=30.0, spent_before=70.0, allowance=BUDGET)
    assert charge.remaining == 0.0


def test_a_charge_recorded_after_the_request_began_still_counts() -> None:
    """Concurrent requests: one that took its time before being charged must see the
    charge of one that began later but was charged first."""
    history = [Spending(NOW + 5.0, 90.0)]
    with pytest.raises(BudgetExhausted):
        decide_charge(amount=20.0, history=history, allowance=BUDGET, now=NOW)


def test_a_charge_exactly_one_window_old_no_longer_counts() -> None:
    assert in_window(spent((24, 100.0)), BUDGET, NOW) == []
    assert len(in_window(spent((23.999, 100.0)), BUDGET, NOW)) == 1


def test_a_boundary_gives_no_second_budget() -> None:
    """Spending the whole budget just before a fixed window would have reset, then
    again just after, is refused: the window rolls with the clock."""
    history = spent((0.01, 100.0))
    with pytest.raises(BudgetExhausted):
        decide_charge(amount=1.0, history=history, allowance=BUDGET, now=NOW + 60.0)


def test_a_refusal_says_which_budget_what_is_left_and_when_in_utc_and_from_now() -> None:
    history = spent((20, 50.0), (3, 40.0))
    with pytest.raises(BudgetExhausted) as caught:
        decide_charge(
            amount=30.0, history=history, allowance=BUDGET, now=NOW, what="a check by bravo"
        )
    error = caught.value
    assert error.remaining == pytest.approx(10.0)
    # The 50 km² charged 20 h ago leaves the window in 4 h; then 50 km² are left.
    assert error.frees_at == pytest.approx(NOW + 4 * HOUR)
    assert "a check by bravo could expose up to 30.000 km²" in error.message
    assert "10.000 km² of bravo's area budget (100 km² per 24 h) is left" in error.message
    assert "enough frees up at 2025-06-15T19:06:40Z (in 4 h 0 min)" in error.message
    assert error.frees_at is not None
    assert str(int(error.frees_at)) not in error.message, "never a raw Unix timestamp"
    assert error.status.value == "RESOURCE_EXHAUSTED"


def test_a_request_larger_than_the_whole_budget_never_fits() -> None:
    with pytest.raises(BudgetExhausted) as caught:
        decide_charge(amount=150.0, history=[], allowance=BUDGET, now=NOW)
    assert caught.value.frees_at is None
    assert "allows at all" in caught.value.message


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.floats(min_value=0, max_value=30), st.floats(min_value=0, max_value=60)),
        max_size=8,
    ),
    st.floats(min_value=0, max_value=120),
)
def test_refusals_and_their_free_up_times_are_exact(
    pairs: list[tuple[float, float]], amount: float
) -> None:
    history = spent(*pairs)
    counting = sum(s.amount for s in in_window(history, BUDGET, NOW))
    if counting + amount <= BUDGET.limit or amount == 0:
        charge = decide_charge(amount=amount, history=history, allowance=BUDGET, now=NOW)
        assert charge.remaining == pytest.approx(max(0.0, BUDGET.limit - counting - amount))
        return
    with pytest.raises(BudgetExhausted) as caught:
        decide_charge(amount=amount, history=history, allowance=BUDGET, now=NOW)
    frees_at = caught.value.frees_at
    if amount > BUDGET.limit:
        assert frees_at is None
        return
    assert frees_at is not None
    # At that moment it fits, and a moment earlier it did not.
    decide_charge(amount=amount, history=history, allowance=BUDGET, now=frees_at)
    with pytest.raises(BudgetExhausted):
        decide_charge(amount=amount, history=history, allowance=BUDGET, now=frees_at - 1e-3)


@pytest.mark.parametrize("amount", [-1.0, math.nan, math.inf])
def test_nonsense_amounts_are_input_errors(amount: float) -> None:
    with pytest.raises(InputError):
        decide_charge(amount=amount, history=[], allowance=BUDGET, now=NOW)


@pytest.mark.parametrize(("limit", "window"), [(math.nan, DAY), (-1.0, DAY), (1.0, 0.0)])
def test_nonsense_allowances_are_input_errors(limit: float, window: float) -> None:
    with pytest.raises(InputError):
        Allowance(limit, window)


def test_a_mutual_call_costs_the_other_sides_set_size_in_cells() -> None:
    assert set_area_km2(1024, 9) == pytest.approx(1024 * cell_area_km2(9))
    with pytest.raises(InputError):
        set_area_km2(-1, 9)
