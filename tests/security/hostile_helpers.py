"""Shared pieces of the hostile-party and robustness tests: nodes, servers, calls, messages.

The node pairs are the ones ``tests/server`` uses (a responder ``alpha`` with
an epoch over a small protected set, a proposer ``bravo``, every node pinning
every other, each on its own loopback port with mutual TLS). What this module
adds: servers started with a substituted (hostile) servicer but otherwise the
real application setup; a server on a thread of its own for blocking
(hypothesis) clients; the outcome of a call as a status, and the assertions
that it was deliberate, that the server is still healthy and correct, and that
a proposer kept nothing from a check it refused; and hypothesis strategies for
hostile protobuf messages.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import strategies as st

import hexpsi.server.services.app
from hexpsi.protocol.budget import cell_area_km2
from hexpsi.protocol.crypto.group import IDENTITY, hash_to_group
from hexpsi.server.clients.check import CHECKS_DIR, run_check
from hexpsi.server.node.directory import Node
from hexpsi.server.rpc.hexpsi.v1 import check_pb2, mutual_pb2
from hexpsi.server.services.app import RunningServer, start_server
from hexpsi.server.services.check import CheckServicer
from tests.server.conftest import (
    BIG_BUDGET_KM2,
    DELIBERATE,
    OUTSIDER,
    PROPOSER,
    PROTECTED,
    RES,
    RES_MIN,
    RESPONDER,
    STRIKES,
    Pair,
    check_stub,
    current_descriptor,
    edit_config,
    evaluate_request,
    make_epoch,
    make_nodes,
    plain_channel,
    random_elements,
    refused,
    target_of,
    tls_channel,
    wait_until,
)

__all__ = [
    "BIG_BUDGET_KM2",
    "DELIBERATE",
    "OUTSIDER",
    "PROPOSER",
    "PROTECTED",
    "RES",
    "RESPONDER",
    "RES_MIN",
    "STRIKES",
    "Pair",
    "check_stub",
    "current_descriptor",
    "edit_config",
    "evaluate_request",
    "make_epoch",
    "make_nodes",
    "plain_channel",
    "random_elements",
    "refused",
    "target_of",
    "tls_channel",
    "wait_until",
]

ONE_GROUP_KM2 = 8 * cell_area_km2(RES)
"""What one smallest query costs: a single padded group of 8 elements at ``res``."""
CHECK_SERVICE = "/hexpsi.v1.CheckService/"
MUTUAL_SERVICE = "/hexpsi.v1.MutualService/"
NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
T = TypeVar("T")


def make_pair(
    root: Path,
    *,
    budget_km2: float = BIG_BUDGET_KM2,
    window_hours: float | None = None,
    limits: dict[str, int] | None = None,
    epoch: bool = True,
) -> Pair:
    """The ``tests/server`` pair, with the proposer's budget window settable too."""
    nodes = make_nodes(root, [RESPONDER, PROPOSER], budget_km2=budget_km2, limits=limits)
    responder, proposer = nodes[RESPONDER], nodes[PROPOSER]
    if window_hours is not None:
        responder.add_peer(
            proposer.own_identity(),
            budget_km2=budget_km2,
            window_hours=window_hours,
            replace=True,
        )
        responder = Node(responder.directory)
    if epoch:
        make_epoch(responder)
    return Pair(responder, proposer, root)


@asynccontextmanager
async def serving(
    node: Node,
    *,
    servicer: type[CheckServicer] = CheckServicer,
    plaintext: bool = False,
    listen: str | None = None,
) -> AsyncIterator[RunningServer]:
    """``node``'s real server (credentials, limits, interceptors, health, mutual service).

    ``servicer`` replaces the check service's class while the server is built, so a
    hostile responder runs behind exactly the transport an honest one has.
    """
    honest = getattr(hexpsi.server.services.app, "CheckServicer")  # noqa: B009
    setattr(hexpsi.server.services.app, "CheckServicer", servicer)  # noqa: B010
    try:
        running = await start_server(node, plaintext=plaintext, listen=listen)
    finally:
        setattr(hexpsi.server.services.app, "CheckServicer", honest)  # noqa: B010
    try:
        yield running
    finally:
        await running.stop(grace=0.5)


