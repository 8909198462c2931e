"""Sizes on the wire reveal the size bucket, never the exact count.

One recorded run through the proxy: strikes of different sizes within one
query bucket (65 and 72 cells; 1 and 8 cells), one of each pair conflicting
and the other clear; then two mutual checks and two snapshots whose maps differ
in size (10 and 120 protected cells; 130 and 141 cells on the proposer's side)
but share their buckets. The responder and an observer of the plaintext see
the same serialized messages and the same DATA byte counts.

How each was checked to fail without its protection (temporary edits in a copy
of the tree, reverted):

* query padding off (``size_bucket`` in ``protocol/check/session.py`` returning the real
  count, on both sides, since the responder refuses unpadded groups): the 65- and
  72-cell queries differed by 7 elements (224 bytes) and the query test failed;
* snapshot padding off (``SnapshotPlan.for_tokens`` padding to the real count):
  the descriptors announced 21 and 155 values and the snapshot test failed;
* mutual padding off (``hexpsi.protocol.mutual.session._own_set_size`` returning the real count,
  and the size check in ``hexpsi.protocol.mutual.messages`` let through): the message
  sizes differed and the mutual test failed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.epoch.descriptor import Descriptor, snapshot_params
from hexpsi.server.clients.check import CheckReport, run_check
from hexpsi.server.clients.mutual import MutualReport, run_mutual
from hexpsi.server.services.app import start_server
from tests.security.leak_helpers import (
    EVALUATE,
    GET_DESCRIPTOR,
    GET_SNAPSHOT,
    MUTUAL,
    PROPOSER,
    RES,
    RESPONDER,
    GrpcCall,
    RecordingProxy,
    all_tokens,
    grpc_calls,
    make_epoch,
    make_nodes,
    route_through,
    strike_tokens,
)

ZONE = h3.latlng_to_cell(34.10, 39.20, RES)
RING = tuple(sorted(h3.grid_ring(ZONE, 12)))
"""72 cells, no seven of them siblings, so a strike of ring cells stays at res 9."""
OTHER = tuple(sorted(h3.grid_ring(h3.latlng_to_cell(34.40, 39.60, RES), 10)))
RESPONDER_SMALL = frozenset(RING[:7]) | frozenset(sorted(h3.grid_disk(ZONE, 1))[:3])
RESPONDER_LARGE = frozenset(sorted(h3.grid_disk(ZONE, 6))[:120])
PROPOSER_HOME = h3.latlng_to_cell(34.30, 39.00, RES)
PROPOSER_SMALL = frozenset(sorted(h3.grid_disk(PROPOSER_HOME, 7))[:130])
PROPOSER_LARGE = PROPOSER_SMALL | frozenset(sorted(RESPONDER_LARGE)[:11])
"""141 cells, 11 of them shared with the responder's second map (the first shares none)."""

STRIKES = {
    "ring-72 (conflict)": frozenset(RING),
    "ring-65 (clear)": frozenset(RING[7:]),
    "one cell (clear)": frozenset(OTHER[:1]),
    "eight cells (conflict)": frozenset(OTHER[:7]) | {RING[0]},
    "ring-80 (control, conflict)": frozenset(RING) | frozenset(OTHER[:8]),
}


@dataclass
class Sized:
    checks: dict[str, tuple[CheckReport, GrpcCall]]
    second_epoch_check: tuple[CheckReport, GrpcCall]
    mutuals: list[tuple[MutualReport, GrpcCall]]
    snapshots: list[tuple[Descriptor, GrpcCall]]
    descriptors: list[GrpcCall]
    connections: list[list[GrpcCall]]
    """The calls of each connection: one per check or mutual check, in order."""


