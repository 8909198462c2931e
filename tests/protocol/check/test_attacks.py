"""A cheating peer, in memory: every forgery is refused and no result comes out of it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import h3.api.basic_int as h3
import pytest

import hexpsi.protocol.check.session
import hexpsi.protocol.crypto.group
from hexpsi.protocol.budget import query_area_km2
from hexpsi.protocol.check.messages import ElementGroup, Query, Response
from hexpsi.protocol.check.session import MODE, State, verify_response
from hexpsi.protocol.crypto.group import ORDER, hash_to_group
from hexpsi.protocol.crypto.keys import epoch_key
from hexpsi.protocol.crypto.oprf import KeyPair, blind, blind_evaluate, evaluate, finalize
from hexpsi.protocol.epoch.descriptor import SignedDescriptor
from hexpsi.protocol.errors import (
    LocalProtocolError,
    RemoteProtocolError,
    StaleError,
    VerificationError,
)
from hexpsi.protocol.geo.tokens import token_bytes
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS
from hexpsi.protocol.snapshot.build import truncate_output
from hexpsi.protocol.snapshot.gcs import SnapshotReader
from tests.protocol.helpers import (
    NOW,
    PROPOSER,
    CheckPair,
    DeterministicRng,
    ResponderNode,
    forged_response,
    make_responder,
    signing_key,
)

RES, RES_MIN = 9, 6
ORIGIN = h3.latlng_to_cell(33.5, 38.6, RES)
PROTECTED = frozenset(h3.grid_disk(ORIGIN, 3))
STRIKE = frozenset(h3.grid_disk(h3.cell_to_center_child(h3.cell_to_parent(ORIGIN, 7), 9), 2))


@pytest.fixture(scope="module")
def node() -> ResponderNode:
    return make_responder(PROTECTED, res=RES, res_min=RES_MIN)


def started(node: ResponderNode, seed: bytes = b"proposer") -> tuple[CheckPair, Query]:
    check = CheckPair(node, STRIKE, seed=seed)
    return check, check.query()


def assert_refused(check: CheckPair, response: Response, error: type[Exception]) -> None:
    with pytest.raises(error):
        check.finish(response)
    assert check.proposer.state is State.ERROR
    assert check.proposer.result is None
    assert check.proposer.values == []


def test_the_honest_baseline_conflicts(node: ResponderNode) -> None:
    check, query = started(node)
    assert check.finish(forged_response(node, query)).conflict


# --- a responder that evaluates under the wrong key ---------------------------------------


def other_epoch_key(resolution: int) -> KeyPair:
    return epoch_key(b"m" * 32, b"another epoch id", resolution)


Evaluator = Callable[[int, Sequence[bytes]], tuple[list[bytes], KeyPair]]


def cheating_evaluator(node: ResponderNode, wrong_key: str, scope: str) -> Evaluator:
    """Evaluate under a wrong key: one element (proved with the real key) or all (proved
    with the wrong key, a valid proof for a key the descriptor does not publish)."""
    keys = node.epoch.keys

    def wrong(resolution: int) -> KeyPair:
        if wrong_key == "epoch":
            return other_epoch_key(resolution)
        return keys[RES_MIN if resolution != RES_MIN else RES]

    def evaluate(resolution: int, elements: Sequence[bytes]) -> tuple[list[bytes], KeyPair]:
        if scope == "all":
            return blind_evaluate(wrong(resolution), elements), wrong(resolution)
        evaluated = blind_evaluate(keys[resolution], elements)
        evaluated[-1] = blind_evaluate(wrong(resolution), elements[-1:])[0]
        return evaluated, keys[resolution]

    return evaluate


@pytest.mark.parametrize("wrong_key", ["epoch", "resolution"])
@pytest.mark.parametrize("scope", ["one", "all"])
def test_evaluating_under_another_key_is_caught_by_the_proof(
    node: ResponderNode, wrong_key: str, scope: str
) -> None:
    check, query = started(node)
    evaluate = cheating_evaluator(node, wrong_key, scope)
    assert_refused(check, forged_response(node, query, evaluate=evaluate), VerificationError)


def test_swapped_proofs_evaluations_or_groups_are_caught(node: ResponderNode) -> None:
    check, query = started(node)
    honest = forged_response(node, query)
    assert len(honest.groups) >= 2
    first, second = honest.groups[0], honest.groups[1]
    swapped_proofs = (
        dataclasses.replace(first, proof=second.proof),
        dataclasses.replace(second, proof=first.proof),
        *honest.groups[2:],
    )
    reordered = (
        dataclasses.replace(first, elements=first.elements[::-1]),
        *honest.groups[1:],
    )
    zero_proof = (dataclasses.replace(first, proof=bytes(64)), *honest.groups[1:])
    order_proof = (
        dataclasses.replace(first, proof=first.proof[:32] + ORDER.to_bytes(32, "little")),
        *honest.groups[1:],
    )
    for groups in (swapped_proofs, reordered, zero_proof, order_proof, honest.groups[1:]):
        with pytest.raises(VerificationError):
            verify_response(
                descriptor=node.descriptor,
                responder_key=node.verify_key,
                proposer=PROPOSER,
                query=query,
                response=dataclasses.replace(honest, groups=groups),
            )
    assert_refused(check, dataclasses.replace(honest, groups=swapped_proofs), VerificationError)


def test_a_non_canonical_evaluated_element_is_refused(node: ResponderNode) -> None:
    check, query = started(node)
    response = forged_response(node, query)
    encoded = response.encode()
    victim = response.groups[0].elements[0]
    malleated = victim[:31] + bytes([victim[31] | 0x80])
    assert_refused(check, Response.decode(encoded.replace(victim, malleated)), RemoteProtocolError)


def test_an_invalid_evaluated_element_is_refused(node: ResponderNode) -> None:
    check, query = started(node)
    honest = forged_response(node, query)
    first = honest.groups[0]
    identity = (bytes(32), *first.elements[1:])
    groups = (dataclasses.replace(first, elements=identity), *honest.groups[1:])
    assert_refused(check, dataclasses.replace(honest, groups=groups), RemoteProtocolError)


# --- receipts and replays ------------------------------------------------------------------


def test_a_receipt_charging_another_area_is_refused(node: ResponderNode) -> None:
    check, query = started(node)
    area = query_area_km2(query.group_sizes(), RES)
    assert_refused(check, forged_response(node, query, area_km2=area * 1.01), VerificationError)
    check, query = started(node)
    assert_refused(check, forged_response(node, query, area_km2=0.0), VerificationError)


def test_a_receipt_signed_by_someone_else_is_refused(node: ResponderNode) -> None:
    check, query = started(node)
    response = forged_response(node, query, receipt_key=signing_key("impostor"))
    assert_refused(check, response, VerificationError)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("responder", "somebody"),
        ("proposer", "somebody"),
        ("epoch_id", bytes(16)),
        ("session_id", bytes(16)),
        ("transcript_hash", bytes(32)),
    ],
)
def test_a_receipt_for_another_check_is_refused(
    node: ResponderNode, field: str, value: Any
) -> None:
    check, query = started(node)
    honest = forged_response(node, query)
    receipt = dataclasses.replace(honest.receipt, **{field: value}).signed(node.signing_key)
    assert_refused(check, dataclasses.replace(honest, receipt=receipt), VerificationError)


def test_a_receipt_for_another_proposer_is_refused(node: ResponderNode) -> None:
    check, query = started(node)
    assert_refused(check, forged_response(node, query, proposer="ally"), VerificationError)


def test_a_replayed_response_from_a_previous_session_is_refused(node: ResponderNode) -> None:
    earlier = CheckPair(node, STRIKE, seed=b"earlier")
    old = earlier.respond(earlier.query())
    check, query = started(node)
    assert_refused(check, old, VerificationError)
    # Relabelled with the new session id it still fails: the evaluations and receipt are old.
    check, query = started(node)
    relabelled = dataclasses.replace(old, session_id=query.session_id)
    assert_refused(check, relabelled, VerificationError)


def test_an_old_receipt_on_fresh_evaluations_is_refused(node: ResponderNode) -> None:
    earlier = CheckPair(node, STRIKE, seed=b"earlier")
    old = earlier.respond(earlier.query())
    check, query = started(node)
    fresh = forged_response(node, query)
    assert_refused(check, dataclasses.replace(fresh, receipt=old.receipt), VerificationError)


# --- a tampered descriptor or snapshot -----------------------------------------------------


def test_a_descriptor_with_a_swapped_public_key_is_refused(node: ResponderNode) -> None:
    signed = node.descriptor
    key = signed.descriptor.public_keys[RES]
    impostor = other_epoch_key(RES).public
    tampered = signed.encoded.replace(key, impostor)
    assert tampered != signed.encoded
    with pytest.raises(VerificationError):
        SignedDescriptor.verify(
            tampered, signed.signature, node.verify_key, now=NOW, max_skew=CLOCK_SKEW_SECONDS
        )


def download(reader: SnapshotReader, blocks: list[bytes], root: bytes) -> None:
    reader.add_chunk(0, blocks)
    reader.finish(root)


def test_a_tampered_snapshot_block_is_refused(node: ResponderNode) -> None:
    root = node.descriptor.descriptor.snapshot_root
    for index in range(len(node.blocks)):
        for position in (0, len(node.blocks[index]) // 2, len(node.blocks[index]) - 1):
            blocks = list(node.blocks)
            tampered = bytearray(blocks[index])
            tampered[position] ^= 0x10
            blocks[index] = bytes(tampered)
            reader = SnapshotReader(node.params, blocks.__getitem__)
            with pytest.raises(RemoteProtocolError):
                download(reader, blocks, root)
            assert not reader.verified


def test_a_snapshot_from_another_epoch_does_not_match_the_digest(node: ResponderNode) -> None:
    other = make_responder(PROTECTED, res=RES, res_min=RES_MIN, seed=b"other epoch")
    reader = SnapshotReader(node.params, other.blocks.__getitem__)
    reader.add_chunk(0, other.blocks)
    with pytest.raises(VerificationError):
        reader.finish(node.descriptor.descriptor.snapshot_root)
    reader = SnapshotReader(node.params, node.blocks.__getitem__)
    reader.add_chunk(0, node.blocks)
    with pytest.raises(VerificationError):
        reader.finish(other.descriptor.descriptor.snapshot_root)


# --- a proposer that sends what it should not ----------------------------------------------


def test_a_query_for_a_previous_epoch_is_stale(node: ResponderNode) -> None:
    old_check, old_query = started(node)
    new_epoch = make_responder(PROTECTED, res=RES, res_min=RES_MIN, seed=b"next epoch", sequence=2)
    responder = new_epoch.responder_check()
    with pytest.raises(StaleError, match="another epoch"):
        responder.receive(old_query, now=NOW)
    assert responder.state is State.ERROR
    assert old_check.proposer.state is State.SENT


P = 2**255 - 19
ELEMENT = hash_to_group(b"some element", b"test")
BAD_ELEMENTS = {
    "identity": bytes(32),
    "high bit set": ELEMENT[:31] + bytes([ELEMENT[31] | 0x80]),
    "field element p": P.to_bytes(32, "little"),
    "field element p + 2": (P + 2).to_bytes(32, "little"),
    "negative field element": (1).to_bytes(32, "little"),
    "not on the curve": (2).to_bytes(32, "little"),
    "all ones": b"\xff" * 32,
}


@pytest.mark.parametrize("bad", BAD_ELEMENTS.values(), ids=BAD_ELEMENTS.keys())
def test_invalid_element_encodings_in_a_query_are_refused(node: ResponderNode, bad: bytes) -> None:
    _, query = started(node)
    victim = query.groups[-1].elements[-1]
    encoded = query.encode()
    assert encoded.count(victim) == 1
    responder = node.responder_check()
    with pytest.raises(RemoteProtocolError, match=r"canonical|identity"):
        responder.receive(Query.decode(encoded.replace(victim, bad)), now=NOW)
    assert responder.state in (State.IDLE, State.ERROR)
    assert responder.query is None


def test_group_validation_refuses_a_set_top_bit() -> None:
    with pytest.raises(RemoteProtocolError):
        hexpsi.protocol.crypto.group.validate_element(BAD_ELEMENTS["high bit set"])


@pytest.mark.parametrize("size", [31, 33, 64 + 1])
def test_wrong_length_elements_in_a_query_are_refused(node: ResponderNode, size: int) -> None:
    _, query = started(node)
    encoded = bytearray(query.encode())
    # Grow the last group's blob: its length field sits before its elements at the end.
    last = query.groups[-1]
    blob = last.joined()
    length_at = len(encoded) - len(blob) - 4
    extra = bytes(size % 32 or 1)
    encoded[length_at : length_at + 4] = (len(blob) + len(extra)).to_bytes(4, "big")
    encoded += extra
    with pytest.raises(RemoteProtocolError, match="multiple of 32"):
        Query.decode(bytes(encoded))
    with pytest.raises(RemoteProtocolError):
        ElementGroup(last.resolution, (b"\1" * size,))


def padded_query(node: ResponderNode, sizes: dict[int, int]) -> Query:
    """A query of valid random elements with the given group sizes."""
    rng = DeterministicRng(b"padding")
    groups = tuple(
        ElementGroup(r, tuple(hash_to_group(rng(32), b"test") for _ in range(n)))
        for r, n in sorted(sizes.items())
    )
    return Query(rng(16), node.descriptor.digest, groups)


class GroupOperationCalled(AssertionError):
    pass


def _forbidden(*args: object, **kwargs: object) -> None:
    raise GroupOperationCalled


@pytest.fixture
def forbid_group_operations(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it to make any group operation (element decoding included) fail the test."""

    def forbid() -> None:
        for name in ("_is_valid_point", "_mult", "_mult_base", "_from_hash", "_point_add"):
            monkeypatch.setattr(hexpsi.protocol.crypto.group, name, _forbidden)
        for name in ("validate_elements", "blind_evaluate", "generate_proof", "hash_to_group"):
            monkeypatch.setattr(hexpsi.protocol.check.session, name, _forbidden)

    return forbid


