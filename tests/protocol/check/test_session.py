"""The honest check end to end in memory: results, padding, unlinkability and the state machines."""

from __future__ import annotations

import dataclasses

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.budget import query_area_km2
from hexpsi.protocol.check.plan import QUERY_BUCKET_MINIMUM
from hexpsi.protocol.check.session import State
from hexpsi.protocol.crypto.group import validate_element
from hexpsi.protocol.errors import (
    InputError,
    LocalProtocolError,
    RemoteProtocolError,
    StaleError,
    VerificationError,
)
from hexpsi.protocol.geo.tokens import query_tokens, token_count
from hexpsi.protocol.padding import is_bucket
from tests.protocol.helpers import (
    NOW,
    PROPOSER,
    VALIDITY,
    CheckPair,
    ResponderNode,
    expected_outcome,
    forged_response,
    make_responder,
)

RES, RES_MIN = 9, 6
ORIGIN = h3.latlng_to_cell(33.5, 38.6, RES)
PROTECTED = frozenset(h3.grid_disk(ORIGIN, 3))
# A strike whose edge overlaps the protected disc, and one far from it.
OVERLAPPING = frozenset(h3.grid_disk(h3.cell_to_center_child(h3.cell_to_parent(ORIGIN, 7), 9), 2))
NEARBY = frozenset(h3.grid_disk(ORIGIN, 12)) - frozenset(h3.grid_disk(ORIGIN, 4))
FAR = frozenset(h3.grid_disk(h3.latlng_to_cell(34.5, 39.6, RES), 5))


@pytest.fixture(scope="module")
def node() -> ResponderNode:
    return make_responder(PROTECTED, res=RES, res_min=RES_MIN)


def pair(node: ResponderNode, strike: frozenset[int], seed: bytes = b"proposer") -> CheckPair:
    return CheckPair(node, strike, seed=seed)


@pytest.mark.parametrize(
    "strike",
    [
        PROTECTED,
        OVERLAPPING,
        NEARBY,
        FAR,
        frozenset({ORIGIN}),
        frozenset(h3.cell_to_children(h3.cell_to_parent(ORIGIN, 6), 9)),
    ],
    ids=["same zone", "overlapping", "ring around", "far away", "one cell", "whole res-6 parent"],
)
def test_honest_check_finds_what_the_hierarchy_implies(
    node: ResponderNode, strike: frozenset[int]
) -> None:
    check = pair(node, strike)
    result = check.run()
    expected = expected_outcome(PROTECTED, strike, res=RES, res_min=RES_MIN)
    assert result.conflict == expected.conflict == bool(strike & PROTECTED)
    assert result.conflicting_tokens == expected.conflicting_tokens
    assert result.conflicting_cells == expected.conflicting_cells
    assert strike & PROTECTED <= result.conflicting_cells <= strike
    assert result.responder == "coalition"
    assert result.epoch_id == node.descriptor.descriptor.epoch_id
    tokens = query_tokens(strike, res=RES, res_min=RES_MIN)
    assert result.tokens_sent == token_count(tokens)
    assert check.proposer.query is not None
    assert result.elements_sent == check.proposer.query.element_count
    assert check.proposer.state is State.DONE
    assert check.responder.state is State.DONE
    assert check.proposer.result is result


def test_a_whole_parent_is_asked_about_as_one_coarse_token(node: ResponderNode) -> None:
    parent = h3.cell_to_parent(ORIGIN, 6)
    result = pair(node, frozenset(h3.cell_to_children(parent, 9))).run()
    assert result.tokens_sent == 1
    assert result.conflicting_tokens == {parent}
    assert len(result.conflicting_cells) == 7**3


def test_receipt_describes_the_check(node: ResponderNode) -> None:
    check = pair(node, OVERLAPPING)
    query = check.query()
    assessment = check.responder.receive(query, now=NOW + 5)
    response = check.responder.respond(now=NOW + 5)
    result = check.finish(response)
    receipt = result.receipt
    receipt.verify(node.verify_key)
    assert receipt.responder == "coalition"
    assert receipt.proposer == PROPOSER
    assert receipt.epoch_id == node.descriptor.descriptor.epoch_id
    assert receipt.session_id == query.session_id
    assert receipt.issued_at == NOW + 5
    assert receipt.area_km2 == assessment.area_km2
    assert assessment.area_km2 == query_area_km2(query.group_sizes(), RES)
    assert assessment.group_sizes == query.group_sizes()


