"""``hexpsi status``: what a running node has served, spent and cached, as text and JSON."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from pathlib import Path

import pytest

from hexpsi.protocol.times import rfc3339
from hexpsi.server.cli.main import main
from hexpsi.server.clients.check import run_check
from hexpsi.server.node.epochs import EpochStore
from hexpsi.server.services.app import start_server
from tests.server.conftest import (
    BIG_BUDGET_KM2,
    PROPOSER,
    RESPONDER,
    STRIKES,
    make_pair,
)

REQUIRED = {"name", "fingerprint", "listen", "serving", "epoch", "peers", "equivocations"}
PEER_KEYS = {
    "name",
    "address",
    "budget_km2",
    "spent_km2",
    "left_km2",
    "window_hours",
    "last_check",
    "cached_epoch",
}


async def status(capsys: pytest.CaptureFixture[str], directory: Path, *flags: str) -> str:
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["status", str(directory), *flags]) == 0
    return capsys.readouterr().out


def iso(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


async def test_status_of_a_serving_node_after_a_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = make_pair(tmp_path)
    running = await start_server(pair.responder)
    try:
        report = await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
        shown = json.loads(await status(capsys, pair.responder.directory, "--json"))
        text = await status(capsys, pair.responder.directory)
    finally:
        await running.stop(grace=1.0)
    assert set(shown) >= REQUIRED
    assert shown["name"] == RESPONDER
    assert shown["fingerprint"] == pair.responder.certificate_sha256
    assert shown["serving"] is True
    assert shown["servers"][0]["listen"] == pair.responder.config.listen
    assert shown["servers"][0]["peers_applied"] is True
    epoch = shown["epoch"]
    served = report.descriptor.descriptor
    assert epoch["id"] == served.epoch_id.hex()
    assert epoch["sequence"] == served.sequence
    assert iso(epoch["valid_until"]) == pytest.approx(served.valid_until, abs=1)
    assert iso(epoch["created"]) == pytest.approx(served.created_at, abs=1)
    assert epoch["padded"] >= epoch["cells"] > 0
    assert shown["next_epoch"] is None
    (peer,) = shown["peers"]
    assert set(peer) >= PEER_KEYS
    assert peer["name"] == PROPOSER
    charged = report.area_km2
    assert peer["spent_km2"] == pytest.approx(charged, rel=1e-6)
    assert peer["left_km2"] == pytest.approx(BIG_BUDGET_KM2 - charged, rel=1e-6)
    assert abs(iso(peer["last_check"]) - time.time()) < 60
    assert shown["equivocations"] == []
    assert f"server    running on {pair.responder.config.listen}" in text
    assert f"epoch     {served.sequence} (" in text
    assert "equivocations: none seen" in text


async def test_status_of_the_proposer_shows_the_cached_peer_epoch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = make_pair(tmp_path)
    running = await start_server(pair.responder)
    try:
        report = await run_check(pair.proposer, RESPONDER, STRIKES["direct"])
    finally:
        await running.stop(grace=1.0)
    shown = json.loads(await status(capsys, pair.proposer.directory, "--json"))
    assert shown["serving"] is False
    assert shown["epoch"] is None
    (peer,) = shown["peers"]
    cached = peer["cached_epoch"]
    assert cached["sequence"] == report.descriptor.descriptor.sequence
    assert cached["id"] == report.descriptor.descriptor.epoch_id.hex()
    assert cached["expired"] is False
    assert peer["last_check"] is None
    assert peer["last_check_sent"] is not None
    text = await status(capsys, pair.proposer.directory)
    assert "server    not running" in text
    assert "epoch     none" in text


async def test_status_shows_a_scheduled_epoch_and_changed_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = make_pair(tmp_path)
    positions = tmp_path / "positions.csv"
    positions.write_text("lat,lon,radius_m\n33.3,38.6,500\n")
    directory = str(pair.responder.directory)
    begins = time.time() + 3600
    assert main(["positions", directory, str(positions)]) == 0
    assert main(["positions", directory, str(positions), "--valid-from", rfc3339(begins)]) == 0
    positions.write_text("lat,lon,radius_m\n33.3,38.6,900\n")
    shown = json.loads(await status(capsys, pair.responder.directory, "--json"))
    assert shown["epoch"]["sequence"] == 2
    assert shown["next_epoch"]["sequence"] == 3
    assert iso(shown["next_epoch"]["created"]) == pytest.approx(begins, abs=1)
    assert [f["now"] for f in shown["epoch"]["sources"]] == ["changed"]
    assert shown["epoch"]["sources"][0]["path"] == str(positions.resolve())
    assert shown["renewal"]["next"] is None, "nothing is renewed before the scheduled epoch"
    text = await status(capsys, pair.responder.directory)
    assert "next      3 (" in text
    assert "sources changed since" in text
    scheduled = EpochStore(pair.responder).load(3)
    assert shown["next_epoch"]["cells"] == len(scheduled.protected_cells())
    scheduled.blocks.close()
