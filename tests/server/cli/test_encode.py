"""``hexpsi encode`` through ``main([...])``: output contracts, exit codes, error lines."""

from __future__ import annotations

import csv
import io
import itertools
import json
import subprocess
import sys
from pathlib import Path

import h3
import h3.api.basic_int as h3int
import pytest

from hexpsi.protocol.geo.cover import feature_to_cover
from hexpsi.protocol.geo.parse import read_features
from hexpsi.server.cli import main as cli_main
from hexpsi.server.cli.formats import cell_to_polygon
from hexpsi.server.cli.main import main

REPO = Path(__file__).resolve().parents[3]
HINT = " (rerun with --verbose for details)"

POSITIONS = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "garrison",
            "properties": {"radius_m": 400},
            "geometry": {"type": "Point", "coordinates": [38.618, 33.506]},
        },
        {
            "type": "Feature",
            "properties": {"buffer_m": 50},
            "geometry": {
                "type": "LineString",
                "coordinates": [[38.615, 33.504], [38.625, 33.510]],
            },
        },
        {
            "type": "Feature",
            "id": 7,
            "geometry": {"type": "Point", "coordinates": [36.63, 35.93]},
        },
    ],
}


@pytest.fixture
def positions(tmp_path: Path) -> Path:
    path = tmp_path / "positions.geojson"
    path.write_text(json.dumps(POSITIONS))
    return path


def run_ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a successful encode; return its stdout (stderr is the one line saying what it read)."""
    code = main(["encode", *argv])
    out, err = capsys.readouterr()
    assert code == 0
    assert err.startswith("read ")
    assert err.count("\n") == 1
    return out


def run_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a failing encode; return its single stderr line."""
    code = main(["encode", *argv])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert "Traceback" not in err
    assert err.count("\n") == 1
    assert err.startswith("hexpsi: error: ")
    assert err.endswith(HINT + "\n")
    return err.removeprefix("hexpsi: error: ").removesuffix(HINT + "\n")


def expected_covers(path: Path, res: int, radius_m: float = 0.0) -> dict[str | int, set[str]]:
    features = read_features(path.read_bytes(), source=path.name, default_radius_m=radius_m)
    return {f.id: {h3.int_to_str(c) for c in feature_to_cover(f, res)} for f in features}


# --- json ----------------------------------------------------------------------


def test_json_lists_the_union_and_each_features_cover(
    capsys: pytest.CaptureFixture[str], positions: Path
) -> None:
    result = json.loads(run_ok(capsys, str(positions)))
    expected = expected_covers(positions, 9)
    union = set().union(*expected.values())
    assert set(result) == {"resolution", "count", "area_km2", "cells", "features"}
    assert result["resolution"] == 9
    assert result["cells"] == sorted(union)
    assert result["count"] == len(union)
    assert [f["id"] for f in result["features"]] == ["garrison", 1, 7]
    for feature in result["features"]:
        assert feature["cells"] == sorted(expected[feature["id"]])
        assert feature["count"] == len(feature["cells"])
    area = sum(h3.cell_area(c, unit="km^2") for c in union)
    assert result["area_km2"] == pytest.approx(area, rel=1e-6)


def test_each_point_cover_contains_its_own_cell(
    capsys: pytest.CaptureFixture[str], positions: Path
) -> None:
    result = json.loads(run_ok(capsys, str(positions), "--res", "10"))
    by_id = {f["id"]: set(f["cells"]) for f in result["features"]}
    assert h3.latlng_to_cell(33.506, 38.618, 10) in by_id["garrison"]
    assert by_id[7] == {h3.latlng_to_cell(35.93, 36.63, 10)}
    assert all(h3.get_resolution(c) == 10 for c in result["cells"])