REFUSED_CHEAPLY = {
    "over the limit": ({9: 18}, RemoteProtocolError, "at most 16"),
    "over the limit in sum": ({8: 8, 9: 10}, RemoteProtocolError, "at most 16"),
    "not a bucket (7)": ({9: 7}, RemoteProtocolError, "bucket"),
    "not a bucket (0)": ({8: 0, 9: 8}, RemoteProtocolError, "bucket"),
    "too coarse": ({RES_MIN - 1: 8}, RemoteProtocolError, "outside 6..9"),
    "too fine": ({RES + 1: 8}, RemoteProtocolError, "outside 6..9"),
    "no groups": ({}, RemoteProtocolError, "no elements"),
    "stale": ({9: 8}, StaleError, "another epoch"),
}


@pytest.fixture(scope="module")
def small_node() -> ResponderNode:
    return make_responder(PROTECTED, res=RES, res_min=RES_MIN, max_query_tokens=16)


@pytest.mark.parametrize(
    ("sizes", "error", "message"), REFUSED_CHEAPLY.values(), ids=REFUSED_CHEAPLY.keys()
)
def test_bad_shapes_are_refused_before_any_group_operation(
    small_node: ResponderNode,
    forbid_group_operations: Callable[[], None],
    sizes: dict[int, int],
    error: type[Exception],
    message: str,
) -> None:
    query = padded_query(small_node, sizes)
    if error is StaleError:
        query = dataclasses.replace(query, descriptor_digest=bytes(32))
    responder = small_node.responder_check()
    forbid_group_operations()
    with pytest.raises(error, match=message):
        responder.receive(query, now=NOW)
    assert responder.state is State.ERROR


