"""Planning a query: padded group sizes, what it costs, and parts that each fit one check."""

from __future__ import annotations

import h3.api.basic_int as h3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hexpsi.protocol.budget import query_area_km2
from hexpsi.protocol.check.plan import (
    QUERY_BUCKET_MINIMUM,
    check_fits,
    plan_query,
    split_tokens,
)
from hexpsi.protocol.crypto.oprf import MAX_BATCH
from hexpsi.protocol.errors import LocalProtocolError
from hexpsi.protocol.geo.tokens import query_tokens
from hexpsi.protocol.padding import size_bucket

CENTER = h3.latlng_to_cell(33.5, 38.62, 9)


def test_groups_are_padded_to_buckets_and_charged_as_padded() -> None:
    plan = plan_query({9: {1, 2, 3}, 7: set(range(20)), 8: set()})
    assert [(g.resolution, g.tokens, g.padded) for g in plan.groups] == [
        (7, 20, size_bucket(20, minimum=QUERY_BUCKET_MINIMUM)),
        (9, 3, QUERY_BUCKET_MINIMUM),
    ]
    assert plan.tokens == 23
    assert plan.area_km2(9) == query_area_km2(plan.sizes(), 9)


def test_a_query_over_the_limit_is_refused_with_what_to_do() -> None:
    plan = plan_query({9: set(range(100))})
    with pytest.raises(LocalProtocolError, match="accepts at most 64 per check; split the zone"):
        check_fits(plan, max_query_tokens=64, node="alpha")
    with pytest.raises(LocalProtocolError, match="one proof covers at most"):
        check_fits(plan_query({9: set(range(MAX_BATCH + 1))}), max_query_tokens=10**9, node="a")


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=30), st.sampled_from([8, 16, 64, 100, 4096]))
def test_parts_cover_every_token_once_and_each_fits(radius: int, limit: int) -> None:
    tokens = query_tokens(h3.grid_disk(CENTER, radius), res=9, res_min=5)
    parts = split_tokens(tokens, max_query_tokens=limit)
    seen = [t for part in parts for group in part.values() for t in group]
    assert sorted(seen) == sorted(t for group in tokens.values() for t in group)
    for part in parts:
        check_fits(plan_query(part), max_query_tokens=limit, node="alpha")
    assert split_tokens(tokens, max_query_tokens=limit) == parts, "the split is deterministic"
    if plan_query(tokens).padded <= limit:
        assert len(parts) == 1


def test_a_limit_below_the_smallest_padded_query_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="fits no padded query"):
        split_tokens({9: {CENTER}}, max_query_tokens=QUERY_BUCKET_MINIMUM - 1)
