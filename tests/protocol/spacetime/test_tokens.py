"""Timed tokens: their own domain, and a query hits exactly a real space-time overlap."""

from __future__ import annotations

import h3.api.basic_int as h3
from hypothesis import given, settings
from hypothesis import strategies as st

from hexpsi.protocol.geo.tokens import TOKEN_SIZE, query_tokens, token_bytes
from hexpsi.protocol.spacetime.tokens import (
    TIMED_TOKEN_SIZE,
    packed_token_bytes,
    query_timed_tokens,
    responder_timed_count,
    responder_timed_tokens,
    timed_token_bytes,
    unpack,
)
from hexpsi.protocol.spacetime.tree import TimeTree

CELL = h3.latlng_to_cell(33.5, 38.6, 9)
TREE = TimeTree(1_796_000_400.0, 900, 96)


def test_timed_and_standing_tokens_are_separate_domains() -> None:
    timed = timed_token_bytes(CELL, (3, 2))
    assert len(timed) == TIMED_TOKEN_SIZE != TOKEN_SIZE
    assert not timed.startswith(token_bytes(CELL)[:14])
    assert timed != timed_token_bytes(CELL, (3, 3))
    assert timed != timed_token_bytes(CELL, (4, 2))


def test_groups_come_one_at_a_time_sorted_and_counted() -> None:
    cells = [(CELL, (4, 11)), (h3.grid_disk(CELL, 1)[1], (0, 0))]
    groups = list(responder_timed_tokens(cells, res=9, res_min=7, tree=TREE))
    assert all(tokens == sorted(set(tokens)) for _, tokens in groups)
    assert sum(len(t) for _, t in groups) == responder_timed_count(
        cells, res=9, res_min=7, tree=TREE
    )
    (group, tokens) = groups[-1]
    assert group == (9, TREE.levels)
    assert {unpack(p) for p in tokens} == {(CELL, s) for s in range(4, 12)} | {(cells[1][0], 0)}
    assert packed_token_bytes(group[1], tokens[0]).startswith(b"hexpsi/v1/timed")


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 95),
    st.integers(0, 12),
    st.integers(0, 95),
    st.integers(0, 30),
    st.integers(0, 6),
)
def test_a_query_hits_exactly_when_space_and_time_overlap(
    start: int, length: int, window_start: int, window_length: int, ring: int
) -> None:
    position = (start, min(start + length, 95))
    window = (window_start, min(window_start + window_length, 95))
    protected = [(CELL, position)]
    snapshot = {
        (r, level, packed)
        for (r, level), tokens in responder_timed_tokens(protected, res=9, res_min=6, tree=TREE)
        for packed in tokens
    }
    strike = set(h3.grid_ring(CELL, ring)) | set(h3.grid_ring(CELL, ring + 1))
    compacted = query_tokens(strike, res=9, res_min=6)
    query = query_timed_tokens(compacted.items(), TREE.window_cover(window))
    hit = any((r, level, p) in snapshot for (r, level), ps in query.items() for p in ps)
    overlap_in_time = position[0] <= window[1] and window[0] <= position[1]
    assert hit == (overlap_in_time and CELL in strike)