def test_the_guard_does_catch_group_operations(
    small_node: ResponderNode, forbid_group_operations: Callable[[], None]
) -> None:
    query = padded_query(small_node, {9: 8})
    responder = small_node.responder_check()
    forbid_group_operations()
    with pytest.raises(GroupOperationCalled):
        responder.receive(query, now=NOW)


def test_bucket_sized_groups_within_limits_are_accepted(small_node: ResponderNode) -> None:
    for sizes in ({9: 16}, {8: 8, 9: 8}, {6: 8}, {7: 9}):
        responder = small_node.responder_check()
        assessment = responder.receive(padded_query(small_node, sizes), now=NOW)
        assert assessment.group_sizes == sizes
        assert responder.respond(now=NOW).receipt.area_km2 == assessment.area_km2


# --- declaring a coarse token as a fine one ------------------------------------------------


def probe(node: ResponderNode, token: int, declared: int) -> tuple[bool, float]:
    """Send ``token`` blinded in the group of resolution ``declared``; did it hit, at what cost?"""
    rng = DeterministicRng(b"liar")
    (blind_scalar,), (element,) = blind([token_bytes(token)], MODE, rng)
    dummies = [hash_to_group(rng(32), b"dummy") for _ in range(7)]
    query = Query(rng(16), node.descriptor.digest, (ElementGroup(declared, (element, *dummies)),))
    responder = node.responder_check(seed=b"honest")
    assessment = responder.receive(query, now=NOW)
    response = responder.respond(now=NOW)
    verify_response(
        descriptor=node.descriptor,
        responder_key=node.verify_key,
        proposer=PROPOSER,
        query=query,
        response=response,
    )
    (output,) = finalize(
        [token_bytes(token)], [blind_scalar], [response.groups[0].elements[0]], MODE
    )
    value = truncate_output(output, node.params.bits)
    return node.reader().contains(value), assessment.area_km2


