"""``hexpsi positions``, ``check``, ``serve`` and ``demo`` through ``main`` (and a real process).

``check`` runs in a worker thread (``asyncio.to_thread(main, ...)``) so the
responder's server keeps running on the test's event loop meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import h3.api.basic_int as h3
import pytest
import pytest_asyncio
from nacl.signing import SigningKey

from hexpsi.protocol.geo.tokens import cells_inside, query_tokens
from hexpsi.protocol.times import rfc3339
from hexpsi.server.cli.main import main
from hexpsi.server.inputs import read_cover
from hexpsi.server.node.epochs import SOURCES_FILE, EpochStore
from hexpsi.server.services.app import RunningServer, start_server
from tests.server.conftest import (
    CENTER,
    FAR,
    OUTPOST,
    PROPOSER,
    RES,
    RES_MIN,
    RESPONDER,
    Pair,
    check_stub,
    current_descriptor,
    edit_config,
    make_pair,
    tls_channel,
)


def point_file(path: Path, *cells_and_radii: tuple[int, float]) -> Path:
    features = []
    for index, (cell, radius) in enumerate(cells_and_radii):
        lat, lng = h3.cell_to_latlng(cell)
        features.append(
            {
                "type": "Feature",
                "id": f"p{index}",
                "properties": {"radius_m": radius},
                "geometry": {"type": "Point", "coordinates": [lng, lat]},
            }
        )
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "positions": point_file(tmp_path / "positions.geojson", (CENTER, 150.0), (OUTPOST, 50.0)),
        "hit": point_file(tmp_path / "hit.geojson", (CENTER, 400.0)),
        "clear": point_file(tmp_path / "clear.geojson", (FAR, 400.0)),
    }


@pytest.fixture
def nodes(tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> Pair:
    pair = make_pair(tmp_path / "nodes", epoch=False)
    assert main(["positions", str(pair.responder.directory), str(files["positions"])]) == 0
    capsys.readouterr()
    return pair


@pytest_asyncio.fixture
async def running(nodes: Pair) -> AsyncIterator[RunningServer]:
    server = await start_server(nodes.responder)
    try:
        yield server
    finally:
        await server.stop(grace=1.0)


async def check(*argv: str) -> int:
    return await asyncio.to_thread(main, ["check", *argv])


def one_line_error(err: str) -> str:
    assert err.count("\n") == 1, err
    assert err.startswith("hexpsi: error: ")
    assert "Traceback" not in err
    return err


def test_positions_starts_an_epoch_and_logs_it(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pair = make_pair(tmp_path, epoch=False)
    directory = str(pair.responder.directory)
    protected = read_cover(files["positions"], res=RES)
    assert main(["positions", directory, str(files["positions"])]) == 0
    read, epoch, served = capsys.readouterr().err.splitlines()
    assert served.startswith("served from now until ")
    assert "(in 24 h 0 min)" in served or "(in 23 h 59 min)" in served
    assert read.startswith(
        "read 2 features from positions.geojson: 2 points (radius 50–150 m); "
        f"{len(protected)} cells at res {RES}, "
    )
    assert epoch.startswith("epoch 1 (")
    assert f"{len(protected)} protected cells at res {RES}" in epoch
    assert main(["positions", directory, str(files["positions"])]) == 0
    assert capsys.readouterr().err.splitlines()[1].startswith("epoch 2 (")
    with pair.responder.open_audit_log() as audit:
        entries = audit.entries()
        assert audit.verify() == 2
    assert [e.kind for e in entries] == ["epoch", "epoch"]
    details = json.loads(entries[1].details)
    assert (details["epoch_sequence"], details["protected_cells"]) == (2, len(protected))


def test_positions_schedules_an_epoch_and_remembers_its_sources(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pair = make_pair(tmp_path, epoch=False)
    directory = str(pair.responder.directory)
    positions = str(files["positions"])
    assert main(["positions", directory, positions, "--radius-field", "radius_m"]) == 0
    begins = time.time() + 2 * 3600
    ends = begins + 3600
    argv = ["positions", directory, positions, "--valid-from", rfc3339(begins)]
    assert main([*argv, "--valid-until", rfc3339(ends)]) == 0
    served = capsys.readouterr().err.splitlines()[-1]
    assert served.startswith(f"served from {rfc3339(begins)} (in ")
    assert f"until {rfc3339(ends)} (in " in served
    store = EpochStore(pair.responder)
    serving_now = store.serving_times(time.time())
    assert serving_now is not None
    assert serving_now.sequence == 1
    later = store.serving_times(begins + 1)
    assert later is not None
    assert later.sequence == 2
    assert store.serving_times(ends + 1) == later  # expired, nothing newer: refused on the wire
    sources = json.loads((store.root / "000002" / SOURCES_FILE).read_text())
    assert sources["files"] == [
        {
            "path": str(files["positions"].resolve()),
            "sha256": hashlib.sha256(files["positions"].read_bytes()).hexdigest(),
        }
    ]
    assert sources["options"]["radius_field"] == "radius_m"
    with pair.responder.open_audit_log() as audit:
        logged = json.loads(audit.entries()[-1].details)
    assert (logged["created_at"], logged["valid_until"]) == (
        pytest.approx(begins, abs=1),
        pytest.approx(ends, abs=1),
    )
    assert main(["positions", directory, positions]) == 0
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"warning: epoch 2, scheduled for {rfc3339(begins)}, will not be served: "
        "epoch 3 replaces it"
    )


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--valid-from", "tomorrow"], "--valid-from 'tomorrow' is not a time"),
        (["--valid-from", "2026-12-05T06:00:00"], "has no time zone"),
        (
            ["--valid-from", "2030-01-02T00:00:00Z", "--valid-until", "2030-01-01T00:00:00Z"],
            "an epoch must end after it begins",
        ),
        (["--valid-until", "2001-01-01T00:00:00Z"], "would already have ended"),
    ],
)
def test_positions_refuses_bad_times_in_one_line(
    tmp_path: Path,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    says: str,
) -> None:
    pair = make_pair(tmp_path, epoch=False)
    argv = ["positions", str(pair.responder.directory), str(files["positions"]), *flags]
    assert main(argv) == 1
    assert says in one_line_error(capsys.readouterr().err)
    assert not list((pair.responder.directory / "epochs").glob("0*"))


def test_positions_refuses_a_bad_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = make_pair(tmp_path, epoch=False)
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "Feature", "geometry": null, "properties": {}}')
    assert main(["positions", str(pair.responder.directory), str(bad)]) == 1
    assert "geometry" in one_line_error(capsys.readouterr().err)
    assert not (pair.responder.directory / "epochs").exists()


async def test_check_prints_conflict_and_clear(
    nodes: Pair,
    running: RunningServer,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory = str(nodes.proposer.directory)
    assert await check(directory, "--peer", RESPONDER, str(files["hit"])) == 0
    out = capsys.readouterr().out
    assert out.startswith("CONFLICT: ")
    assert "conflict with alpha's protected positions" in out
    assert await check(directory, "--peer", RESPONDER, str(files["clear"])) == 0
    out = capsys.readouterr().out
    assert out.startswith("CLEAR: 0 of ")
    assert "epoch 1 (" in out


async def test_check_json_and_geojson_say_exactly_what_conflicts(
    tmp_path: Path,
    nodes: Pair,
    running: RunningServer,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out_file = tmp_path / "result.geojson"
    argv = [str(nodes.proposer.directory), "--peer", RESPONDER, str(files["hit"])]
    assert await check(*argv, "--json", "--geojson", str(out_file)) == 0
    report = json.loads(capsys.readouterr().out)
    strike = read_cover(files["hit"], res=RES)
    protected = read_cover(files["positions"], res=RES)
    assert report["peer"] == RESPONDER
    assert report["conflict"] is True
    served = running.servicer.epochs.get().descriptor.descriptor
    assert report["epoch"]["id"] == served.epoch_id.hex()
    assert report["epoch"]["sequence"] == served.sequence
    assert report["epoch"]["created"] == rfc3339(served.created_at)
    assert report["epoch"]["valid_until"] == rfc3339(served.valid_until)
    (target,) = report["features"]
    assert target["conflict"] is True
    assert target["conflicting_cells"] == sorted(report["conflicting_cells"])
    assert report["strike_cells"] == len(strike)
    tokens = query_tokens(strike, res=RES, res_min=RES_MIN)
    # Each token is asked of standing positions and, over the whole horizon, of timed ones.
    assert report["tokens_sent"] == 2 * sum(len(group) for group in tokens.values())
    hit_cells = {
        cell
        for group in tokens.values()
        for token in group
        if cells_inside(token, res=RES) & protected
        for cell in cells_inside(token, res=RES)
    }
    assert strike & protected <= hit_cells
    assert set(report["conflicting_cells"]) == {h3.int_to_str(c) for c in hit_cells}
    assert (nodes.proposer.directory / "checks" / report["receipt"] / "receipt.bin").exists()
    collection = json.loads(out_file.read_text())
    assert collection["type"] == "FeatureCollection"
    roles: dict[str, str] = {}
    for feature in collection["features"]:
        assert feature["type"] == "Feature"
        assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
        ring = feature["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1]
        properties = feature["properties"]
        assert properties["peer"] == RESPONDER
        assert properties["epoch"] == report["epoch"]["id"]
        assert properties["receipt"] == report["receipt"]
        assert properties["feature_id"] == target["id"]
        roles[properties["cell"]] = properties["role"]
    assert set(roles) == {h3.int_to_str(c) for c in strike}
    assert {c for c, role in roles.items() if role == "conflict"} == set(
        report["conflicting_cells"]
    )


async def test_check_sees_new_positions_without_a_restart(
    nodes: Pair,
    running: RunningServer,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory = str(nodes.proposer.directory)
    assert await check(directory, "--peer", RESPONDER, str(files["clear"]), "--json") == 0
    assert json.loads(capsys.readouterr().out)["conflict"] is False
    assert main(["positions", str(nodes.responder.directory), str(files["clear"])]) == 0
    assert await check(directory, "--peer", RESPONDER, str(files["clear"]), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["conflict"], report["epoch"]["sequence"]) == (True, 2)
    assert await check(directory, "--peer", RESPONDER, str(files["hit"]), "--json") == 0
    assert json.loads(capsys.readouterr().out)["conflict"] is False


async def test_the_strike_is_covered_at_the_responders_resolution(
    nodes: Pair,
    running: RunningServer,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The proposer's own node works at res 8; the responder's descriptor says res 9.
    edit_config(nodes.proposer.directory, res=8, res_min=5)
    argv = [str(nodes.proposer.directory), "--peer", RESPONDER, str(files["hit"]), "--json"]
    assert await check(*argv) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["conflict"] is True
    assert report["strike_cells"] == len(read_cover(files["hit"], res=RES))
    assert {h3.get_resolution(h3.str_to_int(c)) for c in report["conflicting_cells"]} == {RES}


async def test_check_against_an_unreachable_peer_fails_in_one_line(
    nodes: Pair, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = await check(str(nodes.proposer.directory), "--peer", RESPONDER, str(files["hit"]))
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    err = one_line_error(captured.err)
    assert f"peer alpha is unreachable at {nodes.responder.config.listen}" in err


async def test_check_refuses_a_descriptor_the_pinned_key_did_not_sign(
    nodes: Pair,
    running: RunningServer,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    pinned = nodes.proposer.peer(RESPONDER).identity
    other_key = bytes(SigningKey.generate().verify_key)
    nodes.proposer.add_peer(replace(pinned, signing_public_key=other_key), replace=True)
    code = await check(str(nodes.proposer.directory), "--peer", RESPONDER, str(files["hit"]))
    assert code == 1
    err = one_line_error(capsys.readouterr().err)
    assert "epoch descriptor signature does not verify" in err
    assert [e.kind for e in running.audit.entries()] == ["epoch"]  # no evaluation


async def test_check_against_an_unknown_peer_fails_in_one_line(
    nodes: Pair, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = await check(str(nodes.proposer.directory), "--peer", "zulu", str(files["hit"]))
    assert code == 1
    err = one_line_error(capsys.readouterr().err)
    assert "unknown peer 'zulu' (pinned peers: alpha)" in err


async def test_check_with_an_exhausted_budget_says_so(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pair = make_pair(tmp_path / "nodes", budget_km2=0.5)
    server = await start_server(pair.responder)
    try:
        code = await check(str(pair.proposer.directory), "--peer", RESPONDER, str(files["hit"]))
    finally:
        await server.stop(grace=1.0)
    assert code == 1
    err = one_line_error(capsys.readouterr().err)
    assert "refused the check" in err
    assert "more than bravo's area budget (0.5 km² per 24 h) allows at all" in err


async def test_check_without_positions_on_the_peer_says_what_to_do(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pair = make_pair(tmp_path / "nodes", epoch=False)
    server = await start_server(pair.responder)
    try:
        code = await check(str(pair.proposer.directory), "--peer", RESPONDER, str(files["hit"]))
    finally:
        await server.stop(grace=1.0)
    assert code == 1
    assert "has no protected positions yet" in one_line_error(capsys.readouterr().err)


# ---------------------------------------------------------------- serve


async def test_hexpsi_serve_plaintext_answers_checks_and_follows_new_positions(
    nodes: Pair, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hexpsi.server.cli",
            "serve",
            str(nodes.responder.directory),
            "--plaintext",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        argv = [str(nodes.proposer.directory), "--peer", RESPONDER, str(files["hit"])]
        for _ in range(100):
            code = await check(*argv, "--plaintext", "--json")
            captured = capsys.readouterr()
            if code == 0 or "unreachable" not in captured.err:
                break
            await asyncio.sleep(0.1)
        assert code == 0, captured.err
        assert json.loads(captured.out)["conflict"] is True
        # A TLS client cannot talk to the plaintext server.
        assert await check(*argv) == 1
        assert "unreachable" in capsys.readouterr().err
        # New positions from another process reach the running server.
        assert main(["positions", str(nodes.responder.directory), str(files["clear"])]) == 0
        argv[-1] = str(files["clear"])
        assert await check(*argv, "--plaintext", "--json") == 0
        report = json.loads(capsys.readouterr().out)
        assert (report["conflict"], report["epoch"]["sequence"]) == (True, 2)
    finally:
        process.terminate()
        _, err = await asyncio.to_thread(process.communicate, timeout=30)
    assert process.returncode == 0
    assert "plaintext (loopback only)" in err


def test_serve_refuses_plaintext_off_loopback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = str(tmp_path / "wide")
    init = ["init", directory, "--name", "wide", "--listen", "0.0.0.0:7443"]
    assert main([*init, "--address", "127.0.0.1:7443"]) == 0
    capsys.readouterr()
    assert main(["serve", directory, "--plaintext"]) == 1
    err = one_line_error(capsys.readouterr().err)
    assert "refusing plaintext on 0.0.0.0:7443" in err


def test_serve_without_pinned_peers_says_how_to_pin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = str(tmp_path / "lone")
    assert main(["init", directory, "--name", "lone", "--listen", "127.0.0.1:7443"]) == 0
    capsys.readouterr()
    assert main(["serve", directory]) == 1
    err = one_line_error(capsys.readouterr().err)
    assert "no peers are pinned" in err
    assert "hexpsi peer add" in err


async def test_the_served_descriptor_is_the_one_positions_made(
    nodes: Pair, running: RunningServer
) -> None:
    async with tls_channel(nodes.responder, nodes.proposer) as channel:
        descriptor = await current_descriptor(check_stub(channel), nodes.responder)
    with nodes.responder.open_audit_log() as audit:
        (entry,) = audit.entries()
    assert json.loads(entry.details)["descriptor_digest"] == descriptor.digest.hex()
    assert entry.peer == RESPONDER
    assert PROPOSER not in entry.details.decode()


# ---------------------------------------------------------------- demo


def test_demo_json_runs_the_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["as_expected"] is True
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {
        "strike-at-tanf",
        "strike-far",
        "convoy-road-later",
        "convoy-road-now",
    }
    assert checks["strike-at-tanf"]["conflict"] is True
    assert checks["strike-at-tanf"]["conflicting_cells"]
    assert checks["strike-far"]["conflict"] is False
    assert checks["strike-far"]["conflicting_cells"] == []
    # The convoy's road: clear in a later window, a conflict while the convoy passes.
    assert checks["convoy-road-later"]["conflict"] is False
    assert checks["convoy-road-now"]["conflict"] is True
    assert (
        checks["convoy-road-now"]["window"]["start"]
        < checks["convoy-road-later"]["window"]["start"]
    )
    assert checks["convoy-road-now"]["volume_charged_km2h"] > 0
    assert report["nodes"]["coalition"]["timed_cells"] > 0
    assert all(c["evidence_verified"] for c in checks.values())
    assert all(c["peer"] == "coalition" for c in checks.values())
    # Each node logged its epoch; the responder also logged both evaluations.
    assert report["audit_entries"]["coalition"] >= 2


# ---------------------------------------------------------------- strikes from GIS files

REPO = Path(__file__).resolve().parents[3]
GIS = REPO / "tests" / "fixtures" / "gis"


async def test_a_swapped_strike_is_refused_by_the_theatre_instead_of_coming_back_clear(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The regression: the At-Tanf strike with its coordinates swapped came back CLEAR
    (it lies in Anatolia) where the right file gives CONFLICT. With a theatre declared
    it is refused, before anything is sent, and no check is stored."""
    pair = make_pair(tmp_path / "nodes", epoch=False)
    responder, proposer = str(pair.responder.directory), str(pair.proposer.directory)
    positions = REPO / "seeds" / "coalition_protected.geojson"
    assert main(["positions", responder, str(positions)]) == 0
    strike, swapped = GIS / "qgis_strike.geojson", GIS / "qgis_strike_swapped.geojson"
    server = await start_server(pair.responder)
    try:
        argv = [proposer, "--peer", RESPONDER]
        capsys.readouterr()
        assert await check(*argv, str(strike)) == 0
        captured = capsys.readouterr()
        assert captured.out.startswith("CONFLICT: ")
        assert captured.err.startswith(
            "read 1 feature from qgis_strike.geojson: 1 point (radius 1,500 m); "
        )
        assert captured.err.count("\n") == 1
        assert await check(*argv, str(swapped)) == 0
        assert capsys.readouterr().out.startswith("CLEAR: 0 of ")
        stored = sorted((pair.proposer.directory / "checks").iterdir())
        assert main(["theatre", proposer, str(GIS / "qgis_theatre.geojson")]) == 0
        capsys.readouterr()
        assert await check(*argv, str(swapped)) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        err = one_line_error(captured.err)
        assert (
            f"{swapped}: feature 1 has position [33.52, 38.64] (longitude, latitude) outside the "
            "theatre — are latitude and longitude swapped?"
        ) in err
        assert await check(*argv, str(strike), "--json") == 0
        assert json.loads(capsys.readouterr().out)["conflict"] is True
    finally:
        await server.stop(grace=1.0)
    assert len(sorted((pair.proposer.directory / "checks").iterdir())) == len(stored) + 1


async def test_a_strike_from_several_files(
    nodes: Pair, running: RunningServer, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(nodes.proposer.directory), "--peer", RESPONDER, "--json"]
    assert await check(*argv, str(files["clear"]), str(files["hit"])) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["conflict"] is True
    assert captured.err.startswith(
        "read 2 features from clear.geojson and hit.geojson: 2 points (radius 400 m); "
        f"{report['strike_cells']} cells at res {RES}, "
    )
    evidence = json.loads(Path(report["evidence"]).read_text())
    assert [f["id"] for f in evidence["zone"]["features"]] == ["clear.geojson:p0", "hit.geojson:p0"]
