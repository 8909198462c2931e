"""A verdict per target: a target conflicts exactly when a cell of its own cover does."""

from __future__ import annotations

import h3.api.basic_int as h3

from hexpsi.protocol.check.targets import WHOLE_STRIKE, target_verdicts
from hexpsi.protocol.geo.cover import feature_to_cover
from hexpsi.protocol.geo.shapes import Circle, Feature

RES = 9


def test_each_target_is_judged_by_its_own_cells() -> None:
    near = Feature("near", (Circle((33.50, 38.62), 300.0),))
    far = Feature("far", (Circle((33.70, 38.90), 300.0),))
    overlap = Feature("overlap", (Circle((33.5005, 38.6205), 200.0),))
    features = (near, far, overlap)
    strike = frozenset().union(*(feature_to_cover(f, RES) for f in features))
    hit = h3.latlng_to_cell(33.50, 38.62, RES)
    verdicts = target_verdicts(
        features, res=RES, strike_cells=strike, conflicting_cells=frozenset({hit})
    )
    assert [v.id for v in verdicts] == ["near", "far", "overlap"]
    assert [v.conflict for v in verdicts] == [True, False, hit in feature_to_cover(overlap, RES)]
    assert verdicts[0].conflicting_cells == {hit}
    assert verdicts[1].cells == feature_to_cover(far, RES)


def test_a_check_of_bare_cells_has_one_target() -> None:
    cells = frozenset({h3.latlng_to_cell(33.5, 38.62, RES)})
    (verdict,) = target_verdicts(None, res=RES, strike_cells=cells, conflicting_cells=cells)
    assert verdict.id == WHOLE_STRIKE
    assert verdict.conflict
