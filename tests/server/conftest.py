"""Fixtures for the gRPC peer tests: pinned nodes on disk, epochs, running servers, raw stubs.

Every node listens on its own free loopback port and is pinned by every other
node of its group, so the tests run the real mutual-TLS path. The protected
set is small (a garrison of 8 cells and one outpost cell, res 9) so an epoch
takes a few tens of milliseconds; the strikes in ``STRIKES`` exercise tokens
from res 5 to res 9 against it.
"""

from __future__ import annotations

import asyncio
import os
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import h3.api.basic_int as h3
import pytest
import pytest_asyncio
import tomli_w

from hexpsi.protocol.crypto.group import hash_to_group
from hexpsi.protocol.epoch.descriptor import SignedDescriptor
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS
from hexpsi.server.demo.scenario import free_loopback_port
from hexpsi.server.node.config import CONFIG_FILE
from hexpsi.server.node.directory import Node, init_node
from hexpsi.server.node.epochs import EpochStore
from hexpsi.server.rpc.hexpsi.v1 import check_pb2, check_pb2_grpc
from hexpsi.server.services.app import RunningServer, start_server

if TYPE_CHECKING:
    from hexpsi.server.rpc.hexpsi.v1.check_pb2_grpc import CheckServiceAsyncStub

RES = 9
RES_MIN = 5
RESPONDER = "alpha"
PROPOSER = "bravo"
OUTSIDER = "charlie"
BIG_BUDGET_KM2 = 1e7
HORIZON_HOURS = 25
"""Space-time budgets are the area budgets times this: a check without a window asks
every cell over the whole horizon (a day, a little more once rounded to slots), so the
area budget is what runs out first, as the tests written before time expect."""
"""Enough for every strike below, including the ones sent as whole res-5 tokens."""

CENTER = h3.latlng_to_cell(33.50, 38.62, RES)
"""A garrison near At-Tanf; the outpost lies a dozen cells away in the same res-5 cell."""
GARRISON = frozenset(h3.grid_disk(CENTER, 1)) | {min(h3.grid_ring(CENTER, 2))}
OUTPOST = min(
    cell
    for cell in h3.grid_ring(CENTER, 12)
    if h3.cell_to_parent(cell, 5) == h3.cell_to_parent(CENTER, 5)
)
PROTECTED = GARRISON | {OUTPOST}
FAR = h3.latlng_to_cell(34.90, 40.10, RES)
"""Well outside every protected cell's res-5 ancestor."""


def children(cell: int, res: int = RES) -> frozenset[int]:
    return frozenset(h3.cell_to_children(cell, res))


def _strikes() -> dict[str, frozenset[int]]:
    parent5 = h3.cell_to_parent(CENTER, 5)
    parent6 = h3.cell_to_parent(CENTER, 6)
    # The res-6 cell around the garrison with one unprotected cell left out: compaction
    # then sends res 7, 8 and 9 tokens, some holding protected cells and some not.
    hole = next(c for c in sorted(children(parent6)) if c not in PROTECTED)
    return {
        "direct": frozenset(h3.grid_disk(CENTER, 2)),
        "ring-miss": frozenset(h3.grid_ring(CENTER, 4)) - PROTECTED,
        "far": frozenset(h3.grid_disk(FAR, 3)),
        "whole-res5": children(parent5),
        "outpost-res7": children(h3.cell_to_parent(OUTPOST, 7)),
        "outpost-res6": children(h3.cell_to_parent(OUTPOST, 6)),
        "res6-with-hole": children(parent6) - {hole},
        "edge-of-outpost": frozenset(h3.grid_ring(OUTPOST, 1)) | {OUTPOST},
    }


STRIKES = _strikes()


@dataclass
class Pair:
    """A responder with an epoch over ``PROTECTED`` and a proposer, pinned to each other."""

    responder: Node
    proposer: Node
    root: Path


def edit_config(directory: Path, **settings: Any) -> None:
    """Set top-level keys and merge tables (e.g. ``limits={...}``) into a node's config.toml."""
    path = directory / CONFIG_FILE
    config = tomllib.loads(path.read_text())
    for key, value in settings.items():
        if isinstance(value, Mapping):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    path.write_text(tomli_w.dumps(config))