def test_a_coarse_token_declared_as_fine_matches_nothing(node: ResponderNode) -> None:
    coarse = h3.cell_to_parent(ORIGIN, 7)
    hit, honest_cost = probe(node, coarse, declared=7)
    assert hit
    for declared in (8, 9):
        hit, cost = probe(node, coarse, declared=declared)
        assert not hit
        assert cost < honest_cost
    fine_hit, _ = probe(node, ORIGIN, declared=9)
    assert fine_hit
    assert not probe(node, ORIGIN, declared=7)[0]


def test_an_honest_evaluation_finalizes_to_what_the_snapshot_holds(node: ResponderNode) -> None:
    """Blind, evaluate, unblind: the responder's direct evaluation, and so a snapshot member."""
    token = token_bytes(ORIGIN)
    (blind_scalar,), (element,) = blind([token], MODE, DeterministicRng(b"direct"))
    evaluated = blind_evaluate(node.epoch.keys[RES], [element])
    (output,) = finalize([token], [blind_scalar], evaluated, MODE)
    assert [output] == evaluate(node.epoch.keys[RES], [token], MODE)
    assert node.reader().contains(truncate_output(output, node.params.bits))


def test_refused_responses_leave_no_partial_state(node: ResponderNode) -> None:
    check, query = started(node)
    bad = forged_response(node, query, evaluate=cheating_evaluator(node, "epoch", "all"))
    with pytest.raises(VerificationError):
        check.finish(bad)
    with pytest.raises(LocalProtocolError):
        check.finish(forged_response(node, query))
    assert check.proposer.response is None
