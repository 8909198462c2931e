"""Tokens: the fixed byte encoding, the responder's ancestors and the proposer's compact query."""

from __future__ import annotations

import h3.api.basic_int as h3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.cover import shape_to_cover
from hexpsi.protocol.geo.resolution import check_resolutions
from hexpsi.protocol.geo.shapes import Circle
from hexpsi.protocol.geo.tokens import (
    TOKEN_LABEL,
    TOKEN_SIZE,
    cells_inside,
    query_tokens,
    responder_tokens,
    token_bytes,
    token_cell,
    token_count,
)

PENTAGON_CENTRES = [h3.cell_to_latlng(cell) for cell in sorted(h3.get_pentagons(0))[:3]]


@st.composite
def resolutions(draw: st.DrawFn) -> tuple[int, int]:
    res = draw(st.integers(min_value=7, max_value=9))
    return res, draw(st.integers(min_value=max(0, res - 4), max_value=res))


@st.composite
def cell_sets(draw: st.DrawFn, res: int) -> set[int]:
    """A union of a few small discs, sometimes next to a pentagon or across the antimeridian."""
    anchor = draw(
        st.sampled_from([(33.5, 38.6), (-17.8, 179.99), (64.1, -21.9), *PENTAGON_CENTRES])
    )
    cells: set[int] = set()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        lat = anchor[0] + draw(st.floats(min_value=-0.05, max_value=0.05))
        lng = anchor[1] + draw(st.floats(min_value=-0.05, max_value=0.05))
        lng = (lng + 180.0) % 360.0 - 180.0
        radius = draw(st.floats(min_value=0.0, max_value=12.0)) * h3.average_hexagon_edge_length(
            res, unit="m"
        )
        cells |= shape_to_cover(Circle((lat, lng), radius), res)
    return cells


def test_token_bytes_follow_the_documented_format() -> None:
    cell = h3.latlng_to_cell(33.5, 38.6, 9)
    token = token_bytes(cell)
    assert token == b"hexpsi/v1/cell" + bytes([9]) + cell.to_bytes(8, "big")
    assert len(token) == TOKEN_SIZE
    assert token_cell(token) == cell


def test_tokens_of_a_cell_and_its_parent_differ() -> None:
    cell = h3.latlng_to_cell(33.5, 38.6, 9)
    assert token_bytes(cell) != token_bytes(h3.cell_to_parent(cell, 8))


@pytest.mark.parametrize(
    "token",
    [
        b"",
        TOKEN_LABEL,
        token_bytes(h3.latlng_to_cell(1.0, 2.0, 9))[:-1],
        token_bytes(h3.latlng_to_cell(1.0, 2.0, 9)) + b"\x00",
        b"hexpsi/v2/cell" + token_bytes(h3.latlng_to_cell(1.0, 2.0, 9))[len(TOKEN_LABEL) :],
        TOKEN_LABEL + bytes([8]) + h3.latlng_to_cell(1.0, 2.0, 9).to_bytes(8, "big"),
        TOKEN_LABEL + bytes([9]) + (0x1234).to_bytes(8, "big"),
    ],
    ids=["empty", "label only", "short", "long", "other label", "wrong res", "not a cell"],
)
def test_token_cell_refuses_anything_else(token: bytes) -> None:
    with pytest.raises(InputError):
        token_cell(token)


@pytest.mark.parametrize(
    ("res", "res_min"),
    [(16, 5), (9, -1), (5, 9), (True, 0), (9.0, 5), ("9", 5), (9, None)],
)
def test_bad_resolutions_are_input_errors(res: object, res_min: object) -> None:
    with pytest.raises(InputError):
        check_resolutions(res, res_min)
    with pytest.raises(InputError):
        responder_tokens([], res=res, res_min=res_min)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        query_tokens([], res=res, res_min=res_min)  # type: ignore[arg-type]