async def _run(root: Path) -> Sized:
    nodes = make_nodes(root, [RESPONDER, PROPOSER])
    responder, proposer = nodes[RESPONDER], nodes[PROPOSER]
    make_epoch(responder, RESPONDER_SMALL)
    make_epoch(proposer, PROPOSER_SMALL)
    server = await start_server(responder, plaintext=True)
    proxy = RecordingProxy(server.port)
    try:
        proposer = route_through(proposer, responder, await proxy.start())
        reports = [
            await run_check(proposer, RESPONDER, s, plaintext=True) for s in STRIKES.values()
        ]
        mutuals = [await run_mutual(proposer, RESPONDER, plaintext=True)]
        make_epoch(responder, RESPONDER_LARGE)
        make_epoch(proposer, PROPOSER_LARGE)
        second = await run_check(proposer, RESPONDER, STRIKES["ring-72 (conflict)"], plaintext=True)
        mutuals.append(await run_mutual(proposer, RESPONDER, plaintext=True))
    finally:
        await server.stop(grace=1.0)
        await proxy.stop()
    connections = [grpc_calls(connection) for connection in proxy.connections]
    calls = [call for connection in connections for call in connection]
    evaluations = [call for call in calls if call.path == EVALUATE]
    snapshots = [call for call in calls if call.path == GET_SNAPSHOT]
    assert len(evaluations) == len(STRIKES) + 1
    assert len(snapshots) == 2
    return Sized(
        checks=dict(
            zip(STRIKES, zip(reports, evaluations[: len(STRIKES)], strict=True), strict=True)
        ),
        second_epoch_check=(second, evaluations[-1]),
        mutuals=list(zip(mutuals, [c for c in calls if c.path == MUTUAL], strict=True)),
        snapshots=[
            (reports[0].descriptor.descriptor, snapshots[0]),
            (second.descriptor.descriptor, snapshots[1]),
        ],
        descriptors=[call for call in calls if call.path == GET_DESCRIPTOR],
        connections=connections,
    )


@pytest.fixture(scope="module")
def sized(tmp_path_factory: pytest.TempPathFactory) -> Sized:
    return asyncio.run(_run(tmp_path_factory.mktemp("sized")))


def shape(call: GrpcCall) -> tuple[list[int], list[int], int, int]:
    """What an observer measures of a call: message sizes each way and DATA bytes each way."""
    return (
        [len(m) for m in call.requests],
        [len(m) for m in call.responses],
        call.request_bytes,
        call.response_bytes,
    )


def test_strikes_within_one_bucket_send_and_receive_equal_sizes(sized: Sized) -> None:
    checks = sized.checks
    for name, (report, _) in checks.items():
        assert report.result.conflict == ("conflict" in name), name
        assert set(strike_tokens(report.strike_cells)) == set(report.strike_cells), name
    big = shape(checks["ring-72 (conflict)"][1])
    assert shape(checks["ring-65 (clear)"][1]) == big
    assert shape(sized.second_epoch_check[1]) == big
    assert shape(checks["one cell (clear)"][1]) == shape(checks["eight cells (conflict)"][1])
    # Nothing after the answer tells a conflict from a clear check: whole connections match.
    by_name = dict(zip(STRIKES, sized.connections, strict=False))
    clear, conflict = by_name["one cell (clear)"], by_name["eight cells (conflict)"]
    assert [(c.path, shape(c)) for c in clear] == [(c.path, shape(c)) for c in conflict]
    control = shape(checks["ring-80 (control, conflict)"][1])
    assert control[0] != big[0], "control: a strike in the next bucket is visibly larger"


def test_maps_within_one_bucket_publish_snapshots_of_one_size(sized: Sized) -> None:
    (first, first_call), (second, second_call) = sized.snapshots
    assert len(all_tokens(RESPONDER_LARGE)) > 5 * len(all_tokens(RESPONDER_SMALL))
    first_params, second_params = snapshot_params(first), snapshot_params(second)
    assert first_params.count == second_params.count == 1024
    assert first_params.bits == second_params.bits
    assert first_params.block_count == second_params.block_count
    # Golomb-coded sizes vary a little with the random values, never with the real count.
    assert abs(first.snapshot_bytes - second.snapshot_bytes) < 0.01 * first.snapshot_bytes
    assert abs(first_call.response_bytes - second_call.response_bytes) < 0.01 * (
        first_call.response_bytes
    )
    assert len({(len(c.responses[0]), c.response_bytes) for c in sized.descriptors}) == 1


def test_mutual_maps_within_one_bucket_exchange_equal_sizes(sized: Sized) -> None:
    (first, first_call), (second, second_call) = sized.mutuals
    assert (first.result.own_cells, second.result.own_cells) == (130, 141)
    assert (first.result.shared_cells, second.result.shared_cells) == (0, 11)
    assert shape(first_call) == shape(second_call)
    for report in (first, second):
        statement = report.result.receipt.statement
        assert (statement.proposer_set_size, statement.responder_set_size) == (144, 128)
