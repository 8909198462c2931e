"""Evidence: a third party replays a check with only the responder's key; any edit is caught."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.check.evidence import (
    CellOpening,
    Evidence,
    EvidencePosition,
    export_evidence,
    open_cell,
    verify_cell_opening,
    verify_evidence,
)
from hexpsi.protocol.check.messages import ElementGroup, Query, Response
from hexpsi.protocol.check.session import MODE, State
from hexpsi.protocol.crypto.group import ORDER, hash_to_group, scalar_mult_base
from hexpsi.protocol.crypto.oprf import blind, finalize
from hexpsi.protocol.errors import InputError, LocalProtocolError, VerificationError
from hexpsi.protocol.geo.tokens import query_tokens, token_bytes
from hexpsi.protocol.snapshot.build import truncate_output
from hexpsi.protocol.snapshot.gcs import Opening
from tests.protocol.helpers import (
    NOW,
    PROPOSER,
    CheckPair,
    DeterministicRng,
    ResponderNode,
    make_responder,
    signing_key,
)

RES, RES_MIN = 9, 6
ORIGIN = h3.latlng_to_cell(33.5, 38.6, RES)
PROTECTED = frozenset(h3.grid_disk(ORIGIN, 3))
STRIKE = frozenset(h3.grid_disk(h3.cell_to_center_child(h3.cell_to_parent(ORIGIN, 7), 9), 2))
CLEAR = frozenset(h3.grid_disk(h3.latlng_to_cell(34.5, 39.6, RES), 2))


@pytest.fixture(scope="module")
def node() -> ResponderNode:
    return make_responder(PROTECTED, res=RES, res_min=RES_MIN)


@pytest.fixture(scope="module")
def finished(node: ResponderNode) -> CheckPair:
    check = CheckPair(node, STRIKE)
    check.run()
    return check


@pytest.fixture(scope="module")
def bundle(finished: CheckPair) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(export_evidence(finished.proposer).to_json())
    return parsed


def verify_json(document: dict[str, Any], node: ResponderNode) -> Any:
    return verify_evidence(Evidence.from_json(json.dumps(document).encode()), node.verify_key)


def test_evidence_gives_the_same_answer_as_the_check(
    node: ResponderNode, finished: CheckPair
) -> None:
    result = finished.proposer.result
    assert result is not None
    assert result.conflict
    evidence = export_evidence(finished.proposer)
    restored = Evidence.from_json(evidence.to_json())
    assert restored == evidence
    verdict = verify_evidence(restored, node.verify_key)
    assert verdict.conflict == result.conflict
    assert verdict.conflicting_tokens == result.conflicting_tokens
    tokens = query_tokens(STRIKE, res=RES, res_min=RES_MIN)
    assert verdict.tokens == {t for group in tokens.values() for t in group}
    assert verdict.responder == "coalition"
    assert verdict.proposer == PROPOSER
    assert verdict.epoch_id == node.descriptor.descriptor.epoch_id
    assert verdict.checked_at == result.receipt.issued_at
    assert verdict.receipt_id == result.receipt.receipt_id


def test_clear_evidence_says_clear(node: ResponderNode) -> None:
    check = CheckPair(node, CLEAR)
    result = check.run()
    assert not result.conflict
    verdict = verify_evidence(
        Evidence.from_json(export_evidence(check.proposer).to_json()), node.verify_key
    )
    assert not verdict.conflict
    assert verdict.conflicting_tokens == frozenset()
    assert len(verdict.tokens) == result.tokens_sent


def test_evidence_needs_the_responders_key(bundle: dict[str, Any], node: ResponderNode) -> None:
    evidence = Evidence.from_json(json.dumps(bundle).encode())
    with pytest.raises(VerificationError):
        verify_evidence(evidence, signing_key("somebody").verify_key)


def test_evidence_exists_only_for_a_finished_check(node: ResponderNode) -> None:
    check = CheckPair(node, STRIKE)
    with pytest.raises(LocalProtocolError):
        export_evidence(check.proposer)
    check.query()
    with pytest.raises(LocalProtocolError):
        export_evidence(check.proposer)


def test_omitted_tokens_are_simply_not_vouched_for(
    bundle: dict[str, Any], node: ResponderNode, finished: CheckPair
) -> None:
    """A v1 bundle may show only part of its zone; its verdict names exactly that part.

    This is why v1 evidence proves no zone: ``test_zone_evidence.py`` shows the zone
    verifier refusing the same cut."""
    result = finished.proposer.result
    assert result is not None
    kept = [p for p in bundle["positions"] if int(p["cell"], 16) not in result.conflicting_tokens]
    verdict = verify_json({**bundle, "positions": kept}, node)
    assert not verdict.conflict
    assert verdict.tokens == {int(p["cell"], 16) for p in kept}
    assert verdict.tokens.isdisjoint(result.conflicting_tokens)


# --- tampering ----------------------------------------------------------------------------


def flip_hex(text: str, byte: int, mask: int = 0x01) -> str:
    data = bytearray(bytes.fromhex(text))
    data[byte] ^= mask
    return data.hex()


def edit_position(bundle: dict[str, Any], at: int, **changes: Any) -> dict[str, Any]:
    positions = [dict(p) for p in bundle["positions"]]
    positions[at].update(changes)
    return {**bundle, "positions": positions}


def hit_index(bundle: dict[str, Any], finished: CheckPair) -> int:
    result = finished.proposer.result
    assert result is not None
    return next(
        i
        for i, p in enumerate(bundle["positions"])
        if int(p["cell"], 16) in result.conflicting_tokens
    )


def other_scalar(seed: int) -> str:
    return (seed).to_bytes(32, "little").hex()


BLIND_EDITS: dict[str, Callable[[str], str]] = {
    "another blind": lambda _: other_scalar(12345),
    "flipped bit": lambda blind_hex: flip_hex(blind_hex, 0),
    "zero": lambda _: bytes(32).hex(),
    "the group order": lambda _: ORDER.to_bytes(32, "little").hex(),
    "all ones": lambda _: (b"\xff" * 32).hex(),
    "short": lambda blind_hex: blind_hex[:-2],
}


@pytest.mark.parametrize("edit", BLIND_EDITS.values(), ids=BLIND_EDITS.keys())
def test_a_tampered_blind_is_caught(
    bundle: dict[str, Any], node: ResponderNode, edit: Callable[[str], str]
) -> None:
    tampered = edit_position(bundle, 0, blind=edit(bundle["positions"][0]["blind"]))
    with pytest.raises(VerificationError):
        verify_json(tampered, node)


def cell_edits(cell: int) -> dict[str, int]:
    parent = h3.cell_to_parent(cell, h3.get_resolution(cell) - 1)
    sibling = next(c for c in h3.cell_to_children(parent) if c != cell)
    return {
        "sibling": sibling,
        "parent": parent,
        "child": h3.cell_to_center_child(cell, h3.get_resolution(cell) + 1),
        "not a cell": 0x1234,
        "zero": 0,
        "too large": 1 << 70,
    }


@pytest.mark.parametrize("which", ["sibling", "parent", "child", "not a cell", "zero", "too large"])
def test_a_tampered_token_cell_is_caught(
    bundle: dict[str, Any], node: ResponderNode, which: str
) -> None:
    cell = int(bundle["positions"][0]["cell"], 16)
    tampered = edit_position(bundle, 0, cell=f"{cell_edits(cell)[which]:x}")
    with pytest.raises(VerificationError):
        verify_json(tampered, node)


def test_a_negative_cell_is_caught(bundle: dict[str, Any], node: ResponderNode) -> None:
    with pytest.raises(VerificationError):
        verify_json(edit_position(bundle, 0, cell="-1"), node)


def test_a_moved_position_is_caught(bundle: dict[str, Any], node: ResponderNode) -> None:
    first = bundle["positions"][0]
    query = Query.decode(bytes.fromhex(bundle["query"]))
    size = query.group_sizes()[first["resolution"]]
    others = [r for r in query.group_sizes() if r != first["resolution"]]
    for changes in (
        {"index": (first["index"] + 1) % size},
        {"index": size},
        {"index": -1},
        {"resolution": others[0]},
        {"resolution": RES + 1},
    ):
        with pytest.raises(VerificationError):
            verify_json(edit_position(bundle, 0, **changes), node)
    duplicated = {**bundle, "positions": [first, *bundle["positions"]]}
    with pytest.raises(VerificationError):
        verify_json(duplicated, node)


@pytest.mark.parametrize("part", ["response", "query", "descriptor", "descriptor_signature"])
def test_flipping_bytes_of_any_signed_part_is_caught(
    bundle: dict[str, Any], node: ResponderNode, part: str
) -> None:
    size = len(bytes.fromhex(bundle[part]))
    for byte in sorted({0, 1, size // 7, size // 3, size // 2, size - 70, size - 33, size - 1}):
        for mask in (0x01, 0x80):
            with pytest.raises(VerificationError):
                verify_json({**bundle, part: flip_hex(bundle[part], byte, mask)}, node)


def test_a_truncated_or_extended_part_is_caught(
    bundle: dict[str, Any], node: ResponderNode
) -> None:
    for part in ("response", "query", "descriptor"):
        for changed in (bundle[part][:-2], bundle[part] + "00", ""):
            with pytest.raises(VerificationError):
                verify_json({**bundle, part: changed}, node)


def test_a_receipt_changed_without_resigning_is_caught(
    bundle: dict[str, Any], node: ResponderNode
) -> None:
    response = Response.decode(bytes.fromhex(bundle["response"]))
    for changes in ({"area_km2": 0.001}, {"issued_at": NOW + 1}, {"proposer": "ally"}):
        receipt = dataclasses.replace(response.receipt, **changes)
        edited = dataclasses.replace(response, receipt=receipt).encode().hex()
        with pytest.raises(VerificationError):
            verify_json({**bundle, "response": edited}, node)


def test_another_proposer_cannot_claim_the_evidence(
    bundle: dict[str, Any], node: ResponderNode
) -> None:
    with pytest.raises(VerificationError):
        verify_json({**bundle, "proposer": "ally"}, node)


def test_a_tampered_opening_is_caught(
    bundle: dict[str, Any], node: ResponderNode, finished: CheckPair
) -> None:
    hit = hit_index(bundle, finished)
    opening = bundle["positions"][hit]["opening"]
    size = len(bytes.fromhex(opening))
    for byte in (11, size // 2, size - 1):
        with pytest.raises(VerificationError):
            verify_json(edit_position(bundle, hit, opening=flip_hex(opening, byte)), node)
    empty = Opening(0, b"", ()).encode().hex()
    with pytest.raises(VerificationError):
        verify_json(edit_position(bundle, hit, opening=empty), node)


def test_an_opening_for_another_value_proves_nothing(
    bundle: dict[str, Any], node: ResponderNode, finished: CheckPair
) -> None:
    """Swapping in another position's opening either fails or proves the same thing."""
    hit = hit_index(bundle, finished)
    reader = node.reader()
    own = Opening.decode(bytes.fromhex(bundle["positions"][hit]["opening"]))
    far_block = next(
        p["opening"]
        for p in bundle["positions"]
        if Opening.decode(bytes.fromhex(p["opening"])).index != own.index
    )
    with pytest.raises(VerificationError):
        verify_json(edit_position(bundle, hit, opening=far_block), node)
    # The exported opening is the reader's own proof for the hit's value.
    member = finished.proposer.values[hit]
    assert reader.contains(member)
    assert reader.open(member).encode().hex() == bundle["positions"][hit]["opening"]


