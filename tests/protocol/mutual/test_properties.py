"""Property: an honest pair counts exactly |cover(A) ∩ cover(B)| for random maps, in memory.

Maps are random subsets of a neighbourhood at res 8, 9 or 10 (the responder's
``res`` is 9), so they overlap by chance and the proposer's map is taken to
the responder's resolution first. The count is checked against plain set
arithmetic on the covers, and both sides must agree on it.
"""

from __future__ import annotations

import h3.api.basic_int as h3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hexpsi.protocol.mutual.sets import cells_at_resolution
from tests.protocol.mutual_helpers import CENTER, RES, mutual_pair

NEIGHBOURHOODS = {
    res: sorted(
        h3.grid_disk(
            h3.cell_to_center_child(CENTER, res) if res > RES else h3.cell_to_parent(CENTER, res),
            radius,
        )
    )
    for res, radius in ((RES - 1, 2), (RES, 6), (RES + 1, 14))
}


@st.composite
def maps(draw: st.DrawFn, res: int | None = None) -> frozenset[int]:
    chosen = draw(st.sampled_from(sorted(NEIGHBOURHOODS))) if res is None else res
    return frozenset(
        draw(st.lists(st.sampled_from(NEIGHBOURHOODS[chosen]), max_size=60, unique=True))
    )


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(proposer=maps(), responder=maps(RES), seed=st.binary(min_size=1, max_size=8))
def test_honest_pairs_count_exactly_the_shared_cells(
    proposer: frozenset[int], responder: frozenset[int], seed: bytes
) -> None:
    pair = mutual_pair(proposer, responder, proposer_seed=b"p" + seed, responder_seed=b"r" + seed)
    result = pair.run()
    expected = len(cells_at_resolution(proposer, RES) & responder)
    assert result.shared_cells == expected
    assert pair.responder.shared_cells == expected
    assert result.receipt.statement.shared_cells == expected


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=maps(RES), second=maps(RES))
def test_the_count_is_the_same_whichever_side_proposes(
    first: frozenset[int], second: frozenset[int]
) -> None:
    forward = mutual_pair(first, second).run().shared_cells
    backward = mutual_pair(second, first).run().shared_cells
    assert forward == backward == len(first & second)