def test_default_radius_grows_features_without_their_own(
    capsys: pytest.CaptureFixture[str], positions: Path
) -> None:
    narrow = json.loads(run_ok(capsys, str(positions)))
    wide = json.loads(run_ok(capsys, str(positions), "--radius-m", "800"))
    counts = {f["id"]: f["count"] for f in narrow["features"]}
    wide_counts = {f["id"]: f["count"] for f in wide["features"]}
    assert wide_counts["garrison"] == counts["garrison"]  # has its own radius_m
    assert counts[7] == 1
    assert wide_counts[7] > 15  # a 0.8 km disc is ~2 km2: ~20 cells of ~0.1 km2
    assert wide_counts[7] == len(expected_covers(positions, 9, 800.0)[7])


def test_csv_input_and_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"lat,lng,radius_m,id\n33.506,38.618,300,tanf\n35.412,35.945,,\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    result = json.loads(run_ok(capsys, "-", "--radius-m", "100"))
    assert [f["id"] for f in result["features"]] == ["tanf", 1]
    assert all(f["count"] > 1 for f in result["features"])


# --- csv and geojson -----------------------------------------------------------


def test_csv_output_has_one_row_per_cell_and_feature(
    capsys: pytest.CaptureFixture[str], positions: Path
) -> None:
    text = run_ok(capsys, str(positions), "--format", "csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["cell", "feature_id"]
    expected = {
        (cell, str(fid)) for fid, cells in expected_covers(positions, 9).items() for cell in cells
    }
    assert len(rows) - 1 == len(expected)
    assert {tuple(row) for row in rows[1:]} == expected
    assert [row[0] for row in rows[1:]] == sorted(row[0] for row in rows[1:])
    assert "\r" not in text


def test_geojson_output_is_one_closed_polygon_per_cell(
    capsys: pytest.CaptureFixture[str], positions: Path
) -> None:
    collection = json.loads(run_ok(capsys, str(positions), "--format", "geojson"))
    expected = expected_covers(positions, 9)
    owners: dict[str, list[str | int]] = {}
    for fid, cells in expected.items():
        for cell in cells:
            owners.setdefault(cell, []).append(fid)
    assert collection["type"] == "FeatureCollection"
    assert {f["properties"]["cell"] for f in collection["features"]} == set(owners)
    for feature in collection["features"]:
        cell = feature["properties"]["cell"]
        assert feature["id"] == cell
        assert feature["properties"]["features"] == owners[cell]
        assert feature["geometry"]["type"] == "Polygon"
        [ring] = feature["geometry"]["coordinates"]
        assert ring[0] == ring[-1]
        corners = {(round(lat, 9), round(lng, 9)) for lng, lat in ring}
        assert corners == {(round(lat, 9), round(lng, 9)) for lat, lng in h3.cell_to_boundary(cell)}


def polygon_ring(cell: int) -> list[list[float]]:
    geometry = cell_to_polygon(cell)
    assert geometry["type"] == "Polygon"
    coordinates = geometry["coordinates"]
    assert isinstance(coordinates, list)
    assert len(coordinates) == 1
    ring: list[list[float]] = coordinates[0]
    return ring


def ring_signed_area(ring: list[list[float]]) -> float:
    return sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in itertools.pairwise(ring)) / 2


def straddling_cells(res: int) -> list[int]:
    """Cells near (0, 180) whose raw H3 boundary jumps across the antimeridian."""
    near = h3int.grid_disk(h3int.latlng_to_cell(0.0, 180.0, res), 2)
    return [
        cell
        for cell in near
        if max(lng for _, lng in h3int.cell_to_boundary(cell))
        - min(lng for _, lng in h3int.cell_to_boundary(cell))
        > 180
    ]


@pytest.mark.parametrize("res", [0, 3, 9, 15])
def test_cells_across_the_antimeridian_keep_continuous_longitudes(res: int) -> None:
    cells = straddling_cells(res)
    assert cells
    for cell in cells:
        ring = polygon_ring(cell)
        lngs = [lng for lng, _ in ring]
        assert max(lngs) - min(lngs) < 30.0
        assert max(lngs) > 180.0 or min(lngs) < -180.0
        assert ring_signed_area(ring) > 0  # counter-clockwise, as RFC 7946 asks
        _, center_lng = h3int.cell_to_latlng(cell)
        assert min(lngs) <= center_lng <= max(lngs)
        raw = {(round(lat, 9), round(lng % 360, 9)) for lat, lng in h3int.cell_to_boundary(cell)}
        assert {(round(lat, 9), round(lng % 360, 9)) for lng, lat in ring} == raw