# --- malformed bundles ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'"evidence"',
        b"{}",
        b'{"format": "hexpsi/v1/cell-opening"}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=[
        "empty",
        "not json",
        "not utf-8",
        "a list",
        "a string",
        "no fields",
        "other format",
        "deep",
    ],
)
def test_malformed_json_is_an_input_error(text: bytes) -> None:
    with pytest.raises(InputError):
        Evidence.from_json(text)


@pytest.mark.parametrize(
    "changes",
    [
        {"descriptor": "zz"},
        {"query": 5},
        {"positions": "all"},
        {"positions": [{"cell": "8928"}]},
        {"positions": [[]]},
        {"proposer": None},
        {"proposer": ["russia"]},
    ],
)
def test_malformed_fields_are_input_errors(bundle: dict[str, Any], changes: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        Evidence.from_json(json.dumps({**bundle, **changes}).encode())


@pytest.mark.parametrize(
    "changes",
    [
        {"resolution": "9"},
        {"resolution": 9.5},
        {"index": True},
        {"blind": 7},
        {"cell": 123},
    ],
)
def test_malformed_position_fields_are_input_errors(
    bundle: dict[str, Any], changes: dict[str, Any]
) -> None:
    with pytest.raises(InputError):
        Evidence.from_json(json.dumps(edit_position(bundle, 0, **changes)).encode())


# --- a proposer building an alibi ----------------------------------------------------------


def alibi(node: ResponderNode, token: int, declared: int) -> Evidence:
    """A proposer that blinds ``token`` into the group of another resolution, so the
    responder evaluates it under the wrong key and it can never hit, then exports that."""
    rng = DeterministicRng(b"alibi")
    (blind_scalar,), (element,) = blind([token_bytes(token)], MODE, rng)
    dummies = tuple(hash_to_group(rng(32), b"dummy") for _ in range(7))
    query = Query(rng(16), node.descriptor.digest, (ElementGroup(declared, (element, *dummies)),))
    responder = node.responder_check(seed=b"honest responder")
    responder.receive(query, now=NOW)
    response = responder.respond(now=NOW)
    (output,) = finalize(
        [token_bytes(token)], [blind_scalar], [response.groups[0].elements[0]], MODE
    )
    value = truncate_output(output, node.params.bits)
    reader = node.reader()
    assert not reader.contains(value)
    return Evidence(
        descriptor=node.descriptor.encoded,
        descriptor_signature=node.descriptor.signature,
        proposer=PROPOSER,
        query=query.encode(),
        response=response.encode(),
        positions=(EvidencePosition(token, declared, 0, blind_scalar, reader.open(value)),),
    )


@pytest.mark.parametrize(
    ("token", "declared"),
    [(ORIGIN, 8), (ORIGIN, RES_MIN), (h3.cell_to_parent(ORIGIN, 7), 9)],
    ids=["fine as coarse", "fine as coarsest", "coarse as fine"],
)
def test_a_token_declared_at_another_resolution_is_no_evidence(
    node: ResponderNode, token: int, declared: int
) -> None:
    """Otherwise a proposer could show "checked and clear" for a zone that conflicts."""
    with pytest.raises(VerificationError):
        verify_evidence(alibi(node, token, declared), node.verify_key)


# --- cell openings -------------------------------------------------------------------------


def opening_of(node: ResponderNode, cell: int, *, key_resolution: int | None = None) -> CellOpening:
    resolution = key_resolution if key_resolution is not None else h3.get_resolution(cell)
    return open_cell(
        cell=cell,
        key=node.epoch.keys[resolution],
        snapshot=node.reader(),
        bits=node.params.bits,
        rng=DeterministicRng(b"opening"),
    )


def test_a_protected_cell_and_its_ancestors_open_as_present(node: ResponderNode) -> None:
    for resolution in range(RES_MIN, RES + 1):
        cell = h3.cell_to_parent(ORIGIN, resolution)
        opening = CellOpening.from_json(opening_of(node, cell).to_json())
        assert verify_cell_opening(opening, node.descriptor) is True


def test_a_cell_that_is_not_protected_opens_as_absent(node: ResponderNode) -> None:
    for cell in (
        h3.latlng_to_cell(34.5, 39.6, RES),
        next(iter(set(h3.grid_ring(ORIGIN, 4)))),
        h3.latlng_to_cell(34.5, 39.6, RES_MIN),
    ):
        opening = CellOpening.from_json(opening_of(node, cell).to_json())
        assert verify_cell_opening(opening, node.descriptor) is False


def test_cell_opening_json_round_trip(node: ResponderNode) -> None:
    opening = opening_of(node, ORIGIN)
    assert CellOpening.from_json(opening.to_json()) == opening


def tampered_openings(node: ResponderNode) -> dict[str, CellOpening]:
    honest = opening_of(node, ORIGIN)
    flipped = bytearray(honest.opening.block)
    flipped[len(flipped) // 2] ^= 0x01
    sibling = next(c for c in h3.grid_ring(ORIGIN, 1))
    return {
        "block byte": dataclasses.replace(
            honest, opening=dataclasses.replace(honest.opening, block=bytes(flipped))
        ),
        "path": dataclasses.replace(
            honest, opening=dataclasses.replace(honest.opening, path=honest.opening.path[1:])
        ),
        "other block": dataclasses.replace(
            honest,
            opening=dataclasses.replace(
                honest.opening, index=(honest.opening.index + 1) % node.params.block_count
            ),
        ),
        "proof byte": dataclasses.replace(
            honest, proof=bytes([honest.proof[0] ^ 1]) + honest.proof[1:]
        ),
        "zero proof": dataclasses.replace(honest, proof=bytes(64)),
        "short proof": dataclasses.replace(honest, proof=honest.proof[:-1]),
        "other evaluation": dataclasses.replace(
            honest, evaluated=scalar_mult_base(bytes([5]) + bytes(31))
        ),
        "identity evaluation": dataclasses.replace(honest, evaluated=bytes(32)),
        "garbage evaluation": dataclasses.replace(honest, evaluated=b"\xff" * 32),
        "another cell": dataclasses.replace(honest, cell=sibling),
        "a coarser cell": dataclasses.replace(honest, cell=h3.cell_to_parent(ORIGIN, 8)),
        "outside the epoch": dataclasses.replace(honest, cell=h3.cell_to_parent(ORIGIN, 4)),
        "not a cell": dataclasses.replace(honest, cell=0x1234),
        "too large": dataclasses.replace(honest, cell=1 << 70),
        "negative": dataclasses.replace(honest, cell=-5),
        "other key": opening_of(node, ORIGIN, key_resolution=8),
    }


@pytest.mark.parametrize(
    "which",
    [
        "block byte",
        "path",
        "other block",
        "proof byte",
        "zero proof",
        "short proof",
        "other evaluation",
        "identity evaluation",
        "garbage evaluation",
        "another cell",
        "a coarser cell",
        "outside the epoch",
        "not a cell",
        "too large",
        "negative",
        "other key",
    ],
)
def test_a_tampered_cell_opening_raises(node: ResponderNode, which: str) -> None:
    with pytest.raises(VerificationError):
        verify_cell_opening(tampered_openings(node)[which], node.descriptor)


def test_an_opening_of_another_epoch_raises(node: ResponderNode) -> None:
    other = make_responder(PROTECTED, res=RES, res_min=RES_MIN, seed=b"other epoch")
    with pytest.raises(VerificationError):
        verify_cell_opening(opening_of(other, ORIGIN), node.descriptor)


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"{}",
        b"[1]",
        b'{"format": "hexpsi/v1/evidence"}',
        b'{"format": "hexpsi/v1/cell-opening", "cell": 5}',
    ],
)
def test_malformed_cell_opening_json_is_an_input_error(text: bytes) -> None:
    with pytest.raises(InputError):
        CellOpening.from_json(text)


def test_the_finished_check_is_untouched_by_export(finished: CheckPair) -> None:
    before = finished.proposer.result
    export_evidence(finished.proposer)
    assert finished.proposer.state is State.DONE
    assert finished.proposer.result is before