def test_query_is_padded_to_buckets_of_valid_elements(node: ResponderNode) -> None:
    check = pair(node, NEARBY)
    query = check.query()
    tokens = query_tokens(NEARBY, res=RES, res_min=RES_MIN)
    assert sorted(query.group_sizes()) == sorted(tokens)
    for group in query.groups:
        size = len(group.elements)
        assert size >= QUERY_BUCKET_MINIMUM
        assert is_bucket(size)
        assert size >= len(tokens[group.resolution])
        assert len(set(group.elements)) == size
        for element in group.elements:
            validate_element(element)
    assert query.descriptor_digest == node.descriptor.digest
    assert len(query.session_id) == 16
    positions = check.proposer.positions
    assert (
        len({(p.resolution, p.index) for p in positions}) == len(positions) == token_count(tokens)
    )


def scattered_cells(count: int) -> frozenset[int]:
    """Cells far apart, so nothing compacts and each is its own res-9 token."""
    return frozenset(h3.latlng_to_cell(33.0 + 0.1 * i, 38.0, RES) for i in range(count))


def test_strikes_of_different_sizes_in_one_bucket_look_the_same(node: ResponderNode) -> None:
    small, large = scattered_cells(2), scattered_cells(7)
    small_query = pair(node, small).query()
    large_query = pair(node, large, seed=b"other").query()
    assert small_query.group_sizes() == large_query.group_sizes() == {RES: QUERY_BUCKET_MINIMUM}
    assert len(small_query.encode()) == len(large_query.encode())
    bigger = pair(node, scattered_cells(17)).query()
    biggest = pair(node, scattered_cells(18)).query()
    assert bigger.group_sizes() == biggest.group_sizes() == {RES: 18}
    assert len(bigger.encode()) == len(biggest.encode())


def test_two_queries_for_the_same_zone_share_no_blinded_element(node: ResponderNode) -> None:
    first = pair(node, OVERLAPPING, seed=b"first").query()
    second = pair(node, OVERLAPPING, seed=b"second").query()
    assert first.session_id != second.session_id
    assert first.group_sizes() == second.group_sizes()
    first_elements = {e for group in first.groups for e in group.elements}
    second_elements = {e for group in second.groups for e in group.elements}
    assert first_elements.isdisjoint(second_elements)


def test_same_random_source_gives_the_same_query(node: ResponderNode) -> None:
    assert pair(node, OVERLAPPING).query() == pair(node, OVERLAPPING).query()


def test_real_tokens_sit_at_random_places_among_dummies(node: ResponderNode) -> None:
    places = set()
    for seed in (b"a", b"b", b"c", b"d"):
        check = pair(node, frozenset({ORIGIN}), seed=seed)
        check.query()
        (position,) = check.proposer.positions
        places.add(position.index)
    assert len(places) > 1


def test_an_empty_strike_is_refused_locally(node: ResponderNode) -> None:
    check = pair(node, frozenset())
    with pytest.raises(LocalProtocolError, match="covers no cells"):
        check.proposer.start()
    assert check.proposer.state is State.ERROR


def test_a_strike_too_large_for_the_responder_is_refused_locally() -> None:
    small_limit = make_responder(PROTECTED, res=RES, res_min=RES_MIN, max_query_tokens=16)
    check = pair(small_limit, scattered_cells(17))
    with pytest.raises(LocalProtocolError, match="at most 16"):
        check.proposer.start()
    assert check.proposer.state is State.ERROR
    assert pair(small_limit, scattered_cells(8)).run().conflict is False


def test_strike_cells_at_the_wrong_resolution_are_refused(node: ResponderNode) -> None:
    with pytest.raises(InputError):
        pair(node, frozenset({h3.cell_to_parent(ORIGIN, 8)}))


# --- state machines ------------------------------------------------------------------


def test_proposer_refuses_calls_in_the_wrong_state(node: ResponderNode) -> None:
    check = pair(node, OVERLAPPING)
    query = check.proposer.start()
    other = pair(node, OVERLAPPING, seed=b"other")
    response = other.respond(other.query())
    with pytest.raises(LocalProtocolError, match="not idle"):
        check.proposer.start()
    assert check.proposer.state is State.SENT
    check.finish(check.respond(query))
    for call in (check.proposer.start, lambda: check.finish(response)):
        with pytest.raises(LocalProtocolError, match="is done"):
            call()
    fresh = pair(node, OVERLAPPING)
    with pytest.raises(LocalProtocolError, match="not sent"):
        fresh.finish(response)


def test_proposer_parks_in_error_after_a_bad_response(node: ResponderNode) -> None:
    check = pair(node, OVERLAPPING)
    query = check.query()
    other = pair(node, OVERLAPPING, seed=b"other")
    with pytest.raises(VerificationError):
        check.finish(other.respond(other.query()))
    assert check.proposer.state is State.ERROR
    assert check.proposer.result is None
    good = check.respond(query)
    with pytest.raises(LocalProtocolError, match="is error"):
        check.finish(good)
    assert check.proposer.result is None