BAD_CELLS = [
    pytest.param(h3.latlng_to_cell(33.5, 38.6, 8), id="wrong resolution"),
    pytest.param(0x1234, id="not a cell"),
    pytest.param(0, id="zero"),
    pytest.param(-1, id="negative"),
    pytest.param(1 << 64, id="too large"),
    pytest.param("89283082803ffff", id="string"),
    pytest.param(None, id="none"),
]


@pytest.mark.parametrize("bad", BAD_CELLS)
def test_bad_cells_are_input_errors(bad: object) -> None:
    good = h3.latlng_to_cell(33.5, 38.6, 9)
    with pytest.raises(InputError):
        responder_tokens([good, bad], res=9, res_min=5)  # type: ignore[list-item]
    with pytest.raises(InputError):
        query_tokens([bad, good], res=9, res_min=5)  # type: ignore[list-item]


@settings(max_examples=40, deadline=None)
@given(st.data(), resolutions())
def test_responder_tokens_hold_every_ancestor_and_nothing_else(
    data: st.DataObject, resolution: tuple[int, int]
) -> None:
    res, res_min = resolution
    cells = data.draw(cell_sets(res))
    tokens = responder_tokens(cells, res=res, res_min=res_min)
    assert sorted(tokens) == list(range(res_min, res + 1))
    assert tokens[res] == cells
    for r in range(res_min, res + 1):
        assert tokens[r] == {h3.cell_to_parent(cell, r) for cell in cells}
        assert all(h3.get_resolution(token) == r for token in tokens[r])
    assert token_count(tokens) == sum(len(group) for group in tokens.values())


@settings(max_examples=40, deadline=None)
@given(st.data(), resolutions())
def test_query_tokens_are_compact_and_cover_exactly_the_input(
    data: st.DataObject, resolution: tuple[int, int]
) -> None:
    res, res_min = resolution
    cells = data.draw(cell_sets(res))
    tokens = query_tokens(cells, res=res, res_min=res_min)
    flat = [token for group in tokens.values() for token in group]
    assert all(h3.get_resolution(token) == r for r, group in tokens.items() for token in group)
    assert min(tokens) >= res_min
    assert max(tokens) <= res
    assert all(tokens.values())
    covered: list[int] = [cell for token in flat for cell in cells_inside(token, res=res)]
    assert len(covered) == len(set(covered))
    assert set(covered) == cells
    # Compact: no parent at res_min or finer has all its children in the query.
    present = set(flat)
    for token in flat:
        r = h3.get_resolution(token)
        if r > res_min:
            siblings = set(h3.cell_to_children(h3.cell_to_parent(token, r - 1), r))
            assert not siblings <= present
    # Never more tokens than cells, and exactly what H3 compaction gives at res_min and above.
    assert len(flat) <= len(cells)
    expected: set[int] = set()
    for cell in h3.compact_cells(list(cells)):
        if h3.get_resolution(cell) < res_min:
            expected.update(h3.cell_to_children(cell, res_min))
        else:
            expected.add(cell)
    assert present == expected


def test_query_tokens_split_coarse_cells_down_to_res_min() -> None:
    parent = h3.latlng_to_cell(33.5, 38.6, 5)
    cells = set(h3.cell_to_children(parent, 7))
    tokens = query_tokens(cells, res=7, res_min=6)
    assert tokens == {6: set(h3.cell_to_children(parent, 6))}
    assert query_tokens(cells, res=7, res_min=5) == {5: {parent}}
    assert query_tokens(cells, res=7, res_min=7) == {7: cells}


def test_query_of_nothing_is_empty() -> None:
    assert query_tokens([], res=9, res_min=5) == {}
    assert token_count(responder_tokens([], res=9, res_min=5)) == 0


def test_cells_inside_a_token() -> None:
    cell = h3.latlng_to_cell(33.5, 38.6, 9)
    assert cells_inside(cell, res=9) == {cell}
    parent = h3.cell_to_parent(cell, 7)
    inside = cells_inside(parent, res=9)
    assert len(inside) == 49
    assert cell in inside
    assert all(h3.cell_to_parent(child, 7) == parent for child in inside)