def make_nodes(
    root: Path,
    names: Iterable[str],
    *,
    budget_km2: float = BIG_BUDGET_KM2,
    limits: Mapping[str, int] | None = None,
    node_budget_km2: float = BIG_BUDGET_KM2 * 10,
) -> dict[str, Node]:
    """Initialise nodes on free loopback ports; every node pins every other one.

    The node-wide budget is set far above the peers' own unless a test sets it.
    """
    now = time.time()
    made = [
        init_node(root / name, name=name, listen=f"127.0.0.1:{free_loopback_port()}", now=now)
        for name in names
    ]
    for node in made:
        edit_config(
            node.directory,
            budget={
                "node_km2_per_window": node_budget_km2,
                "node_km2h_per_window": node_budget_km2 * HORIZON_HOURS,
            },
        )
        if limits:
            edit_config(node.directory, limits=limits)
        for other in made:
            if other is not node:
                Node(node.directory).add_peer(
                    other.own_identity(),
                    budget_km2=budget_km2,
                    budget_km2h=budget_km2 * HORIZON_HOURS,
                )
    return {node.name: Node(node.directory) for node in made}


def make_epoch(node: Node, cells: Iterable[int] = PROTECTED) -> int:
    """Build and publish a new epoch from ``cells``; returns its sequence."""
    epoch = EpochStore(node).create(cells, now=time.time(), workers=1)
    epoch.blocks.close()
    return epoch.sequence


def make_pair(
    root: Path,
    *,
    budget_km2: float = BIG_BUDGET_KM2,
    limits: Mapping[str, int] | None = None,
    epoch: bool = True,
    node_budget_km2: float = BIG_BUDGET_KM2 * 10,
) -> Pair:
    nodes = make_nodes(
        root,
        [RESPONDER, PROPOSER],
        budget_km2=budget_km2,
        limits=limits,
        node_budget_km2=node_budget_km2,
    )
    if epoch:
        make_epoch(nodes[RESPONDER])
    return Pair(nodes[RESPONDER], nodes[PROPOSER], root)


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    return make_pair(tmp_path)


@pytest_asyncio.fixture
async def served(pair: Pair) -> AsyncIterator[RunningServer]:
    """The responder's server, mutual TLS, stopped after the test."""
    running = await start_server(pair.responder)
    try:
        yield running
    finally:
        await running.stop(grace=1.0)


# ---------------------------------------------------------------- raw channels


def target_of(node: Node, port: int | None = None) -> str:
    host = node.config.listen.rpartition(":")[0]
    return f"{host}:{port or node.config.listen.rpartition(':')[2]}"


@asynccontextmanager
async def tls_channel(
    server_node: Node,
    client_node: Node | None,
    *,
    port: int | None = None,
    options: list[tuple[str, Any]] | None = None,
) -> AsyncIterator[grpc.aio.Channel]:
    """A channel trusting ``server_node``'s certificate, presenting ``client_node``'s (or none)."""
    if client_node is None:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=server_node.tls_certificate_pem
        )
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=server_node.tls_certificate_pem,
            private_key=client_node.tls_key_pem,
            certificate_chain=client_node.tls_certificate_pem,
        )
    all_options = [("grpc.ssl_target_name_override", server_node.name), *(options or [])]
    channel = grpc.aio.secure_channel(target_of(server_node, port), credentials, all_options)
    try:
        yield channel
    finally:
        await channel.close(None)


@asynccontextmanager
async def plain_channel(
    server_node: Node, port: int | None = None
) -> AsyncIterator[grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(target_of(server_node, port))
    try:
        yield channel
    finally:
        await channel.close(None)


def check_stub(channel: grpc.aio.Channel) -> CheckServiceAsyncStub:
    return check_pb2_grpc.CheckServiceStub(channel)


DELIBERATE = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
}


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error ``call`` fails with; it must be one of the deliberate statuses."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() in DELIBERATE, (error.code(), error.details())
    assert error.details(), "a refusal must say why"
    return error


async def current_descriptor(
    stub: CheckServiceAsyncStub, responder: Node, metadata: Any = None
) -> SignedDescriptor:
    reply = await stub.GetDescriptor(
        check_pb2.GetDescriptorRequest(), timeout=10, metadata=metadata
    )
    return SignedDescriptor.verify(
        reply.descriptor,
        reply.signature,
        responder.signing_key.verify_key,
        now=time.time(),
        max_skew=CLOCK_SKEW_SECONDS,
    )


def random_elements(count: int) -> bytes:
    """``count`` valid ristretto255 elements, joined as the wire carries them."""
    return b"".join(hash_to_group(os.urandom(32), b"hexpsi/tests/element") for _ in range(count))


def evaluate_request(
    digest: bytes, sizes: Mapping[int, int] | None = None, *, session_id: bytes | None = None
) -> check_pb2.EvaluateRequest:
    """A well-formed query: random valid elements, ``sizes[res]`` of them per resolution."""
    return check_pb2.EvaluateRequest(
        session_id=session_id or os.urandom(16),
        descriptor_digest=digest,
        groups=[
            check_pb2.ElementGroup(resolution=res, elements=random_elements(n))
            for res, n in sorted((sizes or {RES: 8}).items())
        ],
    )


async def wait_until(predicate: Any, *, timeout: float = 10.0) -> None:
    """Poll ``predicate()`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)