def test_responder_refuses_calls_in_the_wrong_state(node: ResponderNode) -> None:
    check = pair(node, OVERLAPPING)
    with pytest.raises(LocalProtocolError, match="not received"):
        check.responder.respond(now=NOW)
    query = check.query()
    check.responder.receive(query, now=NOW)
    with pytest.raises(LocalProtocolError, match="not idle"):
        check.responder.receive(query, now=NOW)
    check.responder.respond(now=NOW)
    with pytest.raises(LocalProtocolError, match="not received"):
        check.responder.respond(now=NOW)
    with pytest.raises(LocalProtocolError, match="not idle"):
        check.responder.receive(query, now=NOW)


def test_responder_parks_in_error_after_a_bad_query(node: ResponderNode) -> None:
    check = pair(node, OVERLAPPING)
    query = check.query()
    bad = dataclasses.replace(query, groups=(dataclasses.replace(query.groups[0], resolution=3),))
    with pytest.raises(RemoteProtocolError):
        check.responder.receive(bad, now=NOW)
    assert check.responder.state is State.ERROR
    with pytest.raises(LocalProtocolError, match="is error"):
        check.responder.receive(query, now=NOW)
    with pytest.raises(LocalProtocolError):
        check.responder.respond(now=NOW)


def test_an_expired_epoch_refuses_queries(node: ResponderNode) -> None:
    check = pair(node, OVERLAPPING)
    with pytest.raises(StaleError, match="expired"):
        check.responder.receive(check.query(), now=NOW + VALIDITY + 1)
    assert check.responder.state is State.ERROR


def test_a_query_accepted_just_before_expiry_is_not_answered_after_it(
    node: ResponderNode,
) -> None:
    """An answer signed after the epoch ended would be evidence no verifier accepts."""
    check = pair(node, OVERLAPPING)
    check.responder.receive(check.query(), now=NOW + VALIDITY)
    with pytest.raises(StaleError, match="expired"):
        check.responder.respond(now=NOW + VALIDITY + 1)
    assert check.responder.state is State.ERROR


def test_a_response_dated_outside_the_epoch_is_refused(node: ResponderNode) -> None:
    """A responder whose clock is off signs a receipt that later evidence checks would refuse."""
    for when in (NOW - 1, NOW + VALIDITY + 1):
        check = pair(node, OVERLAPPING)
        query = check.query()
        with pytest.raises(VerificationError, match="outside the epoch"):
            check.finish(forged_response(node, query, issued_at=when))
        assert check.proposer.state is State.ERROR
    check = pair(node, OVERLAPPING)
    edge = forged_response(node, check.query(), issued_at=NOW + VALIDITY)
    assert check.finish(edge, now=NOW + VALIDITY).conflict


# --- receipt time against the proposer's clock -------------------------------------------


@pytest.mark.parametrize(
    ("signed_at", "judged_at", "message"),
    [
        (NOW + 1800, NOW, "receipt dated 30 min 0 s ahead of this node's clock"),
        (NOW, NOW + 1800, "receipt dated 30 min 0 s behind this node's clock"),
        (NOW + 301, NOW, "receipt dated 5 min 1 s ahead of this node's clock"),
    ],
)
def test_a_receipt_dated_beyond_the_skew_is_refused_before_any_result(
    node: ResponderNode, signed_at: float, judged_at: float, message: str
) -> None:
    """Every receipt here lies inside the epoch, so only the proposer's clock can tell."""
    check = pair(node, OVERLAPPING)
    response = check.respond(check.query(), now=signed_at)
    with pytest.raises(StaleError, match=message) as caught:
        check.finish(response, now=judged_at, max_skew=300)
    assert caught.value.message.endswith("; at most 300 s of skew is accepted — check both clocks")
    assert isinstance(caught.value, RemoteProtocolError)
    assert check.proposer.state is State.ERROR
    assert check.proposer.result is None
    assert check.proposer.values == []


def test_a_receipt_within_the_skew_either_way_is_accepted(node: ResponderNode) -> None:
    for signed_at, judged_at in ((NOW + 300, NOW), (NOW, NOW + 300), (NOW + 5, NOW + 5)):
        check = pair(node, OVERLAPPING)
        response = check.respond(check.query(), now=signed_at)
        assert check.finish(response, now=judged_at, max_skew=300).conflict


def test_the_skew_allowed_is_the_callers(node: ResponderNode) -> None:
    check = pair(node, OVERLAPPING)
    response = check.respond(check.query(), now=NOW + 1800)
    assert check.finish(response, now=NOW, max_skew=1800).conflict
    check = pair(node, OVERLAPPING)
    response = check.respond(check.query(), now=NOW + 61)
    with pytest.raises(StaleError, match="at most 60 s of skew"):
        check.finish(response, now=NOW, max_skew=60)
