"""The demo: two nodes on loopback with mutual TLS, the seeds scenario, checks, results.

Everything a real deployment does happens here, in a temporary directory: both
nodes are initialised with fresh keys, exchange identities and pin each other,
load their protected positions (new epochs), start real gRPC servers on
loopback ports, and the ``russia`` node checks two planned strikes against the
``coalition`` node. The At-Tanf strike must come back CONFLICT and the far one
CLEAR; the evidence of each check is verified the way a third party would,
as proof that the whole strike zone was checked.
Then the time story: the coalition also protects a humanitarian convoy on
the road north-west of At-Tanf, moving from 3 h to 5 h after the demo starts,
and russia checks a strike on that road twice: outside the convoy's hours
(CLEAR) and while it passes (CONFLICT, with when).
Then the two sides ask "are our forces close anywhere?" with a mutual check
(the seeds' positions share no cell), and both audit logs are verified.
"""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
import time
from dataclasses import dataclass, field, replace
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from hexpsi.protocol.check.zone_evidence import ZoneEvidence, verify_zone_evidence
from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.parse import read_features
from hexpsi.protocol.geo.shapes import Feature
from hexpsi.protocol.geo.timing import Role, TimeRules
from hexpsi.protocol.geo.zone import StrikeZone
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.protocol.times import rfc3339
from hexpsi.server.clients.check import CheckReport, run_check
from hexpsi.server.clients.mutual import MutualReport, run_mutual
from hexpsi.server.inputs import cover_features, cover_timed_features
from hexpsi.server.node.directory import Node, init_node
from hexpsi.server.node.epochs import EpochStore
from hexpsi.server.services.app import RunningServer, start_server

SEEDS_PACKAGE = "hexpsi"
"""The scenario travels inside the package as ``hexpsi/seeds`` (the repository's ``seeds/``)."""
RESPONDER = ("coalition", "coalition_protected.geojson")
PROPOSER = ("russia", "russia_protected.geojson")
CONVOY = "coalition_convoy.geojson"
"""The coalition's moving position: its route, with ``schedule_hours`` (one per vertex,
hours after the demo starts) that the demo turns into RFC 3339 ``times``."""
STRIKES: tuple[tuple[str, str, bool, tuple[float, float] | None], ...] = (
    ("strike-at-tanf", "strike_at_tanf.geojson", True, None),
    ("strike-far", "strike_far.geojson", False, None),
    ("convoy-road-later", "strike_convoy_road.geojson", False, (7.0, 9.0)),
    ("convoy-road-now", "strike_convoy_road.geojson", True, (3.5, 4.5)),
)
"""Name, file, the expected answer, and the strike window in hours after the start."""


@dataclass
class DemoCheck:
    name: str
    expected_conflict: bool
    report: CheckReport
    evidence_verified: bool
    seconds: float
    window: Interval | None = None


@dataclass
class DemoRun:
    directory: Path
    nodes: dict[str, dict[str, object]] = field(default_factory=dict)
    checks: list[DemoCheck] = field(default_factory=list)
    mutual: MutualReport | None = None
    mutual_seconds: float = 0.0
    audit_entries: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def as_expected(self) -> bool:
        return all(c.report.result.conflict == c.expected_conflict for c in self.checks)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def shipped_seeds() -> Traversable:
    """The scenario shipped inside the package, wherever it is installed."""
    return resources.files(SEEDS_PACKAGE).joinpath("seeds")


def _seed_features(seeds: Traversable, name: str) -> list[Feature]:
    """The features of a scenario file; a missing file says where it looked."""
    path = seeds.joinpath(name)
    if not path.is_file():
        raise InputError(
            f"seed file {name} is missing from {seeds}",
            hint="pass --seeds DIR pointing at a directory holding the scenario's files",
        )
    return read_features(path.read_bytes(), source=name, default_radius_m=0.0)


