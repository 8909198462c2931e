"""Every RPC, fed garbage and hostile messages, answers with a deliberate status and survives.

Two kinds of input reach each of CheckService's GetDescriptor, GetSnapshot,
Evaluate, GetReceipt and MutualService's Mutual, from a pinned peer over
mutual TLS: random bytes sent as the serialized request (a generic call with
no protobuf in between; the standard health and reflection services get them
too), and structured messages drawn from the strategies in
``hostile_helpers`` (wrong lengths, identity, non-canonical and top-bit-set
elements, packed fields at and past the limits, hundreds of groups, duplicated
and out-of-range resolutions, huge set sizes, steps out of order). No float
travels in these messages; NaN and infinity inside signed receipts are
``test_malicious_responder``'s. Every answer must be OK or a deliberate status
with a message, never UNKNOWN or INTERNAL; afterwards health says SERVING and
an honest check still comes back right. ``test_fuzz_long`` runs the same with
many more examples.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hexpsi.server.node.directory import Node
from hexpsi.server.rpc.hexpsi.v1 import check_pb2, check_pb2_grpc, mutual_pb2_grpc
from tests.security.hostile_helpers import (
    CHECK_SERVICE,
    EVALUATE,
    MUTUAL,
    MUTUAL_SERVICE,
    RECEIPT_IDS,
    SNAPSHOT,
    Fills,
    ServerThread,
    assert_deliberate,
    assert_still_healthy,
    blocking_channel,
    blocking_outcome,
    edit_config,
    evaluate_message,
    make_pair,
    mutual_messages,
    snapshot_message,
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Target:
    """The running responder, a pinned proposer's channel to it, and the current epoch."""

    def __init__(self, root: Path) -> None:
        self.pair = make_pair(root)
        # Enough mutual checks that every fuzzed start can be accepted and go deeper.
        edit_config(self.pair.responder.directory, budget={"mutual_checks_per_window": 10**6})
        self.pair.responder = Node(self.pair.responder.directory)
        self.server = ServerThread(self.pair.responder)
        self.channel = blocking_channel(self.pair.responder, self.pair.proposer)
        self.check = check_pb2_grpc.CheckServiceStub(self.channel)
        self.mutual = mutual_pb2_grpc.MutualServiceStub(self.channel)
        epoch = self.server.running.servicer.epochs.get()
        self.fills = Fills(epoch.descriptor.digest, epoch.descriptor.descriptor.epoch_id)

    def close(self) -> None:
        self.channel.close()
        self.server.stop()

    def healthy(self) -> None:
        assert_still_healthy(self.server, self.pair.proposer)


def fuzz_target(root: Path) -> Iterator[Target]:
    target = Target(root)
    try:
        yield target
    finally:
        target.close()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from fuzz_target(tmp_path_factory.mktemp("fuzz"))


RAW_METHODS = {
    "GetDescriptor": ("unary", CHECK_SERVICE),
    "Evaluate": ("unary", CHECK_SERVICE),
    "GetReceipt": ("unary", CHECK_SERVICE),
    "GetSnapshot": ("stream out", CHECK_SERVICE),
    "Mutual": ("streams", MUTUAL_SERVICE),
    "Check": ("unary", "/grpc.health.v1.Health/"),
    "Watch": ("stream out", "/grpc.health.v1.Health/"),
    "ServerReflectionInfo": ("streams", "/grpc.reflection.v1alpha.ServerReflection/"),
}
"""Every method the server exposes, with its shape and service path."""


def raw_outcome(target: Target, method: str, payloads: list[bytes]) -> tuple[grpc.StatusCode, str]:
    """Send ``payloads`` as the serialized request(s) of ``method``, no protobuf involved."""
    channel = target.channel
    shape, service = RAW_METHODS[method]
    if shape == "streams":
        call: Any = channel.stream_stream(service + method, None, None)
        return blocking_outcome(lambda: call(iter(payloads), timeout=10))
    if shape == "stream out":
        stream: Any = channel.unary_stream(service + method, None, None)
        # Health's Watch streams for as long as the caller listens: a short deadline.
        timeout = 0.5 if method == "Watch" else 10
        return blocking_outcome(lambda: stream(payloads[0], timeout=timeout))
    unary: Any = channel.unary_unary(service + method, None, None)
    return blocking_outcome(lambda: unary(payloads[0], timeout=10))


def random_bytes_to_every_rpc(target: Target, profile: settings) -> None:
    @profile
    @given(
        method=st.sampled_from(sorted(RAW_METHODS)),
        payloads=st.lists(st.binary(max_size=600), min_size=1, max_size=3),
    )
    def run(method: str, payloads: list[bytes]) -> None:
        assert_deliberate(raw_outcome(target, method, payloads), (method, payloads))

    run()


def hostile_check_messages(target: Target, profile: settings) -> None:
    stub = target.check
    fills = target.fills

    @profile
    @given(evaluate=EVALUATE)
    def evaluate(evaluate: Any) -> None:
        request = evaluate_message(evaluate, fills)
        assert_deliberate(blocking_outcome(lambda: stub.Evaluate(request, timeout=10)), request)

    @settings(profile, max_examples=max(1, profile.max_examples // 3))
    @given(snapshot=SNAPSHOT, receipt_id=RECEIPT_IDS)
    def snapshot_and_receipt(snapshot: Any, receipt_id: str) -> None:
        request = snapshot_message(snapshot, fills)
        status = blocking_outcome(lambda: stub.GetSnapshot(request, timeout=10))
        assert_deliberate(status, request)
        receipt = check_pb2.GetReceiptRequest(receipt_id=receipt_id)
        assert_deliberate(blocking_outcome(lambda: stub.GetReceipt(receipt, timeout=10)), receipt)

    evaluate()
    snapshot_and_receipt()


def hostile_mutual_streams(target: Target, profile: settings) -> None:
    @profile
    @given(steps=MUTUAL)
    def run(steps: Any) -> None:
        messages = mutual_messages(steps, target.fills)
        status = blocking_outcome(lambda: target.mutual.Mutual(iter(messages), timeout=10))
        assert_deliberate(status, [m.WhichOneof("step") for m in messages])
        # A stream that only ends early always gets its refusal, never a silent OK.
        assert status[0] != grpc.StatusCode.OK

    run()


def test_random_bytes_to_every_rpc_get_deliberate_statuses(target: Target) -> None:
    """Checked to fail without the protection: with the ``RejectMalformed`` interceptor
    taken out of ``start_server``, undecodable bytes came back UNKNOWN; before the
    interceptor aborted streamed requests itself, reflection's came back UNKNOWN.
    """
    random_bytes_to_every_rpc(target, FUZZ)
    target.healthy()


def test_hostile_check_messages_get_deliberate_statuses(target: Target) -> None:
    """Checked to fail without the protection: with
    ``hexpsi.protocol.check.messages._split_elements`` raising ``ValueError`` instead
    of ``RemoteProtocolError`` on ragged element bytes, such queries came back UNKNOWN."""
    hostile_check_messages(target, FUZZ)
    target.healthy()


def test_hostile_mutual_streams_get_deliberate_statuses(target: Target) -> None:
    """Checked to fail without the protection: with ``ProposerStream.next`` no longer
    turning the end of the stream into ``RemoteProtocolError``, a stream that ended
    early came back UNKNOWN."""
    hostile_mutual_streams(target, FUZZ)
    target.healthy()