@pytest.mark.parametrize(("lat", "res"), [(90.0, 0), (90.0, 9), (-90.0, 0), (-90.0, 9)])
def test_cells_on_a_pole_become_a_polar_cap(lat: float, res: int) -> None:
    cell = h3int.latlng_to_cell(lat, 0.0, res)
    ring = polygon_ring(cell)
    assert ring[0] == ring[-1]
    assert all(-180.0 <= lng <= 180.0 for lng, _ in ring)
    assert {lng for lng, la in ring if la == lat} == {-180.0, 180.0}
    assert ring_signed_area(ring) > 0
    boundary = {(round(la, 9), round(lng, 9)) for la, lng in h3int.cell_to_boundary(cell)}
    assert boundary <= {(round(la, 9), round(lng, 9)) for lng, la in ring}


# --- output files --------------------------------------------------------------


def test_output_file_is_replaced_and_nothing_printed(
    capsys: pytest.CaptureFixture[str], positions: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cells.csv"
    out.write_text("old content\n")
    assert run_ok(capsys, str(positions), "--format", "csv", "-o", str(out)) == ""
    assert out.read_text().startswith("cell,feature_id\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.csv", "positions.geojson"]


def test_unwritable_output_is_one_line(
    capsys: pytest.CaptureFixture[str], positions: Path, tmp_path: Path
) -> None:
    target = tmp_path / "missing-dir" / "out.json"
    message = run_error(capsys, str(positions), "-o", str(target))
    assert message == f"cannot write {str(target)!r}: No such file or directory"


# --- bad input -----------------------------------------------------------------


def test_missing_input_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "x.geojson"
    message = run_error(capsys, str(missing))
    assert message == f"cannot read {str(missing)!r}: No such file or directory"


@pytest.mark.parametrize("res", ["-1", "16"])
def test_resolution_out_of_range(
    capsys: pytest.CaptureFixture[str], positions: Path, res: str
) -> None:
    message = run_error(capsys, str(positions), "--res", res)
    assert "resolution" in message
    assert res in message


@pytest.mark.parametrize("radius", ["-5", "nan", "inf"])
def test_bad_default_radius(
    capsys: pytest.CaptureFixture[str], positions: Path, radius: str
) -> None:
    message = run_error(capsys, str(positions), "--radius-m", radius)
    assert message.startswith("--radius-m must be a finite number >= 0")


def test_a_cover_too_large_to_build_is_refused_up_front(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "one.csv"
    path.write_text("lat,lng\n33.5,38.6\n")
    message = run_error(capsys, str(path), "--res", "15", "--radius-m", "5000")
    # pi * (5 km)^2 over 0.9 m2 cells: about 87 million.
    assert message.startswith("the cover at resolution 15 would be about 8")
    assert "cells, more than --max-cells 5,000,000" in message
    assert message.endswith("(use a coarser --res, or raise --max-cells)")


def test_max_cells_is_checked_exactly_on_small_covers(
    capsys: pytest.CaptureFixture[str], positions: Path
) -> None:
    count = json.loads(run_ok(capsys, str(positions)))["count"]
    assert json.loads(run_ok(capsys, str(positions), "--max-cells", str(count)))["count"] == count
    message = run_error(capsys, str(positions), "--max-cells", str(count - 1))
    assert f"more than --max-cells {count - 1:,}" in message
    assert "--max-cells must be at least 1, got 0" in run_error(
        capsys, str(positions), "--max-cells", "0"
    )


BAD_FILES = [
    (
        '{"type":"FeatureCollection","features":[{"type":"Feature","id":"tanf",'
        '"properties":{"radius_m":-5},"geometry":{"type":"Point","coordinates":[38.6,33.5]}}]}',
        "feature 'tanf' (index 0): properties.radius_m must be a finite number >= 0, got -5",
    ),
    ('{"type": "FeatureCollection", "features": []}', "the FeatureCollection has no features"),
    ('{"type": "Feature", "geometry": {"type": "Point"}', "not valid JSON"),
    (
        '{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]}',
        "geometry.coordinates[0]: ring is not closed",
    ),
    ('{"type":"Point","coordinates":[0, 91]}', "latitude 91.0 is outside -90..90"),
    ('{"type":"Circle","coordinates":[0, 1]}', '"Circle" is not GeoJSON'),
]


@pytest.mark.parametrize(("content", "message"), BAD_FILES)
def test_bad_geojson_is_one_line_naming_file_and_place(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.geojson"
    path.write_text(content)
    line = run_error(capsys, str(path))
    assert line.startswith(f"{path}: ")
    assert message in line


def test_bad_csv_names_the_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("lat,lng\n1,2\n1,north\n")
    assert run_error(capsys, str(path)) == f"{path}: line 3: lng must be a number, got 'north'"


@pytest.mark.parametrize(
    "argv",
    [["--format", "xml"], ["--res", "nine"], ["--radius-m", "far"], []],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], positions: Path, argv: list[str]
) -> None:
    args = ["encode", str(positions), *argv] if argv else ["encode"]
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2
    assert "usage: hexpsi encode" in capsys.readouterr().err


def test_no_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert "usage: hexpsi" in capsys.readouterr().err


# --- verbose and the error policy ----------------------------------------------


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_verbose_shows_the_traceback_and_no_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str
) -> None:
    missing = str(tmp_path / "none.csv")
    argv = {
        "before": ["-v", "encode", missing],
        "after": ["encode", missing, "--verbose"],
        "env": ["encode", missing],
    }[where]
    if where == "env":
        monkeypatch.setenv("HEXPSI_VERBOSE", "1")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert (
        err.splitlines()[-1] == f"hexpsi: error: cannot read {missing!r}: No such file or directory"
    )


def test_a_bug_is_not_swallowed(monkeypatch: pytest.MonkeyPatch, positions: Path) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("hexpsi.server.inputs.read_source", broken)
    with pytest.raises(ZeroDivisionError):
        main(["encode", str(positions)])


def test_every_subcommand_module_registers_a_handler() -> None:
    parser = cli_main.build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    [subparsers] = actions
    assert "encode" in subparsers.choices  # type: ignore[operator]
    for name, sub in subparsers.choices.items():  # type: ignore[union-attr]
        assert callable(sub.get_default("func")), name


def test_python_dash_m_runs_the_cli() -> None:
    seeds = REPO / "seeds" / "strike_at_tanf.geojson"
    done = subprocess.run(
        [sys.executable, "-m", "hexpsi.server.cli", "encode", str(seeds), "--res", "7"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stderr == (
        "read 1 feature from strike_at_tanf.geojson: 1 point (radius 1,500 m); "
        "5 cells at res 7, 28.3 km²\n"
    )
    result = json.loads(done.stdout)
    assert result["resolution"] == 7
    assert result["features"][0]["id"] == "strike-at-tanf"


# --- files as GIS tools write them -------------------------------------------------

GIS = REPO / "tests" / "fixtures" / "gis"


def run_read(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[dict[str, object], str]:
    """A successful JSON encode: its result and the line saying what it read."""
    code = main(["encode", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err.count("\n") == 1
    return json.loads(out), err.removesuffix("\n")


def test_a_qgis_radius_attribute_is_an_error_until_it_is_named(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The regression: ``Radius_m`` was ignored, 2 cells and 0.23 km² instead of ~40 km²."""
    sites = str(GIS / "qgis_sites.geojson")
    message = run_error(capsys, sites)
    assert message.startswith(
        f"{sites}: feature 1 (index 0): properties.Radius_m looks like a distance"
    )
    assert "read it with --radius-field Radius_m for points" in message
    result, read = run_read(capsys, sites, "--radius-field", "Radius_m")
    assert 38 < float(result["area_km2"]) < 46  # type: ignore[arg-type]
    assert read == (
        f"read 2 features from qgis_sites.geojson: 2 points (radius 1,500–3,000 m); "
        f"{result['count']} cells at res 9, {float(result['area_km2']):.3g} km²"  # type: ignore[arg-type]
    )
    assert [f["id"] for f in result["features"]] == [1, 2]  # type: ignore[attr-defined]


def test_a_radius_under_any_distance_name_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "layer.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"fid": 4, "radius": 2000},
                        "geometry": {"type": "Point", "coordinates": [38.618, 33.506]},
                    }
                ],
            }
        )
    )
    assert "feature 4 (index 0): properties.radius looks like a distance" in run_error(
        capsys, str(path)
    )
    result, _ = run_read(capsys, str(path), "--radius-field", "radius")
    assert 10 < float(result["area_km2"]) < 20  # type: ignore[arg-type]
    assert "--radius-field radius_km looks like a distance in km" in run_error(
        capsys, str(path), "--radius-field", "radius_km"
    )


def test_bare_csv_points_are_encoded_but_the_summary_says_radius_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result, read = run_read(capsys, str(GIS / "bare_points.csv"))
    assert read == (
        "read 2 features from bare_points.csv: 2 points (radius 0 m); 2 cells at res 9, 0.231 km²"
    )
    assert result["count"] == 2


def test_excel_files_are_read_by_their_headers(capsys: pytest.CaptureFixture[str]) -> None:
    german, read = run_read(capsys, str(GIS / "excel_de.csv"))
    assert [f["id"] for f in german["features"]] == ["At-Tanf garrison", "Tanf supply point"]  # type: ignore[attr-defined]
    assert "2 points (radius 1,500–3,000 m)" in read
    assert "column 'Radius' looks like a distance" in run_error(capsys, str(GIS / "excel_xy.csv"))
    swiss, _ = run_read(capsys, str(GIS / "excel_xy.csv"), "--radius-field", "Radius")
    assert swiss["cells"] == german["cells"]


def test_several_files_mixed_with_clashing_ids_prefixed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"lat;lng;fid\n36.2;37.1;2\n")))
    result, read = run_read(
        capsys,
        str(GIS / "qgis_sites.geojson"),
        str(GIS / "qgis_areas.geojson"),
        str(GIS / "excel_de.csv"),
        "-",
        *("--radius-field", "Radius_m", "--buffer-field", "Buffer"),
    )
    assert [f["id"] for f in result["features"]] == [  # type: ignore[attr-defined]
        "qgis_sites.geojson:1",
        "qgis_sites.geojson:2",
        "qgis_areas.geojson:1",
        "qgis_areas.geojson:2",
        "At-Tanf garrison",
        "Tanf supply point",
        "<stdin>:2",
    ]
    assert read.startswith(
        "read 7 features from 4 files: 5 points (radius 0–3,000 m), "
        "2 polygons (buffer 250–1,000 m); "
    )
    two, read = run_read(capsys, str(GIS / "qgis_strike.geojson"), str(GIS / "excel_de.csv"))
    assert read.startswith("read 3 features from qgis_strike.geojson and excel_de.csv: 3 points")
    assert [f["id"] for f in two["features"]] == [1, "At-Tanf garrison", "Tanf supply point"]  # type: ignore[attr-defined]


def test_stdin_once_and_no_file_twice(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_error(capsys, "-", "-") == "standard input (-) can be read only once"
    strike = str(GIS / "qgis_strike.geojson")
    assert run_error(capsys, strike, strike) == f"{strike} is given more than once"


def test_a_projected_crs_is_refused_by_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    qgis = json.loads((GIS / "qgis_strike.geojson").read_text())
    qgis["crs"]["properties"]["name"] = "urn:ogc:def:crs:EPSG::3857"
    path = tmp_path / "mercator.geojson"
    path.write_text(json.dumps(qgis))
    assert run_error(capsys, str(path)) == (
        f"{path}: coordinates are in urn:ogc:def:crs:EPSG::3857, not longitude and latitude "
        "(WGS84); hexpsi does not reproject (export the layer as EPSG:4326 (WGS 84) GeoJSON; "
        "in QGIS: Export, Save Features As, CRS EPSG:4326)"
    )
