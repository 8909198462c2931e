"""Property: an honest pair finds exactly what the cell hierarchy implies, for random shapes.

For any protected cover P and strike cover S at resolution ``res``:

- a conflict is reported iff S ∩ P ≠ ∅;
- the conflicting tokens are exactly the compacted query tokens with a cell of P inside;
- S ∩ P ⊆ conflicting cells ⊆ S.

λ is chosen so a false match has probability ≤ 1e-9 per check; nothing is retried.
"""

from __future__ import annotations

import math

import h3.api.basic_int as h3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hexpsi.protocol.geo.cover import shape_to_cover
from hexpsi.protocol.geo.shapes import Area, Circle, LatLng, Shape
from tests.protocol.helpers import (
    ResponderNode,
    expected_outcome,
    make_responder,
    run_check,
)

CONFIGS = [(7, 6), (8, 5), (9, 6), (9, 4)]
THEATRES: dict[str, LatLng] = {
    "syria": (33.5, 38.6),
    "antimeridian": (-17.8, 179.98),
    "pentagon": h3.cell_to_latlng(sorted(h3.get_pentagons(0))[4]),
}
METRES_PER_DEGREE = 111_320.0
PROPERTY_SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def edge_m(res: int) -> float:
    return float(h3.average_hexagon_edge_length(res, unit="m"))


def offset(origin: LatLng, north_m: float, east_m: float) -> LatLng:
    lat = max(-89.0, min(89.0, origin[0] + north_m / METRES_PER_DEGREE))
    lng = origin[1] + east_m / (METRES_PER_DEGREE * math.cos(math.radians(lat)))
    return lat, (lng + 180.0) % 360.0 - 180.0


@st.composite
def shapes(draw: st.DrawFn, origin: LatLng, res: int, spread: float = 10.0) -> Shape:
    """A circle or a small star-shaped polygon within ``spread`` cell edges of ``origin``."""
    unit = edge_m(res)
    centre = offset(
        origin,
        draw(st.floats(min_value=-spread, max_value=spread)) * unit,
        draw(st.floats(min_value=-spread, max_value=spread)) * unit,
    )
    if draw(st.booleans()):
        # Mostly small; sometimes wide enough that whole coarse cells compact (and,
        # below res_min, split back down).
        radius = draw(
            st.floats(min_value=0.0, max_value=9.0) | st.floats(min_value=9.0, max_value=22.0)
        )
        return Circle(centre, radius * unit)
    corners = draw(st.integers(min_value=3, max_value=6))
    angles = sorted(draw(st.floats(min_value=0.0, max_value=2 * math.pi)) for _ in range(corners))
    if len({round(a, 3) for a in angles}) < corners:
        angles = [2 * math.pi * i / corners for i in range(corners)]
    ring = tuple(
        offset(
            centre,
            radius * unit * math.cos(angle),
            radius * unit * math.sin(angle),
        )
        for angle, radius in (
            (angle, draw(st.floats(min_value=1.0, max_value=8.0))) for angle in angles
        )
    )
    return Area(ring, (), draw(st.floats(min_value=0.0, max_value=1.0)) * unit)


def cover(parts: list[Shape], res: int) -> frozenset[int]:
    cells: set[int] = set()
    for shape in parts:
        cells |= shape_to_cover(shape, res)
    return frozenset(cells)


def assert_exact(
    node: ResponderNode, protected: frozenset[int], strike: frozenset[int], res: int, res_min: int
) -> None:
    result = run_check(node, strike)
    expected = expected_outcome(protected, strike, res=res, res_min=res_min)
    assert result.conflict == bool(strike & protected)
    assert result.conflicting_tokens == expected.conflicting_tokens
    assert strike & protected <= result.conflicting_cells <= strike
    assert result.conflicting_cells == expected.conflicting_cells


# --- one epoch per configuration, many strikes against it ----------------------------------


def fixed_protected(res: int) -> frozenset[int]:
    """A few protected positions around the Syrian theatre, scaled to the resolution."""
    origin, unit = THEATRES["syria"], edge_m(res)
    return cover(
        [
            Circle(origin, 4 * unit),
            Circle(offset(origin, 9 * unit, -6 * unit), 1 * unit),
            Circle(offset(origin, -7 * unit, 8 * unit), 0.0),
            Area(
                (
                    offset(origin, -3 * unit, -9 * unit),
                    offset(origin, -8 * unit, -5 * unit),
                    offset(origin, -2 * unit, -4 * unit),
                ),
                (),
                0.5 * unit,
            ),
        ],
        res,
    )


@pytest.fixture(scope="module", params=CONFIGS, ids=[f"res{r}-min{m}" for r, m in CONFIGS])
def epoch(request: pytest.FixtureRequest) -> tuple[ResponderNode, int, int]:
    res, res_min = request.param
    return make_responder(fixed_protected(res), res=res, res_min=res_min), res, res_min


@PROPERTY_SETTINGS
@given(data=st.data())
def test_strikes_against_a_fixed_map_find_exactly_the_overlap(
    epoch: tuple[ResponderNode, int, int], data: st.DataObject
) -> None:
    node, res, res_min = epoch
    parts = data.draw(st.lists(shapes(THEATRES["syria"], res, spread=14.0), min_size=1, max_size=2))
    assert_exact(node, node.protected, cover(parts, res), res, res_min)


# --- fresh protected maps ------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=st.sampled_from(CONFIGS),
    theatre=st.sampled_from(sorted(THEATRES)),
    data=st.data(),
)
def test_random_maps_and_strikes_find_exactly_the_overlap(
    config: tuple[int, int], theatre: str, data: st.DataObject
) -> None:
    res, res_min = config
    origin = THEATRES[theatre]
    protected = cover(data.draw(st.lists(shapes(origin, res), min_size=1, max_size=3)), res)
    strike = cover(data.draw(st.lists(shapes(origin, res), min_size=1, max_size=2)), res)
    node = make_responder(protected, res=res, res_min=res_min, seed=theatre.encode())
    assert_exact(node, protected, strike, res, res_min)


# --- the cases the random search might miss, pinned ----------------------------------------


@pytest.mark.parametrize(("res", "res_min"), CONFIGS)
def test_touching_covers_conflict_and_neighbours_do_not(res: int, res_min: int) -> None:
    centre = h3.latlng_to_cell(*THEATRES["syria"], res)
    protected = frozenset({centre})
    node = make_responder(protected, res=res, res_min=res_min)
    ring = frozenset(h3.grid_ring(centre, 1))
    assert_exact(node, protected, ring, res, res_min)
    assert not run_check(node, ring).conflict
    assert run_check(node, ring | {centre}).conflicting_cells >= {centre}
    whole = frozenset(h3.cell_to_children(h3.cell_to_parent(centre, res_min - 1), res))
    assert_exact(node, protected, whole, res, res_min)
    assert run_check(node, whole).conflict
