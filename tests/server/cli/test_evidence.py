"""``hexpsi evidence verify`` and ``evidence open`` through ``main``, after a real ``check``.

The proposer runs ``hexpsi check`` over mutual TLS with a GeoJSON strike, then
a third party (holding only the bundle and ``hexpsi identity`` of the
responder) verifies it; the responder opens cells and the third party verifies
those too.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import h3.api.basic_int as h3
import pytest

from hexpsi.server.cli.main import main
from hexpsi.server.services.app import RunningServer, start_server
from tests.server.conftest import CENTER, FAR, OUTPOST, RESPONDER, Pair, edit_config, make_pair

STRIKE = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "garrison",
            "properties": {"radius_m": 700},
            "geometry": {"type": "Point", "coordinates": list(h3.cell_to_latlng(CENTER))[::-1]},
        },
        {
            "type": "Feature",
            "id": "road",
            "properties": {},
            "geometry": {
                "type": "LineString",
                "coordinates": [list(h3.cell_to_latlng(FAR))[::-1], [40.12, 34.92]],
            },
        },
    ],
}
"""A point with its own radius and a line that takes ``--radius-m`` (150 m)."""


async def checked_bundle(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, dict[str, Any]]:
    """Run ``hexpsi check``; the stored bundle's path and the check's ``--json`` report."""
    strike = tmp_path / "strike.geojson"
    strike.write_text(json.dumps(STRIKE))
    argv = ["check", str(pair.proposer.directory), str(strike), "--peer", RESPONDER]
    assert await asyncio.to_thread(main, [*argv, "--radius-m", "150", "--json"]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return Path(report["evidence"]), report


@pytest.fixture
def identity(pair: Pair, tmp_path: Path) -> str:
    path = tmp_path / "alpha.json"
    path.write_bytes(pair.responder.own_identity().to_bytes())
    return str(path)


@pytest.fixture
async def bundle(
    pair: Pair, served: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, dict[str, Any]]:
    return await checked_bundle(pair, tmp_path, capsys)


async def test_the_check_keeps_a_v2_bundle_with_the_zone_as_read(
    bundle: tuple[Path, dict[str, Any]],
) -> None:
    path, _ = bundle
    document = json.loads(path.read_text())
    assert document["format"] == "hexpsi/v2/evidence"
    zone = document["zone"]
    assert zone["res"] == 9
    assert zone["default_radius_m"] == 150.0
    assert zone["window"] is None
    garrison, road = zone["features"]
    assert garrison["id"] == "garrison"
    assert garrison["shapes"][0]["radius_m"] == 700.0
    assert road["shapes"][0]["buffer_m"] == 150.0
    assert isinstance(document["received_at"], float)


async def test_verify_json_gives_the_checks_answer(
    bundle: tuple[Path, dict[str, Any]], identity: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path, report = bundle
    assert main(["evidence", "verify", str(path), "--responder", identity, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert set(answer) == {
        "valid",
        "responder",
        "proposer",
        "epoch",
        "epoch_sequence",
        "checked_at",
        "received_at",
        "receipt",
        "receipts",
        "conflict",
        "zone_cells",
        "zone_area_km2",
        "conflicting_cells",
        "conflicting_times",
    }
    assert answer["valid"] is True
    assert answer["conflict"] is report["conflict"] is True
    assert answer["conflicting_cells"] == report["conflicting_cells"]
    assert answer["receipt"] == report["receipt"]
    assert answer["epoch"] == report["epoch"]["id"]
    assert answer["zone_cells"] == report["strike_cells"]
    assert answer["responder"] == RESPONDER
    for key in ("checked_at", "received_at"):
        assert len(answer[key]) == len("2026-12-05T05:14:53Z")
        assert answer[key].endswith("Z")


async def test_verify_prints_a_short_summary_and_reads_stdin(
    bundle: tuple[Path, dict[str, Any]],
    identity: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, report = bundle
    stdin = io.TextIOWrapper(io.BytesIO(path.read_bytes()))
    monkeypatch.setattr("sys.stdin", stdin)
    assert main(["evidence", "verify", "-", "--responder", identity]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("VALID: bravo's whole strike zone (")
    assert "CONFLICT" in lines[0]
    assert f"receipt {report['receipt']}" in lines[1]


async def test_an_opened_cell_verifies_for_a_third_party(
    pair: Pair, identity: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = str(pair.responder.directory)
    for cell, inside in ((OUTPOST, True), (h3.cell_to_parent(CENTER, 5), True), (FAR, False)):
        out = tmp_path / f"{cell:x}.json"
        assert main(["evidence", "open", directory, f"{cell:x}", "-o", str(out)]) == 0
        err = capsys.readouterr().err
        assert f"opened cell {cell:x} of alpha's epoch 1" in err
        assert main(["evidence", "verify", str(out), "--responder", identity, "--json"]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert (answer["valid"], answer["cell"], answer["inside"]) == (True, f"{cell:x}", inside)
        assert main(["evidence", "verify", str(out), "--responder", identity]) == 0
        where = "IN" if inside else "NOT in"
        assert f"is {where} the committed snapshot of alpha's epoch 1" in capsys.readouterr().out


def test_open_writes_to_stdout_without_output(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evidence", "open", str(pair.responder.directory), f"{OUTPOST:x}"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["format"] == "hexpsi/v2/cell-opening"
    assert document["cell"] == f"{OUTPOST:x}"


async def test_a_check_against_another_resolution_records_the_peers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The proposer's own node works at res 8; the zone in the bundle is covered at 9."""
    pair = make_pair(tmp_path / "nodes")
    edit_config(pair.proposer.directory, res=8, res_min=5)
    running = await start_server(pair.responder)
    try:
        path, _ = await checked_bundle(pair, tmp_path, capsys)
    finally:
        await running.stop(grace=1.0)
    assert json.loads(path.read_text())["zone"]["res"] == 9
    identity = tmp_path / "alpha.json"
    identity.write_bytes(pair.responder.own_identity().to_bytes())
    assert main(["evidence", "verify", str(path), "--responder", str(identity)]) == 0
