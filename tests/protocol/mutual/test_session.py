"""The mutual check in memory: exact counts, what each side sees, padding, states, hostile input."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.budget import cell_area_km2
from hexpsi.protocol.crypto.group import (
    IDENTITY,
    random_scalar,
    scalar_invert,
    scalar_mul,
    scalar_mult,
    scalar_mult_many,
)
from hexpsi.protocol.errors import (
    InputError,
    LocalProtocolError,
    RemoteProtocolError,
    StaleError,
    Status,
    VerificationError,
)
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS
from hexpsi.protocol.mutual.messages import (
    BUCKET_MINIMUM,
    MAX_SET_SIZE,
    ElementChunk,
    MutualAccept,
    MutualCommitment,
    MutualFinish,
    MutualReceipt,
    MutualStart,
)
from hexpsi.protocol.mutual.session import State
from hexpsi.protocol.mutual.sets import (
    blind_slots,
    cells_at_resolution,
    mutual_element,
    padded_slots,
    split_chunks,
)
from hexpsi.protocol.padding import size_bucket
from tests.protocol.helpers import NOW, PROPOSER, DeterministicRng, signing_key
from tests.protocol.mutual_helpers import (
    CENTER,
    PROPOSER_EPOCH,
    RES,
    MutualPair,
    descriptor,
    disk,
    mutual_pair,
    proposer_session,
    responder_session,
    responder_signing_key,
    wire,
)

NEAR = h3.grid_ring(CENTER, 6)[0]
A = disk(CENTER, 5)  # 91 cells
B = disk(NEAR, 5)  # overlaps A
NON_CANONICAL = b"\xff" * 32  # field element above p: never a valid encoding


def test_an_honest_pair_counts_exactly_the_shared_cells() -> None:
    pair = mutual_pair(A, B)
    result = pair.run()
    assert result.shared_cells == len(A & B) > 0
    assert result.own_cells == len(A)
    assert result.area_km2 == pytest.approx(len(A & B) * cell_area_km2(RES))
    assert pair.responder.shared_cells == pair.proposer.shared_cells == len(A & B)
    assert pair.proposer.state is State.DONE
    assert pair.responder.state is State.DONE


def test_both_sides_hold_the_same_receipt_signed_by_both() -> None:
    pair = mutual_pair(A, B)
    result = pair.run()
    assert pair.receipt == result.receipt
    decoded = MutualReceipt.decode(result.receipt.encode())
    assert decoded == result.receipt
    decoded.verify(
        proposer_key=signing_key(PROPOSER).verify_key,
        responder_key=responder_signing_key().verify_key,
    )
    statement = decoded.statement
    assert (statement.proposer, statement.responder) == (PROPOSER, descriptor().descriptor.node)
    assert statement.responder_epoch_id == descriptor().descriptor.epoch_id
    assert statement.proposer_epoch_id == PROPOSER_EPOCH
    assert statement.res == RES
    assert statement.shared_cells == len(A & B)
    forged = dataclasses.replace(decoded, statement=dataclasses.replace(statement, shared_cells=0))
    with pytest.raises(VerificationError):
        forged.verify(
            proposer_key=signing_key(PROPOSER).verify_key,
            responder_key=responder_signing_key().verify_key,
        )


@pytest.mark.parametrize(
    ("proposer", "responder", "shared"),
    [
        (A, A, len(A)),
        (A, frozenset(h3.grid_disk(h3.grid_ring(CENTER, 30)[0], 2)), 0),
        (frozenset(), B, 0),
        (A, frozenset(), 0),
    ],
    ids=["same-map", "far-apart", "proposer-empty", "responder-empty"],
)
def test_edge_maps(proposer: frozenset[int], responder: frozenset[int], shared: int) -> None:
    assert mutual_pair(proposer, responder).run().shared_cells == shared


def test_a_proposer_map_at_another_resolution_is_compared_at_the_responders() -> None:
    finer = frozenset(c for cell in A for c in h3.cell_to_children(cell, RES + 1))
    coarser = frozenset(h3.cell_to_parent(cell, RES - 1) for cell in A)
    assert mutual_pair(finer, B).run().shared_cells == len(A & B)
    expanded = cells_at_resolution(coarser, RES)
    assert expanded >= A
    assert mutual_pair(coarser, B).run().shared_cells == len(expanded & B)


def test_cells_at_resolution_refuses_what_is_not_a_cell() -> None:
    with pytest.raises(InputError, match="not a valid H3 cell"):
        cells_at_resolution([CENTER, 12345], RES)
    with pytest.raises(InputError, match="res must be"):
        cells_at_resolution([CENTER], 16)


def test_chunking_does_not_change_the_result_or_the_transcript() -> None:
    small = mutual_pair(A, B, chunk_elements=10)
    large = mutual_pair(A, B)
    assert small.run().receipt.statement == large.run().receipt.statement
    assert len(small.proposer_sizes) > len(large.proposer_sizes)


# --- what the proposer sees --------------------------------------------------------------


def answer_for(first_set: list[bytes], *, seed: bytes = b"responder") -> list[bytes]:
    """D_A that a responder (seeded) returns for the proposer set ``first_set``, as sent."""
    responder = responder_session(B, seed=seed)
    start = MutualStart(b"s" * 16, descriptor().digest, PROPOSER_EPOCH, len(first_set))
    responder.receive_start(start, now=NOW)
    for chunk in split_chunks(first_set, 50):
        responder.receive_proposer_chunk(chunk)
    for _ in responder.own_chunks():
        pass
    responder.receive_commitment(MutualCommitment(b"c" * 32))
    return [element for chunk in responder.answer() for element in chunk.elements]


def test_reordering_the_proposers_set_does_not_change_the_order_it_receives() -> None:
    key = random_scalar(DeterministicRng(b"proposer key"))
    cells = sorted(A)
    size = size_bucket(len(cells), minimum=BUCKET_MINIMUM)
    padding = [DeterministicRng(b"pad" + bytes([i]))(64) for i in range(size - len(cells))]
    forward = blind_slots(key, [*cells, *padding])
    permuted = blind_slots(key, [*reversed(padding), *cells[::2], *reversed(cells[1::2])])
    assert sorted(forward) == sorted(permuted)
    assert forward != permuted
    first, second = answer_for(forward), answer_for(permuted)
    assert first == second  # the same values in the same order, whatever order they came in
    assert first == sorted(first)
    # Another responder key gives another answer: the order is the responder's, not fixed.
    assert set(answer_for(forward, seed=b"another responder")).isdisjoint(first)


def test_no_received_value_ties_back_to_a_cell_without_the_responders_key() -> None:
    pair = mutual_pair(A, B)
    pair.run()
    received = set(pair.proposer.received_doubles)
    a = pair.proposer._key
    b = pair.responder._key
    assert a is not None
    assert b is not None
    hashed = [mutual_element(cell) for cell in sorted(A)]
    # With the responder's key every real cell is in there: the values do carry the cells...
    assert set(scalar_mult_many(scalar_mul(a, b), hashed)) <= received
    # ...but nothing the proposer can compute alone lands on one.
    computable = [
        *hashed,
        *scalar_mult_many(a, hashed),
        *scalar_mult_many(scalar_mul(a, a), hashed),
        *scalar_mult_many(scalar_invert(a), hashed),
    ]
    assert received.isdisjoint(computable)
    guessed_b = random_scalar(DeterministicRng(b"a guess at b"))
    assert received.isdisjoint(scalar_mult_many(scalar_mul(a, guessed_b), hashed))


def test_the_answer_is_the_sorted_double_blinded_set_and_nothing_else() -> None:
    pair = mutual_pair(A, B)
    pair.run()
    received = pair.proposer.received_doubles
    assert received == sorted(received)
    assert len(received) == pair.proposer.proposer_set_size
    assert len(set(received)) == len(received)


# --- padding ----------------------------------------------------------------------------


def cells_of(count: int) -> frozenset[int]:
    cells: list[int] = []
    radius = 0
    while len(cells) < count:
        ring = [CENTER] if radius == 0 else sorted(h3.grid_ring(CENTER, radius))
        cells.extend(ring[: count - len(cells)])
        radius += 1
    return frozenset(cells)


def test_maps_of_different_sizes_in_one_bucket_send_identical_message_sizes() -> None:
    assert size_bucket(130, minimum=BUCKET_MINIMUM) == size_bucket(140, minimum=BUCKET_MINIMUM)
    small = mutual_pair(cells_of(130), cells_of(20), chunk_elements=50)
    large = mutual_pair(cells_of(140), cells_of(100), chunk_elements=50)
    small.run()
    large.run()
    assert small.proposer_sizes == large.proposer_sizes
    assert small.responder_sizes == large.responder_sizes
    other_bucket = mutual_pair(cells_of(200), cells_of(20), chunk_elements=50)
    other_bucket.run()
    assert other_bucket.proposer_sizes != small.proposer_sizes


def test_every_map_up_to_the_minimum_looks_the_same() -> None:
    assert proposer_session(cells_of(1)).proposer_set_size == BUCKET_MINIMUM
    assert proposer_session(cells_of(BUCKET_MINIMUM)).proposer_set_size == BUCKET_MINIMUM
    assert responder_session(frozenset()).responder_set_size == BUCKET_MINIMUM


def test_padding_is_shuffled_in_with_the_cells() -> None:
    cells = cells_of(40)
    slots = padded_slots(cells, BUCKET_MINIMUM, DeterministicRng(b"shuffle"))
    assert len(slots) == BUCKET_MINIMUM
    assert {slot for slot in slots if isinstance(slot, int)} == cells
    positions = [i for i, slot in enumerate(slots) if isinstance(slot, int)]
    assert positions != list(range(40))
    assert max(positions) > 80  # real cells are spread over the whole set


# --- states -------------------------------------------------------------------------------


def test_steps_out_of_order_are_refused_and_park_the_session() -> None:
    proposer = proposer_session(A)
    with pytest.raises(LocalProtocolError, match="is idle, not exchanging"):
        proposer.commit()
    assert proposer.state is State.ERROR
    with pytest.raises(LocalProtocolError, match="is error"):
        proposer.start()


def test_a_session_is_used_once() -> None:
    pair = mutual_pair(A, B)
    pair.run()
    with pytest.raises(LocalProtocolError):
        pair.proposer.start()
    with pytest.raises(LocalProtocolError):
        pair.responder.receive_start(
            MutualStart(b"t" * 16, descriptor().digest, PROPOSER_EPOCH, 128), now=NOW
        )


def test_the_proposer_commits_only_after_both_sets_moved() -> None:
    pair = mutual_pair(A, B)
    pair.open()
    for chunk in pair.proposer.outgoing_chunks():
        pair.responder.receive_proposer_chunk(wire(chunk))
    with pytest.raises(LocalProtocolError, match="commit needs"):
        pair.proposer.commit()


# --- hostile input ---------------------------------------------------------------------------


def opened(**options: Any) -> MutualPair:
    pair = mutual_pair(A, B, chunk_elements=50, **options)
    pair.open()
    return pair


def proposer_chunks(pair: MutualPair) -> list[ElementChunk]:
    return list(pair.proposer.outgoing_chunks())


def with_element(chunk: ElementChunk, position: int, element: bytes) -> ElementChunk:
    elements = list(chunk.elements)
    elements[position] = element
    return ElementChunk(chunk.index, tuple(elements))


@pytest.mark.parametrize(
    ("element", "message"),
    [
        (NON_CANONICAL, "chunk 1, element 7 is not a canonical ristretto255 encoding"),
        (IDENTITY, "chunk 1, element 7 is the identity element"),
    ],
)
def test_a_bad_element_in_the_proposers_set_is_named(element: bytes, message: str) -> None:
    pair = opened()
    first, second, *_ = proposer_chunks(pair)
    pair.responder.receive_proposer_chunk(first)
    with pytest.raises(RemoteProtocolError, match=message):
        pair.responder.receive_proposer_chunk(with_element(second, 7, element))
    assert pair.responder.state is State.ERROR


def test_a_bad_element_in_the_responders_set_is_named() -> None:
    pair = opened()
    chunks = list(pair.responder.own_chunks())
    with pytest.raises(RemoteProtocolError, match="responder's set, chunk 0, element 3 is the"):
        pair.proposer.receive_responder_chunk(with_element(chunks[0], 3, IDENTITY))
    assert pair.proposer.state is State.ERROR


@pytest.mark.parametrize("size", [31, 33, 65])
def test_elements_of_the_wrong_length_are_refused(size: int) -> None:
    with pytest.raises(RemoteProtocolError, match="whole number of 32-byte elements"):
        ElementChunk.from_joined(0, b"\x01" * size)
    with pytest.raises(RemoteProtocolError, match="is not 32 bytes"):
        ElementChunk(0, (b"\x01" * size,))


def test_empty_and_oversized_chunks_are_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="holds 0 elements"):
        ElementChunk.from_joined(0, b"")
    with pytest.raises(RemoteProtocolError, match="at most 16384"):
        ElementChunk.from_joined(0, bytes(32 * 16385))


def test_chunks_out_of_order_are_refused() -> None:
    pair = opened()
    _, second, *_ = proposer_chunks(pair)
    with pytest.raises(RemoteProtocolError, match="chunk 1 arrived where chunk 0 was due"):
        pair.responder.receive_proposer_chunk(second)


def test_a_repeated_chunk_is_refused() -> None:
    pair = opened()
    first, *_ = proposer_chunks(pair)
    pair.responder.receive_proposer_chunk(first)
    with pytest.raises(RemoteProtocolError, match="chunk 0 arrived where chunk 1 was due"):
        pair.responder.receive_proposer_chunk(first)


def test_more_elements_than_announced_are_refused() -> None:
    pair = opened()
    chunks = proposer_chunks(pair)
    for chunk in chunks:
        pair.responder.receive_proposer_chunk(chunk)
    extra = ElementChunk(len(chunks), chunks[0].elements[:1])
    with pytest.raises(RemoteProtocolError, match="more than the 128 elements announced"):
        pair.responder.receive_proposer_chunk(extra)


def test_a_commitment_before_the_whole_set_is_refused() -> None:
    pair = opened()
    first, *_ = proposer_chunks(pair)
    pair.responder.receive_proposer_chunk(first)
    for _ in pair.responder.own_chunks():
        pass
    with pytest.raises(RemoteProtocolError, match="after 50 of the 128 elements"):
        pair.responder.receive_commitment(MutualCommitment(b"c" * 32))


def test_a_proposer_set_with_a_repeated_element_is_refused() -> None:
    pair = opened()
    chunks = proposer_chunks(pair)
    chunks[1] = with_element(chunks[1], 0, chunks[0].elements[0])
    for chunk in chunks:
        pair.responder.receive_proposer_chunk(chunk)
    for _ in pair.responder.own_chunks():
        pass
    pair.responder.receive_commitment(MutualCommitment(b"c" * 32))
    with pytest.raises(RemoteProtocolError, match="proposer's set repeats an element"):
        pair.responder.answer()


@pytest.mark.parametrize(
    ("size", "status"),
    [
        (129, Status.INVALID_ARGUMENT),  # not a bucket
        (64, Status.INVALID_ARGUMENT),  # a bucket, but below the minimum
        (0, Status.INVALID_ARGUMENT),
        (MAX_SET_SIZE * 2, Status.RESOURCE_EXHAUSTED),
    ],
)
def test_set_sizes_must_be_padding_buckets_within_the_limit(size: int, status: Status) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        MutualStart(b"s" * 16, descriptor().digest, PROPOSER_EPOCH, size)
    assert caught.value.status is status


def test_a_start_for_another_descriptor_or_an_expired_epoch_is_stale() -> None:
    responder = responder_session(B)
    with pytest.raises(StaleError, match="another epoch descriptor"):
        responder.receive_start(MutualStart(b"s" * 16, b"d" * 32, PROPOSER_EPOCH, 128), now=NOW)
    responder = responder_session(B)
    start = MutualStart(b"s" * 16, descriptor().digest, PROPOSER_EPOCH, 128)
    with pytest.raises(StaleError, match="expired"):
        responder.receive_start(start, now=descriptor().descriptor.valid_until + 1)


def test_an_accept_for_another_session_is_refused() -> None:
    proposer = proposer_session(A)
    proposer.start()
    with pytest.raises(RemoteProtocolError, match="another session"):
        proposer.accept(MutualAccept(b"x" * 16, 128))


def answered() -> tuple[MutualPair, list[ElementChunk]]:
    pair = opened()
    pair.exchange_sets()
    commitment = pair.proposer.commit()
    pair.responder.receive_commitment(commitment)
    return pair, pair.responder.answer()


def test_an_answer_out_of_order_is_refused() -> None:
    pair, chunks = answered()
    reordered = list(reversed(chunks[0].elements))
    with pytest.raises(RemoteProtocolError, match="not strictly ascending"):
        pair.proposer.receive_double_chunk(ElementChunk(0, tuple(reordered)))


def test_a_bad_element_in_the_answer_is_refused() -> None:
    pair, chunks = answered()
    with pytest.raises(
        RemoteProtocolError, match="proposer set, chunk 0, element 0 is the identity"
    ):
        pair.proposer.receive_double_chunk(with_element(chunks[0], 0, IDENTITY))


def test_a_reveal_that_does_not_match_the_commitment_is_caught() -> None:
    pair, chunks = answered()
    for chunk in chunks:
        pair.proposer.receive_double_chunk(chunk)
    revealed = pair.proposer.reveal()
    # Swap the revealed set for a copy of the answer (what a cheat would want counted).
    copied = [ElementChunk(c.index, chunks[c.index].elements) for c in revealed]
    for chunk in copied[:-1]:
        pair.responder.receive_reveal_chunk(chunk)
    with pytest.raises(VerificationError, match="had not committed to"):
        pair.responder.receive_reveal_chunk(copied[-1])


def revealed_pair() -> MutualPair:
    pair = mutual_pair(A, B)
    pair.open()
    pair.exchange_sets()
    pair.commit_and_answer()
    pair.reveal()
    return pair


def test_a_statement_with_another_count_is_not_countersigned() -> None:
    pair = revealed_pair()
    finish = pair.finish()
    inflated = dataclasses.replace(finish.statement, shared_cells=finish.statement.shared_cells + 5)
    signature = signing_key(PROPOSER).sign(inflated.encode()).signature
    with pytest.raises(VerificationError, match=f"claims {len(A & B) + 5} shared cells"):
        pair.responder.countersign(
            MutualFinish(inflated, signature), now=NOW, max_skew=CLOCK_SKEW_SECONDS
        )


def test_a_statement_with_another_transcript_is_not_countersigned() -> None:
    pair = revealed_pair()
    finish = pair.finish()
    other = dataclasses.replace(finish.statement, transcript_hash=b"t" * 32)
    signature = signing_key(PROPOSER).sign(other.encode()).signature
    with pytest.raises(VerificationError, match="does not match this session"):
        pair.responder.countersign(
            MutualFinish(other, signature), now=NOW, max_skew=CLOCK_SKEW_SECONDS
        )


def test_a_badly_signed_or_misdated_statement_is_not_countersigned() -> None:
    pair = revealed_pair()
    finish = pair.finish()
    forged = MutualFinish(finish.statement, signing_key("someone else").sign(b"x").signature)
    with pytest.raises(VerificationError, match="proposer's signature"):
        pair.responder.countersign(forged, now=NOW, max_skew=CLOCK_SKEW_SECONDS)
    pair = revealed_pair()
    with pytest.raises(StaleError, match="skew"):
        pair.responder.countersign(pair.finish(), now=NOW + 3600, max_skew=CLOCK_SKEW_SECONDS)


@pytest.mark.parametrize(
    ("judged_at", "message"),
    [
        (NOW - 3600, "the proposer's statement dated 1 h 0 min ahead of this node's clock"),
        (NOW + 3600, "the proposer's statement dated 1 h 0 min behind this node's clock"),
    ],
)
def test_the_statement_is_judged_by_the_responders_clock_and_skew(
    judged_at: float, message: str
) -> None:
    pair = revealed_pair()
    with pytest.raises(StaleError, match=message) as caught:
        pair.responder.countersign(pair.finish(), now=judged_at, max_skew=300)
    assert "at most 300 s of skew is accepted — check both clocks" in caught.value.message
    assert pair.responder.state is State.ERROR
    pair = revealed_pair()
    receipt = pair.responder.countersign(pair.finish(), now=judged_at, max_skew=3600)
    assert receipt.statement.issued_at == NOW


def test_a_bad_countersignature_is_caught_by_the_proposer() -> None:
    pair = revealed_pair()
    finish = pair.finish()
    pair.responder.countersign(finish, now=NOW, max_skew=CLOCK_SKEW_SECONDS)
    wrong = responder_signing_key().sign(b"something else").signature
    with pytest.raises(VerificationError, match="responder's signature"):
        pair.proposer.complete(wrong)
    assert pair.proposer.state is State.ERROR


def test_a_map_beyond_the_limit_is_refused_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hexpsi.protocol.mutual.session.MAX_SET_SIZE", 128)
    with pytest.raises(LocalProtocolError, match="takes at most 128 padded elements"):
        proposer_session(cells_of(129))


def test_the_group_work_runs_through_the_mapper() -> None:
    calls: list[int] = []

    def mapper(function: Callable[[Any], Any], batches: Iterable[Any]) -> Iterable[Any]:
        batches = list(batches)
        calls.append(len(batches))
        return map(function, batches)

    pair = mutual_pair(cells_of(1500), B, mapper=mapper)
    assert pair.run().shared_cells == len(cells_of(1500) & B)
    assert max(calls, default=0) > 1


def test_blinding_is_deterministic_per_key_and_element() -> None:
    key = random_scalar(DeterministicRng(b"k"))
    assert blind_slots(key, [CENTER]) == [scalar_mult(key, mutual_element(CENTER))]


def test_the_first_error_stays_the_cause_when_the_other_lane_fails_after_it() -> None:
    pair = opened()
    first, *_ = proposer_chunks(pair)
    own = pair.responder.own_chunks()
    next(own)
    with pytest.raises(RemoteProtocolError, match="identity") as caught:
        pair.responder.receive_proposer_chunk(with_element(first, 0, IDENTITY))
    with pytest.raises(LocalProtocolError, match="is error"):
        next(own)
    assert pair.responder.failure is caught.value


def test_a_receipt_naming_an_impossible_resolution_is_refused() -> None:
    receipt = mutual_pair(A, B).run().receipt
    encoded = receipt.encode()
    body = receipt.statement.encode()
    res_at = encoded.index(body) + body.index(bytes([RES]) + (128).to_bytes(4, "big"))
    damaged = encoded[:res_at] + bytes([200]) + encoded[res_at + 1 :]
    with pytest.raises(RemoteProtocolError, match="resolution 200"):
        MutualReceipt.decode(damaged)
