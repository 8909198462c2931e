"""``hexpsi theatre``, ``init --theatre``, and ``positions`` reading GIS files through ``main``."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hexpsi.server.cli.main import main
from hexpsi.server.node.directory import THEATRE_FILE, Node
from tests.server.conftest import make_pair

REPO = Path(__file__).resolve().parents[3]
GIS = REPO / "tests" / "fixtures" / "gis"
SEEDS = REPO / "seeds"
THEATRE = GIS / "qgis_theatre.geojson"
SWAPPED_HINT = "outside the theatre — are latitude and longitude swapped?"


def ok(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, err


def error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a failing command; return its one stderr line without the prefix and hint."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert (code, out) == (1, ""), err
    assert err.count("\n") == 1, err
    return err.removeprefix("hexpsi: error: ").removesuffix(" (rerun with --verbose for details)\n")


@pytest.fixture
def node(tmp_path: Path) -> Path:
    return make_pair(tmp_path, epoch=False).responder.directory


def test_init_keeps_a_theatre_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "n"
    init = ["init", str(directory), "--name", "n", "--listen", "127.0.0.1:7000"]
    out, _ = ok(capsys, *init, "--theatre", str(THEATRE))
    assert (
        "  theatre:            1 polygon (9 corners), latitude 32.2 to 37.4, longitude 35.5 to 42.5"
    ) in out
    stored = directory / THEATRE_FILE
    assert stored.read_bytes() == THEATRE.read_bytes()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert Node(directory).theatre() is not None


def test_init_with_a_bad_theatre_makes_no_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "n"
    init = ["init", str(directory), "--name", "n", "--listen", "127.0.0.1:7000"]
    line = error(capsys, *init, "--theatre", str(SEEDS / "strike_at_tanf.geojson"))
    assert 'a theatre is made of Polygons and MultiPolygons, got "Point"' in line
    assert not directory.exists()


def test_theatre_declares_shows_replaces_and_clears(
    node: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = ok(capsys, "theatre", str(node))
    assert out == "node alpha declares no theatre: positions and strikes are not bounded\n"
    out, _ = ok(capsys, "theatre", str(node), str(THEATRE))
    assert out == (
        "theatre of node alpha: 1 polygon (9 corners), latitude 32.2 to 37.4, longitude 35.5 to "
        f"42.5, stored in {node / THEATRE_FILE}; positions and strikes outside it are refused\n"
    )
    out, _ = ok(capsys, "theatre", str(node))
    assert out.startswith("theatre of node alpha: 1 polygon (9 corners)")
    bad = tmp_path / "across.geojson"
    ring = [[170, -20], [-170, -20], [-170, -10], [170, -10], [170, -20]]
    bad.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    assert "crosses the antimeridian" in error(capsys, "theatre", str(node), str(bad))
    assert (node / THEATRE_FILE).read_bytes() == THEATRE.read_bytes()  # kept as it was
    assert "not both" in error(capsys, "theatre", str(node), str(THEATRE), "--clear")
    out, _ = ok(capsys, "theatre", str(node), "--clear")
    assert out.startswith("removed the theatre of node alpha (1 polygon")
    assert not (node / THEATRE_FILE).exists()
    out, _ = ok(capsys, "theatre", str(node), "--clear")
    assert out == "node alpha declares no theatre; nothing removed\n"


def test_a_damaged_theatre_stops_positions_in_one_line_and_can_be_cleared(
    node: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (node / THEATRE_FILE).write_text('{"type": "Polygon"')
    line = error(capsys, "positions", str(node), str(SEEDS / "coalition_protected.geojson"))
    assert line.startswith(f"{node / THEATRE_FILE}: not valid JSON")
    out, _ = ok(capsys, "theatre", str(node), "--clear")
    assert out.startswith("removed the theatre of node alpha (unreadable)")
    ok(capsys, "positions", str(node), str(SEEDS / "coalition_protected.geojson"))


# ---------------------------------------------------------------- positions


def test_positions_refuse_bare_points_without_a_default_radius(
    node: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The regression: a lat,lng CSV protected each point by one cell, with no word said."""
    bare = GIS / "bare_points.csv"
    line = error(capsys, "positions", str(node), str(bare))
    assert line == (
        f"{bare}: line 2: a point needs a radius in metres, but the CSV has no column "
        "'radius_m' (map your layer's radius attribute with --radius-field NAME, or give points "
        "without one a default with --radius-m M (--radius-m 0: a point is just its cell))"
    )
    assert not (node / "epochs").exists()
    _, err = ok(capsys, "positions", str(node), str(bare), "--radius-m", "0")
    read, epoch, _ = err.splitlines()
    assert read == (
        "read 2 features from bare_points.csv: 2 points (radius 0 m); 2 cells at res 9, 0.231 km²"
    )
    assert epoch.startswith("epoch 1 (")
    _, err = ok(capsys, "positions", str(node), str(bare), "--radius-m", "2000")
    assert err.startswith("read 2 features from bare_points.csv: 2 points (radius 2,000 m); ")


def test_positions_from_several_gis_files(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(GIS / name) for name in ("qgis_sites.geojson", "qgis_areas.geojson")]
    line = error(capsys, "positions", str(node), *files, "--radius-field", "Radius_m")
    assert "properties.Buffer looks like a distance" in line
    _, err = ok(
        capsys,
        *("positions", str(node), *files),
        *("--radius-field", "Radius_m", "--buffer-field", "Buffer"),
    )
    assert err.splitlines()[0].startswith(
        "read 4 features from qgis_sites.geojson and qgis_areas.geojson: 2 points "
        "(radius 1,500–3,000 m), 2 polygons (buffer 250–1,000 m); "
    )


def test_positions_outside_the_theatre_are_refused(
    node: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "theatre", str(node), str(THEATRE))
    ok(capsys, "positions", str(node), str(SEEDS / "coalition_protected.geojson"))
    swapped = tmp_path / "swapped.csv"
    swapped.write_text("lng,lat,radius_m,name\n33.506,38.618,5000,At-Tanf\n")
    line = error(capsys, "positions", str(node), str(swapped))
    assert line == (
        f"{swapped}: feature 'At-Tanf' has position [33.506, 38.618] (longitude, latitude) "
        f"{SWAPPED_HINT} (the theatre is {node / THEATRE_FILE}; hexpsi theatre {node} shows it)"
    )
    ok(capsys, "theatre", str(node), "--clear")
    ok(capsys, "positions", str(node), str(swapped))  # no theatre, no bound
