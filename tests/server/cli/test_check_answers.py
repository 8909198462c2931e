"""``hexpsi check`` answers an operator can act on: per target, per peer, dry runs, exit codes.

Three real nodes on loopback with mutual TLS: bravo checks a strike package of
three targets against alpha and charlie, which protect different places.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import h3.api.basic_int as h3
import pytest
import pytest_asyncio

from hexpsi.server.cli.main import main
from hexpsi.server.node.directory import Node
from hexpsi.server.services.app import RunningServer, start_server
from tests.server.conftest import (
    CENTER,
    FAR,
    OUTSIDER,
    PROPOSER,
    RESPONDER,
    make_epoch,
    make_nodes,
)

TARGETS = {
    "garrison-strike": (CENTER, 400.0),
    "far-strike": (FAR, 300.0),
    "empty-desert": (h3.latlng_to_cell(34.2, 39.9, 9), 200.0),
}


def strike_file(path: Path) -> Path:
    features = []
    for name, (cell, radius) in TARGETS.items():
        lat, lng = h3.cell_to_latlng(cell)
        features.append(
            {
                "type": "Feature",
                "id": name,
                "properties": {"radius_m": radius},
                "geometry": {"type": "Point", "coordinates": [lng, lat]},
            }
        )
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


@pytest.fixture
def trio(tmp_path: Path) -> dict[str, Node]:
    """alpha protects the garrison, charlie the far hill; bravo checks both."""
    nodes = make_nodes(tmp_path / "nodes", [RESPONDER, PROPOSER, OUTSIDER])
    make_epoch(nodes[RESPONDER], h3.grid_disk(CENTER, 1))
    make_epoch(nodes[OUTSIDER], h3.grid_disk(FAR, 1))
    return nodes


@pytest_asyncio.fixture
async def serving(trio: dict[str, Node]) -> AsyncIterator[dict[str, RunningServer]]:
    servers = {name: await start_server(trio[name]) for name in (RESPONDER, OUTSIDER)}
    try:
        yield servers
    finally:
        for server in servers.values():
            await server.stop(grace=1.0)


async def check(trio: dict[str, Node], strike: Path, *argv: str) -> int:
    return await asyncio.to_thread(
        main, ["check", str(trio[PROPOSER].directory), str(strike), *argv]
    )


def out_json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


async def test_every_target_gets_its_verdict(
    trio: dict[str, Node],
    serving: dict[str, RunningServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    strike = strike_file(tmp_path / "package.geojson")
    assert await check(trio, strike, "--peer", RESPONDER, "--json") == 0
    report = out_json(capsys)
    verdicts = {f["id"]: f["conflict"] for f in report["features"]}
    assert verdicts == {"garrison-strike": True, "far-strike": False, "empty-desert": False}
    garrison = next(f for f in report["features"] if f["id"] == "garrison-strike")
    assert set(garrison["conflicting_cells"]) == set(report["conflicting_cells"])
    assert set(garrison["conflicting_cells"]) <= set(garrison["cells"])
    assert await check(trio, strike, "--peer", RESPONDER) == 0
    text = capsys.readouterr().out
    assert text.startswith("CONFLICT: ")
    assert "targets in conflict: garrison-strike (" in text
    assert "clear: far-strike, empty-desert" in text
    assert "created 20" in text
    assert "valid until 20" in text


async def test_all_peers_are_checked_at_once_and_each_answers(
    trio: dict[str, Node],
    serving: dict[str, RunningServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    strike = strike_file(tmp_path / "package.geojson")
    assert await check(trio, strike, "--all-peers", "--json") == 0
    document = out_json(capsys)
    assert document["conflict"] is True
    by_peer = {result["peer"]: result for result in document["results"]}
    assert set(by_peer) == {RESPONDER, OUTSIDER}
    assert {f["id"] for f in by_peer[RESPONDER]["features"] if f["conflict"]} == {"garrison-strike"}
    assert {f["id"] for f in by_peer[OUTSIDER]["features"] if f["conflict"]} == {"far-strike"}
    assert await check(trio, strike, "--peer", RESPONDER, "--peer", OUTSIDER) == 0
    text = capsys.readouterr().out
    assert text.count("CONFLICT: ") == 2


async def test_a_peer_that_cannot_answer_is_reported_beside_the_others(
    trio: dict[str, Node],
    serving: dict[str, RunningServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await serving[OUTSIDER].stop(grace=0.5)
    strike = strike_file(tmp_path / "package.geojson")
    code = await check(trio, strike, "--all-peers", "--json")
    captured = capsys.readouterr()
    assert code == 1
    document = json.loads(captured.out)
    (answered,) = [r for r in document["results"] if "error" not in r]
    (failed,) = [r for r in document["results"] if "error" in r]
    assert answered["peer"] == RESPONDER
    assert answered["conflict"] is True
    assert failed["peer"] == OUTSIDER
    assert "unreachable" in failed["error"]
    errors = [line for line in captured.err.splitlines() if line.startswith("hexpsi: error:")]
    assert errors == [
        line for line in errors if line.startswith(f"hexpsi: error: peer {OUTSIDER}: ")
    ]
    assert len(errors) == 1
    assert captured.err.splitlines()[-1].startswith("read 3 features from package.geojson")
    # --exit-code: a known conflict outranks a check that could not be done.
    assert await check(trio, strike, "--all-peers", "--exit-code") == 2
    capsys.readouterr()


async def test_exit_codes_say_conflict_clear_or_failed(
    trio: dict[str, Node],
    serving: dict[str, RunningServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    strike = strike_file(tmp_path / "package.geojson")
    clear = tmp_path / "clear.geojson"
    lat, lng = h3.cell_to_latlng(TARGETS["empty-desert"][0])
    clear.write_text(
        json.dumps({"type": "Point", "coordinates": [lng, lat]}),
    )
    assert await check(trio, strike, "--peer", RESPONDER, "--exit-code") == 2
    assert await check(trio, clear, "--all-peers", "--exit-code") == 0
    assert await check(trio, strike, "--peer", RESPONDER) == 0, "without it, done is 0"
    await serving[RESPONDER].stop(grace=0.5)
    assert await check(trio, clear, "--all-peers", "--exit-code") == 1
    capsys.readouterr()


async def test_a_repeated_peer_is_refused_not_dropped(
    trio: dict[str, Node], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    strike = strike_file(tmp_path / "package.geojson")
    assert await check(trio, strike, "--peer", RESPONDER, "--peer", RESPONDER) == 1
    err = capsys.readouterr().err
    assert f"--peer {RESPONDER} is given more than once" in err


async def test_a_dry_run_says_what_it_would_cost_and_evaluates_nothing(
    trio: dict[str, Node],
    serving: dict[str, RunningServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    strike = strike_file(tmp_path / "package.geojson")
    assert await check(trio, strike, "--peer", RESPONDER, "--dry-run", "--json") == 0
    plan = out_json(capsys)
    assert plan["dry_run"] is True
    assert plan["checks"] == 1
    assert plan["padded_elements"] >= plan["tokens"] > 0
    assert plan["area_km2"] > 0
    assert plan["epoch"]["sequence"] == 1
    assert "conflict" not in plan
    assert [e.kind for e in serving[RESPONDER].audit.entries()] == []
    assert serving[RESPONDER].ledger.sizes() == (0, 0)
    assert not (trio[PROPOSER].directory / "checks").exists()
    # The real check is charged exactly what the dry run said.
    assert await check(trio, strike, "--peer", RESPONDER, "--json") == 0
    report = out_json(capsys)
    assert report["area_charged_km2"] == pytest.approx(plan["area_km2"])
    assert report["elements_sent"] == plan["padded_elements"]


async def test_geojson_carries_who_what_and_which_target_and_outlines_merge_cells(
    trio: dict[str, Node],
    serving: dict[str, RunningServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    strike = strike_file(tmp_path / "package.geojson")
    cells_out, outline_out = tmp_path / "cells.geojson", tmp_path / "outline.geojson"
    assert await check(trio, strike, "--all-peers", "--json", "--geojson", str(cells_out)) == 0
    document = out_json(capsys)
    collection = json.loads(cells_out.read_text())
    for item in collection["features"]:
        assert {"peer", "epoch", "receipt", "feature_id", "role"} <= set(item["properties"])
    per_peer = {r["peer"]: r for r in document["results"]}
    for peer, result in per_peer.items():
        drawn = [f for f in collection["features"] if f["properties"]["peer"] == peer]
        assert len(drawn) == sum(len(t["cells"]) for t in result["features"])
        conflicting = {
            f["properties"]["cell"] for f in drawn if f["properties"]["role"] == "conflict"
        }
        assert conflicting == set(result["conflicting_cells"])
    argv = ("--all-peers", "--geojson", str(outline_out), "--outline")
    assert await check(trio, strike, *argv) == 0
    capsys.readouterr()
    outlines = json.loads(outline_out.read_text())["features"]
    # One strike outline per target per peer, plus one conflict outline per hit target.
    assert len(outlines) == 2 * len(TARGETS) + 2
    roles = sorted(
        (f["properties"]["peer"], f["properties"]["feature_id"])
        for f in outlines
        if f["properties"]["role"] == "conflict"
    )
    assert roles == [(RESPONDER, "garrison-strike"), (OUTSIDER, "far-strike")]