async def outcome(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    """The status a call ends with (OK when it succeeds) and its details."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def drain(call: Any) -> list[Any]:
    """Every message of a response stream (raises the stream's error)."""
    return [message async for message in call]


SERVING = health_pb2.HealthCheckResponse.SERVING


def audit_kinds(node: Node) -> list[str]:
    """The kinds of every entry in ``node``'s audit log, oldest first."""
    if not node.audit_path.exists():
        return []
    with node.open_audit_log() as audit:
        return [entry.kind for entry in audit.entries()]


def assert_kept_nothing(proposer: Node) -> None:
    """A refused check left no result, receipt or evidence and no "check" audit entry."""
    checks = proposer.directory / CHECKS_DIR
    assert not checks.exists() or list(checks.iterdir()) == []
    assert "check" not in audit_kinds(proposer)


def clock_after(seconds: float) -> Any:
    """A clock ``seconds`` ahead of the real one."""
    return lambda: time.time() + seconds


# ---------------------------------------------------------------- a server in its own thread


class ServerThread:
    """A node's real server on an event loop of its own, for synchronous (hypothesis) clients.

    Hypothesis drives plain functions; the server keeps running between examples
    on this thread's loop, and clients use gRPC's blocking API against it.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.running: RunningServer = self.call(start_server(node))

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=60)

    def stop(self) -> None:
        self.call(self.running.stop(grace=0.5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def blocking_channel(server: Node, client: Node) -> grpc.Channel:
    """A blocking mutual-TLS channel from ``client`` to ``server``."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=server.tls_certificate_pem,
        private_key=client.tls_key_pem,
        certificate_chain=client.tls_certificate_pem,
    )
    return grpc.secure_channel(
        target_of(server), credentials, [("grpc.ssl_target_name_override", server.name)]
    )


def blocking_outcome(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """Run a blocking call (reading a whole response stream); its status and details."""
    try:
        result = call()
        if isinstance(result, Iterator):
            for _ in result:
                pass
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def assert_deliberate(status: tuple[grpc.StatusCode, str], what: object) -> None:
    """Never UNKNOWN or INTERNAL, and every refusal says why."""
    code, details = status
    assert code not in NEVER, (what, code, details)
    assert code == grpc.StatusCode.OK or details, (what, code)


def assert_still_healthy(target: ServerThread, proposer: Node) -> None:
    """Health says SERVING and an honest peer's check still comes back right."""
    with blocking_channel(target.node, proposer) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
    assert reply.status == SERVING
    gate = target.running.servicer.gate
    deadline = time.monotonic() + 10
    while gate.active(proposer.name) and time.monotonic() < deadline:
        time.sleep(0.02)
    report = asyncio.run(run_check(proposer, target.node.name, STRIKES["direct"]))
    assert report.result.conflict
    assert report.result.conflicting_cells == STRIKES["direct"] & PROTECTED


# ---------------------------------------------------------------- hostile messages

FIELD_PRIME = 2**255 - 19


def _valid(seed: bytes) -> bytes:
    return hash_to_group(seed, b"hexpsi/tests/fuzz-element")


def _top_bit(element: bytes) -> bytes:
    return element[:31] + bytes([element[31] | 0x80])


ELEMENTS = st.one_of(
    st.binary(min_size=8, max_size=8).map(_valid),
    st.just(IDENTITY),
    st.integers(FIELD_PRIME, 2**255 - 1).map(lambda v: v.to_bytes(32, "little")),
    st.binary(min_size=8, max_size=8).map(_valid).map(_top_bit),
    st.binary(min_size=32, max_size=32),
    st.just(b"\xff" * 32),
)
"""Valid, identity, non-canonical, top-bit-set, random and all-ones encodings."""

JOINED = st.one_of(
    st.tuples(st.lists(ELEMENTS, max_size=17), st.binary(max_size=31)).map(
        lambda parts: b"".join(parts[0]) + parts[1]
    ),
    st.sampled_from([8, 16, 4096, 4097, 20000]).map(lambda n: _valid(b"many") * n),
)
"""Packed element fields: short, ragged, bucket-sized, at and past the limits."""

RESOLUTIONS = st.one_of(st.integers(RES_MIN, RES), st.integers(0, 2**32 - 1))
SESSION_IDS = st.one_of(st.none(), st.binary(max_size=80))
"""None stands for a fresh random 16-byte id, filled in when the message is sent."""
DIGESTS = st.one_of(st.none(), st.binary(max_size=40))
"""None stands for the responder's current descriptor digest."""

GROUPS = st.one_of(
    st.lists(st.tuples(RESOLUTIONS, JOINED), max_size=6),
    st.tuples(RESOLUTIONS, st.integers(100, 3000)).map(lambda g: [(g[0], _valid(b"g"))] * g[1]),
)
"""Groups as (resolution, packed elements): a few, or hundreds of one-element groups."""


@dataclass(frozen=True)
class Fills:
    """What the ``None`` placeholders of a generated message stand for."""

    digest: bytes
    epoch_id: bytes


def session_id(choice: bytes | None) -> bytes:
    return os.urandom(16) if choice is None else choice


def digest(choice: bytes | None, fills: Fills) -> bytes:
    return fills.digest if choice is None else choice


def _near_valid_groups(drawn: tuple[list[tuple[int, int]], Any]) -> list[tuple[int, bytes]]:
    """Bucket-sized groups of valid elements, one element maybe swapped for a hostile one."""
    shape, swap = drawn
    groups = [
        (res, b"".join(_valid(bytes([res, i, n])) for i in range(n))) for res, n in sorted(shape)
    ]
    if swap is not None:
        position, element = swap
        res, elements = groups[0]
        at = 32 * (position % (len(elements) // 32))
        groups[0] = (res, elements[:at] + element + elements[at + 32 :])
    return groups


NEAR_VALID_GROUPS = st.tuples(
    st.lists(
        st.tuples(st.integers(RES_MIN, RES), st.sampled_from([8, 16])),
        min_size=1,
        max_size=3,
        unique_by=lambda group: group[0],
    ),
    st.one_of(st.none(), st.tuples(st.integers(0, 15), ELEMENTS)),
).map(_near_valid_groups)
"""Queries an honest client could almost have sent: valid shapes, at most one bad element."""

EVALUATE = st.one_of(
    st.tuples(st.none(), st.none(), NEAR_VALID_GROUPS),
    st.tuples(SESSION_IDS, DIGESTS, NEAR_VALID_GROUPS),
    st.tuples(SESSION_IDS, DIGESTS, GROUPS),
)


def evaluate_message(drawn: tuple[Any, ...], fills: Fills) -> check_pb2.EvaluateRequest:
    sid, dig, groups = drawn
    return check_pb2.EvaluateRequest(
        session_id=session_id(sid),
        descriptor_digest=digest(dig, fills),
        groups=[check_pb2.ElementGroup(resolution=r, elements=e) for r, e in groups],
    )


SNAPSHOT = st.tuples(
    st.one_of(st.none(), st.binary(max_size=40)),
    st.one_of(st.integers(0, 8), st.integers(0, 2**64 - 1)),
)


def snapshot_message(drawn: tuple[Any, ...], fills: Fills) -> check_pb2.GetSnapshotRequest:
    epoch, start = drawn
    return check_pb2.GetSnapshotRequest(
        epoch_id=fills.epoch_id if epoch is None else epoch, start_block=start
    )


RECEIPT_IDS = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=80),
    st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
    st.sampled_from(["../config.toml", "..", "/etc/passwd", "0" * 31 + "\x00", "A" * 32]),
)

SET_SIZES = st.one_of(
    st.sampled_from([0, 1, 127, 128, 129, 256, 1 << 20, (1 << 20) + 1, 2**32 - 1]),
    st.integers(0, 2**32 - 1),
)
CHUNK = st.tuples(st.integers(0, 2**32 - 1), JOINED)
MUTUAL_STEPS = st.one_of(
    st.tuples(st.just("start"), SESSION_IDS, DIGESTS, st.binary(max_size=20), SET_SIZES),
    st.tuples(st.just("blinded"), CHUNK),
    st.tuples(st.just("commitment"), st.binary(max_size=40)),
    st.tuples(st.just("double_blinded"), CHUNK),
    st.tuples(st.just("finish"), st.binary(max_size=300), st.binary(max_size=70)),
    st.tuples(st.just("empty")),
)
VALID_START = st.tuples(st.just("start"), st.none(), st.none(), st.just(b""), st.just(128))
PROPOSER_SET = st.tuples(st.just("blinded"), st.tuples(st.just(0), st.just(_valid(b"set") * 128)))
MUTUAL = st.one_of(
    st.lists(MUTUAL_STEPS, min_size=1, max_size=4),
    st.tuples(VALID_START, st.lists(MUTUAL_STEPS, max_size=3)).map(lambda d: [d[0], *d[1]]),
    st.tuples(VALID_START, PROPOSER_SET, st.lists(MUTUAL_STEPS, max_size=2)).map(
        lambda d: [d[0], d[1], *d[2]]
    ),
)
"""Streams of hostile steps, or a valid start (and set) followed by hostile steps."""


def mutual_messages(drawn: list[tuple[Any, ...]], fills: Fills) -> list[mutual_pb2.MutualRequest]:
    messages = []
    for step in drawn:
        kind = step[0]
        if kind == "start":
            _, sid, dig, epoch, size = step
            start = mutual_pb2.MutualStart(
                session_id=session_id(sid),
                descriptor_digest=digest(dig, fills),
                proposer_epoch_id=epoch if len(epoch) != 0 else os.urandom(16),
                proposer_set_size=size,
            )
            messages.append(mutual_pb2.MutualRequest(start=start))
        elif kind in ("blinded", "double_blinded"):
            index, elements = step[1]
            chunk = mutual_pb2.ElementChunk(index=index, elements=elements)
            if kind == "blinded":
                messages.append(mutual_pb2.MutualRequest(blinded=chunk))
            else:
                messages.append(mutual_pb2.MutualRequest(double_blinded=chunk))
        elif kind == "commitment":
            commitment = mutual_pb2.MutualCommitment(digest=step[1])
            messages.append(mutual_pb2.MutualRequest(commitment=commitment))
        elif kind == "finish":
            finish = mutual_pb2.MutualFinish(statement=step[1], signature=step[2])
            messages.append(mutual_pb2.MutualRequest(finish=finish))
        else:
            messages.append(mutual_pb2.MutualRequest())
    return messages