def _scheduled(seeds: Traversable, name: str, start: float) -> list[Feature]:
    """A file whose features give ``schedule_hours`` (hours after ``start``, one per
    vertex), read as the route with RFC 3339 ``times`` a real file would carry."""
    document = json.loads(seeds.joinpath(name).read_bytes())
    for feature in document["features"]:
        hours = feature["properties"].pop("schedule_hours")
        feature["properties"]["times"] = [rfc3339(start + h * 3600) for h in hours]
    return read_features(
        json.dumps(document).encode(),
        source=name,
        default_radius_m=0.0,
        timing=TimeRules(Role.POSITIONS),
    )


def _make_nodes(root: Path, now: float) -> tuple[Node, Node]:
    nodes = []
    for name, _ in (RESPONDER, PROPOSER):
        init_node(root / name, name=name, listen=f"127.0.0.1:{free_loopback_port()}", now=now)
        nodes.append(Node(root / name))
    coalition, russia = nodes
    coalition.add_peer(russia.own_identity())
    russia.add_peer(coalition.own_identity())
    return Node(coalition.directory), Node(russia.directory)


async def run_demo(
    directory: Path, *, seeds: Traversable | None = None, plaintext: bool = False
) -> DemoRun:
    """Run the whole scenario inside ``directory``; returns what happened.

    ``seeds`` is a directory holding the scenario's files (default: the shipped ones).
    """
    seeds = seeds or shipped_seeds()
    run = DemoRun(directory)
    started = time.perf_counter()
    coalition, russia = _make_nodes(directory, time.time())
    run.timings["setup_s"] = time.perf_counter() - started
    start = time.time()
    for node, (_, positions) in ((coalition, RESPONDER), (russia, PROPOSER)):
        started = time.perf_counter()
        cells = cover_features(_seed_features(seeds, positions), res=node.config.res)
        timed: list[tuple[int, Interval]] = []
        if node is coalition:
            moving = _scheduled(seeds, CONVOY, start)
            timed = cover_timed_features(moving, res=node.config.res)
        epoch = EpochStore(node).create(cells, now=start, timed_cells=timed)
        epoch.blocks.close()
        run.timings[f"epoch_{node.name}_s"] = time.perf_counter() - started
        run.nodes[node.name] = {
            "protected_cells": len(cells),
            "timed_cells": len(timed),
            "snapshot_values": epoch.params.count,
            "address": node.config.listen,
        }
    servers: list[RunningServer] = []
    try:
        for node in (coalition, russia):
            servers.append(await start_server(node, plaintext=plaintext))
        for name, strike_file, expected, hours in STRIKES:
            started = time.perf_counter()
            window = None
            features = _seed_features(seeds, strike_file)
            if hours is not None:
                window = Interval(start + hours[0] * 3600, start + hours[1] * 3600)
                features = [replace(f, when=(window,) * len(f.shapes)) for f in features]
            zone = StrikeZone(tuple(features))
            report = await run_check(russia, coalition.name, zone, plaintext=plaintext)
            evidence = ZoneEvidence.from_json((report.directory / "evidence.json").read_bytes())
            verdict = await asyncio.to_thread(
                verify_zone_evidence, evidence, russia.peer(coalition.name).identity.verify_key
            )
            run.checks.append(
                DemoCheck(
                    name=name,
                    expected_conflict=expected,
                    report=report,
                    evidence_verified=(
                        verdict.conflict == report.result.conflict
                        and verdict.conflicting_cells == report.result.conflicting_cells
                    ),
                    seconds=time.perf_counter() - started,
                    window=window,
                )
            )
        started = time.perf_counter()
        run.mutual = await run_mutual(russia, coalition.name, plaintext=plaintext)
        run.mutual_seconds = time.perf_counter() - started
    finally:
        for server in servers:
            await server.stop(grace=2.0)
    for node in (coalition, russia):
        with node.open_audit_log() as audit:
            run.audit_entries[node.name] = audit.verify()
    return run


def run_demo_in_tempdir(*, seeds: Traversable | None = None, plaintext: bool = False) -> DemoRun:
    with tempfile.TemporaryDirectory(prefix="hexpsi-demo-") as tmp:
        return asyncio.run(run_demo(Path(tmp), seeds=seeds, plaintext=plaintext))
