"""The demo: two nodes on loopback with mutual TLS, the seeds scenario, checks, results.

Everything a real deployment does happens here, in a temporary directory: both
nodes are initialised with fresh keys, exchange identities and pin each other,
load their protected positions (new epochs), start real gRPC servers on
loopback ports, and the ``russia`` node checks two planned strikes against the
``coalition`` node. The At-Tanf strike must come back CONFLICT and the far one
CLEAR; the evidence of each check is verified the way a third party would.
Then the two sides ask "are our forces close anywhere?" with a mutual check
(the seeds' positions share no cell), and both audit logs are verified.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from protocol.errors import InputError
from protocol.evidence import Evidence, verify_evidence
from server.app import RunningServer, start_server
from server.client import CheckReport, run_check
from server.epochs import EpochStore
from server.mutual_client import MutualReport, run_mutual
from server.node import Node, init_node
from server.positions import read_cover

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
RESPONDER = ("coalition", "coalition_protected.geojson")
PROPOSER = ("russia", "russia_protected.geojson")
STRIKES = (
    ("strike-at-tanf", "strike_at_tanf.geojson", True),
    ("strike-far", "strike_far.geojson", False),
)


@dataclass
class DemoCheck:
    name: str
    expected_conflict: bool
    report: CheckReport
    evidence_verified: bool
    seconds: float


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


def _seed(seeds: Path, name: str) -> Path:
    path = seeds / name
    if not path.is_file():
        raise InputError(
            f"seed file {path} is missing",
            hint="pass --seeds DIR pointing at the repository's seeds/",
        )
    return path


def _make_nodes(root: Path, now: float) -> tuple[Node, Node]:
    nodes = []
    for name, _ in (RESPONDER, PROPOSER):
        init_node(root / name, name=name, listen=f"127.0.0.1:{free_loopback_port()}", now=now)
        nodes.append(Node(root / name))
    coalition, russia = nodes
    coalition.add_peer(russia.own_identity())
    russia.add_peer(coalition.own_identity())
    return Node(coalition.directory), Node(russia.directory)


async def run_demo(directory: Path, *, seeds: Path = SEEDS, plaintext: bool = False) -> DemoRun:
    """Run the whole scenario inside ``directory``; returns what happened."""
    run = DemoRun(directory)
    started = time.perf_counter()
    coalition, russia = _make_nodes(directory, time.time())
    run.timings["setup_s"] = time.perf_counter() - started
    for node, (_, positions) in ((coalition, RESPONDER), (russia, PROPOSER)):
        started = time.perf_counter()
        cells = read_cover(_seed(seeds, positions), res=node.config.res)
        epoch = EpochStore(node).create(cells, now=time.time())
        epoch.blocks.close()
        run.timings[f"epoch_{node.name}_s"] = time.perf_counter() - started
        run.nodes[node.name] = {
            "protected_cells": len(cells),
            "snapshot_values": epoch.params.count,
            "address": node.config.listen,
        }
    servers: list[RunningServer] = []
    try:
        for node in (coalition, russia):
            servers.append(await start_server(node, plaintext=plaintext))
        for name, strike_file, expected in STRIKES:
            started = time.perf_counter()
            strike = read_cover(_seed(seeds, strike_file), res=coalition.config.res)
            report = await run_check(russia, coalition.name, strike, plaintext=plaintext)
            evidence = Evidence.from_json((report.directory / "evidence.json").read_bytes())
            verdict = await asyncio.to_thread(
                verify_evidence, evidence, russia.peer(coalition.name).identity.verify_key
            )
            run.checks.append(
                DemoCheck(
                    name=name,
                    expected_conflict=expected,
                    report=report,
                    evidence_verified=verdict.conflict == report.result.conflict,
                    seconds=time.perf_counter() - started,
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


def run_demo_in_tempdir(*, seeds: Path = SEEDS, plaintext: bool = False) -> DemoRun:
    with tempfile.TemporaryDirectory(prefix="hexpsi-demo-") as tmp:
        return asyncio.run(run_demo(Path(tmp), seeds=seeds, plaintext=plaintext))
