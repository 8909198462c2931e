"""Tokens: what actually goes through the OPRF, and the cell hierarchy behind them.

A token is (resolution, cell) in a fixed, versioned byte encoding. The
responder's token set holds every protected cell and all its ancestors down to
``res_min``; the proposer sends its strike cover compacted (never coarser than
``res_min``). A query token at resolution r then hits iff some protected cell
lies inside it, and since a compacted cell lies wholly inside the strike cover,
a hit is a conflict. Query size grows with the strike zone's perimeter, not its
area.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import h3.api.basic_int as h3

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.resolution import check_resolutions

TOKEN_LABEL = b"hexpsi/v1/cell"
TOKEN_SIZE = len(TOKEN_LABEL) + 1 + 8

TokensByResolution = dict[int, set[int]]


def token_bytes(cell: int) -> bytes:
    """``b"hexpsi/v1/cell" || res (1 byte) || cell (8 bytes, big-endian)``."""
    return TOKEN_LABEL + bytes([h3.get_resolution(cell)]) + cell.to_bytes(8, "big")


def token_cell(token: bytes) -> int:
    """The cell inside a token, checked to be a valid H3 cell at the encoded resolution."""
    if len(token) != TOKEN_SIZE or not token.startswith(TOKEN_LABEL):
        raise InputError("not a hexpsi v1 cell token")
    res = token[len(TOKEN_LABEL)]
    cell = int.from_bytes(token[len(TOKEN_LABEL) + 1 :], "big")
    if not h3.is_valid_cell(cell) or h3.get_resolution(cell) != res:
        raise InputError("token holds an invalid cell")
    return cell


def is_cell(cell: object) -> bool:
    """Whether ``cell`` is a valid H3 cell index (an int; never raises for other values)."""
    return (
        isinstance(cell, int)
        and not isinstance(cell, bool)
        and 0 <= cell < 1 << 64
        and bool(h3.is_valid_cell(cell))
    )


def _check_cells(cells: Iterable[int], res: int) -> set[int]:
    checked: set[int] = set()
    for cell in cells:
        if not is_cell(cell):
            shown = f"{cell:#x}" if isinstance(cell, int) else repr(cell)
            raise InputError(f"{shown} is not a valid H3 cell")
        if h3.get_resolution(cell) != res:
            raise InputError(
                f"cell {h3.int_to_str(cell)} is at resolution {h3.get_resolution(cell)}, "
                f"expected {res}"
            )
        checked.add(cell)
    return checked


def responder_tokens(cells: Iterable[int], *, res: int, res_min: int) -> TokensByResolution:
    """Each protected cell plus its ancestors down to ``res_min``, grouped by resolution."""
    check_resolutions(res, res_min)
    finest = _check_cells(cells, res)
    tokens: TokensByResolution = {r: set() for r in range(res_min, res + 1)}
    tokens[res] = finest
    for r in range(res_min, res):
        tokens[r] = {h3.cell_to_parent(cell, r) for cell in finest}
    return tokens


def query_tokens(cover: Iterable[int], *, res: int, res_min: int) -> TokensByResolution:
    """The strike cover compacted, with anything coarser than ``res_min`` split back down."""
    check_resolutions(res, res_min)
    finest = _check_cells(cover, res)
    tokens: TokensByResolution = {}
    for cell in h3.compact_cells(list(finest)):
        cell_res = h3.get_resolution(cell)
        if cell_res < res_min:
            tokens.setdefault(res_min, set()).update(h3.cell_to_children(cell, res_min))
        else:
            tokens.setdefault(cell_res, set()).add(cell)
    return tokens


def token_count(tokens: Mapping[int, set[int]]) -> int:
    return sum(len(group) for group in tokens.values())


def cells_inside(token: int, *, res: int) -> set[int]:
    """The finest cells a token stands for."""
    if h3.get_resolution(token) == res:
        return {token}
    return set(h3.cell_to_children(token, res))
