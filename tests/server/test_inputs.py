"""Reading inputs with time across files, and covering standing and timed features apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hexpsi.protocol.errors import InputError, LocalProtocolError
from hexpsi.protocol.geo.cover import shape_to_cover
from hexpsi.protocol.geo.timing import Role, TimeKind
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.server.inputs import (
    InputOptions,
    cover_features,
    cover_timed_features,
    read_inputs,
    split_timed,
)

SIX = 1_796_450_400.0  # 2026-12-05T06:00:00Z
ROUTE = {
    "type": "Feature",
    "id": "convoy",
    "properties": {
        "buffer_m": 100,
        "times": ["2026-12-05T06:00:00Z", "2026-12-05T07:00:00Z", "2026-12-05T08:00:00Z"],
    },
    "geometry": {"type": "LineString", "coordinates": [[38.6, 33.5], [38.61, 33.5], [38.62, 33.5]]},
}
CAMP = {
    "type": "Feature",
    "id": "camp",
    "properties": {"radius_m": 300},
    "geometry": {"type": "Point", "coordinates": [38.5, 33.4]},
}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    found = {
        "routes.geojson": json.dumps({"type": "FeatureCollection", "features": [ROUTE, CAMP]}),
        "sites.csv": "id,lat,lng,radius_m,valid_from,valid_until\n"
        "clinic,33.45,38.55,200,2026-12-05T00:00:00Z,2026-12-06T00:00:00Z\n"
        "camp,33.46,38.56,200,,\n",
        "strike.csv": "lat,lng\n33.5,38.6\n",
    }
    for name, text in found.items():
        (tmp_path / name).write_text(text)
    return {name: tmp_path / name for name in found}


def test_several_files_keep_their_times_kinds_and_buffers(files: dict[str, Path]) -> None:
    options = InputOptions(default_radius_m=0.0, role=Role.POSITIONS, time_buffer_s=60.0)
    inputs = read_inputs([files["routes.geojson"], files["sites.csv"]], options)
    assert [f.id for f in inputs.features] == [
        "convoy",
        "routes.geojson:camp",
        "clinic",
        "sites.csv:camp",
    ]
    assert inputs.kinds == (TimeKind.ROUTE, TimeKind.STANDING, TimeKind.TIMED, TimeKind.STANDING)
    convoy, _, clinic, _ = inputs.features
    assert convoy.when == (
        Interval(SIX - 60, SIX + 3600 + 60),
        Interval(SIX + 3600 - 60, SIX + 7200 + 60),
    )
    assert clinic.when == (Interval(SIX - 6 * 3600 - 60, SIX + 18 * 3600 + 60),)
    line = inputs.summary({0x892D83D3437FFFF})
    assert (
        "; 2 timed from 2026-12-04T23:59:00Z to 2026-12-06T00:01:00Z (1 route with times);" in line
    )


def test_a_strike_window_applies_to_strikes_without_their_own(files: dict[str, Path]) -> None:
    window = Interval(SIX, SIX + 7200)
    options = InputOptions(role=Role.STRIKES, window=window)
    [strike] = read_inputs([files["strike.csv"]], options).features
    assert strike.when == (window,)
    with pytest.raises(InputError, match="times says when a protected position holds"):
        read_inputs([files["routes.geojson"]], options)
    with pytest.raises(InputError, match="--window is a strike's window"):
        read_inputs([files["strike.csv"]], InputOptions(role=Role.POSITIONS, window=window))


def test_standing_and_timed_features_are_covered_apart(files: dict[str, Path]) -> None:
    inputs = read_inputs([files["routes.geojson"], files["sites.csv"]], InputOptions())
    standing, timed = split_timed(inputs.features)
    assert [f.id for f in standing] == ["routes.geojson:camp", "sites.csv:camp"]
    assert [f.id for f in timed] == ["convoy", "clinic"]
    with pytest.raises(LocalProtocolError, match="feature 'convoy' is timed"):
        cover_features(inputs.features, res=9)
    cells = cover_features(standing, res=9)
    assert cells == set().union(*(shape_to_cover(s, 9) for f in standing for s in f.shapes))
    pairs = cover_timed_features(timed, res=9)
    assert {cell for cell, _ in pairs} == set().union(
        *(shape_to_cover(s, 9) for f in timed for s in f.shapes)
    )
    assert pairs == sorted(pairs, key=lambda pair: (pair[0], pair[1].start))
    with pytest.raises(InputError) as caught:
        cover_timed_features(timed, res=9, max_cells=5)
    assert caught.value.explain() == (
        "the timed shapes would cover more than 5 cells at resolution 9 "
        "(check their radius_m and buffer_m (and --radius-m))"
    )
