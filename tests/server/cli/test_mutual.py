"""``hexpsi mutual`` through ``main``: the count, its area, the receipt, and clear errors.

``mutual`` runs in a worker thread (``asyncio.to_thread(main, ...)``) so the
responder's server keeps running on the test's event loop meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import h3.api.basic_int as h3
import pytest
import pytest_asyncio

from hexpsi.protocol.budget import cell_area_km2
from hexpsi.server.cli.main import main
from hexpsi.server.node.mutual_records import load_receipt
from hexpsi.server.services.app import RunningServer, start_server
from tests.server.conftest import CENTER, RES, RESPONDER, Pair, make_epoch, make_pair

RESPONDER_MAP = frozenset(h3.grid_disk(CENTER, 6))
PROPOSER_MAP = frozenset(h3.grid_disk(h3.grid_ring(CENTER, 8)[0], 6))
SHARED = len(RESPONDER_MAP & PROPOSER_MAP)


@pytest.fixture
def nodes(tmp_path: Path) -> Pair:
    pair = make_pair(tmp_path, epoch=False)
    make_epoch(pair.responder, RESPONDER_MAP)
    make_epoch(pair.proposer, PROPOSER_MAP)
    return pair


@pytest_asyncio.fixture
async def running(nodes: Pair) -> AsyncIterator[RunningServer]:
    server = await start_server(nodes.responder)
    try:
        yield server
    finally:
        await server.stop(grace=1.0)


async def mutual(*argv: str) -> int:
    return await asyncio.to_thread(main, ["mutual", *argv])


async def test_mutual_prints_the_count_and_its_area(
    nodes: Pair, running: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert SHARED > 0
    assert await mutual(str(nodes.proposer.directory), "--peer", RESPONDER) == 0
    out = capsys.readouterr().out
    area = SHARED * cell_area_km2(RES)
    assert out.startswith(f"CLOSE: {SHARED} cells at res {RES} are occupied by both")
    assert f"about {area:.2f} km²" in out
    assert f"your map covers {len(PROPOSER_MAP)} cells" in out
    assert "receipt " in out


async def test_mutual_json_carries_peer_count_and_receipt(
    nodes: Pair, running: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await mutual(str(nodes.proposer.directory), "--peer", RESPONDER, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["peer"] == RESPONDER
    assert report["shared_cells"] == SHARED
    assert report["shared_area_km2"] == pytest.approx(SHARED * cell_area_km2(RES))
    assert report["res"] == RES
    receipt = load_receipt(nodes.proposer, report["receipt"])
    assert receipt.statement.shared_cells == SHARED
    assert Path(report["receipt_file"]).is_file()
    # The responder holds the same receipt.
    assert load_receipt(nodes.responder, report["receipt"]) == receipt


async def test_maps_apart_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pair = make_pair(tmp_path, epoch=False)
    make_epoch(pair.responder, RESPONDER_MAP)
    make_epoch(pair.proposer, frozenset(h3.grid_disk(h3.grid_ring(CENTER, 40)[0], 3)))
    server = await start_server(pair.responder)
    try:
        assert await mutual(str(pair.proposer.directory), "--peer", RESPONDER) == 0
    finally:
        await server.stop(grace=1.0)
    assert capsys.readouterr().out.startswith(f"APART: 0 cells at res {RES}")


async def test_an_unknown_peer_is_one_clear_line(
    nodes: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await mutual(str(nodes.proposer.directory), "--peer", "nobody") == 1
    err = capsys.readouterr().err
    assert err.startswith("hexpsi: error: ")
    assert "nobody" in err
    assert "Traceback" not in err


async def test_no_own_positions_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = make_pair(tmp_path)  # only the responder has an epoch
    assert await mutual(str(pair.proposer.directory), "--peer", RESPONDER) == 1
    err = capsys.readouterr().err
    assert "no protected positions to compare" in err
    assert "hexpsi positions" in err


async def test_an_unreachable_peer_is_one_clear_line(
    nodes: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await mutual(str(nodes.proposer.directory), "--peer", RESPONDER) == 1
    err = capsys.readouterr().err
    assert f"peer {RESPONDER} is unreachable" in err


async def test_plaintext_on_loopback_works_when_asked_for(
    nodes: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_server(nodes.responder, plaintext=True)
    try:
        argv = [str(nodes.proposer.directory), "--peer", RESPONDER, "--plaintext", "--json"]
        assert await mutual(*argv) == 0
    finally:
        await server.stop(grace=1.0)
    assert json.loads(capsys.readouterr().out)["shared_cells"] == SHARED
