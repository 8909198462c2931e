"""Checks with time over real gRPC and mutual TLS: windows, timed and moving positions.

The responder protects a garrison (standing), a field hospital open from 2 h
to 5 h from now, and a convoy driving a 20 km road from 3 h to 4 h from now.
Strikes at the convoy's road are CLEAR outside its hour and CONFLICT inside
it, and say when; a strike at the garrison conflicts whatever the window.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.check.zone_evidence import ZoneEvidence, verify_zone_evidence
from hexpsi.protocol.errors import HexpsiError, InputError, Status
from hexpsi.protocol.geo.shapes import Circle, Feature
from hexpsi.protocol.geo.shapes import Path as Route
from hexpsi.protocol.geo.timed_cover import timed_cover
from hexpsi.protocol.geo.zone import StrikeZone
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.server.clients.check import run_check
from hexpsi.server.node.epochs import EpochStore
from hexpsi.server.node.renewal import publish
from hexpsi.server.services.app import RunningServer, start_server
from tests.server.conftest import CENTER, RESPONDER, Pair, make_pair

HOUR = 3600.0
RES = 9
GARRISON = h3.cell_to_latlng(CENTER)
ROAD = ((GARRISON[0] + 0.10, GARRISON[1] + 0.10), (GARRISON[0] + 0.10, GARRISON[1] + 0.31))


@dataclass
class Scene:
    pair: Pair
    server: RunningServer
    start: float
    """When the epoch began."""

    def at(self, hours: float) -> float:
        return self.start + hours * HOUR


def timed_positions(start: float) -> list[Feature]:
    hospital = Feature(
        "hospital",
        (Circle((GARRISON[0] - 0.1, GARRISON[1]), 300.0),),
        (Interval(start + 2 * HOUR, start + 5 * HOUR),),
    )
    middle = ((ROAD[0][0] + ROAD[1][0]) / 2, (ROAD[0][1] + ROAD[1][1]) / 2)
    convoy = Feature(
        "convoy",
        (Route((ROAD[0], middle), 200.0), Route((middle, ROAD[1]), 200.0)),
        (
            Interval(start + 3 * HOUR, start + 3.5 * HOUR),
            Interval(start + 3.5 * HOUR, start + 4 * HOUR),
        ),
    )
    return [hospital, convoy]


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[Scene]:
    pair = make_pair(tmp_path, epoch=False)
    start = time.time()
    standing = set(h3.grid_disk(CENTER, 1))
    timed = timed_cover(timed_positions(start), RES, 1_000_000)
    EpochStore(pair.responder).create(standing, now=start, timed_cells=timed, workers=1)
    server = await start_server(pair.responder)
    try:
        yield Scene(pair, server, start)
    finally:
        await server.stop(grace=1.0)


def strike_at(point: tuple[float, float], window: Interval | None, name: str = "s") -> StrikeZone:
    when = None if window is None else (window,)
    return StrikeZone((Feature(name, (Circle(point, 150.0),), when),))


ON_THE_ROAD = ((ROAD[0][0] + ROAD[1][0]) / 2, ROAD[0][1] + 0.05)


async def test_the_right_place_at_the_wrong_hour_is_clear(scene: Scene) -> None:
    zone = strike_at(ON_THE_ROAD, Interval(scene.at(6), scene.at(8)))
    report = await run_check(scene.pair.proposer, RESPONDER, zone)
    assert not report.result.conflict
    assert report.volume_km2h > 0


async def test_the_right_place_at_the_right_hour_conflicts_and_says_when(scene: Scene) -> None:
    window = Interval(scene.at(2.5), scene.at(4.5))
    report = await run_check(scene.pair.proposer, RESPONDER, strike_at(ON_THE_ROAD, window))
    result = report.result
    assert result.conflict
    assert not result.standing_cells
    assert result.timed_hits
    convoy = Interval(scene.at(3), scene.at(3.5))
    slot = 15 * 60
    for hit in result.timed_hits:
        assert hit.window == window
        # Each reported time node lies in the window rounded outward to slots, and
        # overlaps the convoy's time on that leg rounded outward too.
        assert window.start - slot <= hit.interval.start
        assert hit.interval.end <= window.end + slot
        assert hit.interval.start <= convoy.end + slot
        assert hit.interval.end >= convoy.start - slot
    bundle = ZoneEvidence.from_json((report.directory / "evidence.json").read_bytes())
    verdict = verify_zone_evidence(bundle, scene.pair.responder.own_identity().verify_key)
    assert verdict.conflict
    assert verdict.conflicting_cells == result.conflicting_cells
    assert {interval for interval, _ in verdict.conflicting_times} == {
        hit.interval for hit in result.timed_hits
    }


async def test_without_a_window_the_whole_horizon_is_asked(scene: Scene) -> None:
    report = await run_check(scene.pair.proposer, RESPONDER, strike_at(ON_THE_ROAD, None))
    assert report.result.conflict
    assert all(hit.window is None for hit in report.result.timed_hits)


async def test_a_standing_position_conflicts_whatever_the_window(scene: Scene) -> None:
    window = Interval(scene.at(10), scene.at(11))
    report = await run_check(scene.pair.proposer, RESPONDER, strike_at(GARRISON, window))
    assert report.result.conflict
    assert report.result.standing_cells


async def test_a_window_outside_the_epoch_is_refused_before_anything_is_sent(
    scene: Scene,
) -> None:
    zone = strike_at(ON_THE_ROAD, Interval(scene.at(30), scene.at(31)))
    with pytest.raises(InputError) as caught:
        await run_check(scene.pair.proposer, RESPONDER, zone)
    assert "outside the epoch's horizon" in caught.value.message
    assert not (scene.pair.proposer.directory / "checks").exists()


async def test_the_space_time_budget_refuses_what_it_cannot_pay(scene: Scene) -> None:
    scene.pair.responder.update_peer(scene.pair.proposer.name, budget_km2h=0.5)
    scene.server.peers.poll()  # what the running server does within a second
    window = Interval(scene.at(2), scene.at(8))
    with pytest.raises(HexpsiError) as caught:
        await run_check(scene.pair.proposer, RESPONDER, strike_at(ON_THE_ROAD, window))
    assert caught.value.status is Status.RESOURCE_EXHAUSTED
    assert "space-time budget" in caught.value.message
    assert "km²·h" in caught.value.message


async def test_a_renewal_keeps_the_timed_positions(scene: Scene) -> None:
    store = EpochStore(scene.pair.responder)
    before = store.serving(time.time())
    assert before is not None
    kept = before.timed_cells()
    before.blocks.close()
    assert kept
    with scene.pair.responder.open_audit_log() as audit:
        renewed = publish(store, audit, before.protected_cells(), now=time.time(), timed_cells=kept)
    assert renewed.timed_cells() == kept
    renewed.blocks.close()
    window = Interval(scene.at(3), scene.at(3.25))
    report = await run_check(scene.pair.proposer, RESPONDER, strike_at(ON_THE_ROAD, window))
    assert report.result.conflict
    assert report.descriptor.descriptor.sequence == renewed.sequence
