"""A v2 cell opening stands on its own: the responder's key is all a verifier needs."""

from __future__ import annotations

import json
from typing import Any

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.check.cell_opening import (
    StandaloneCellOpening,
    open_committed_cell,
    verify_standalone_opening,
)
from hexpsi.protocol.check.evidence import CellOpening
from hexpsi.protocol.errors import InputError, VerificationError
from tests.protocol.helpers import DeterministicRng, ResponderNode, make_responder, signing_key

RES, RES_MIN = 9, 6
ORIGIN = h3.latlng_to_cell(33.5, 38.6, RES)
PROTECTED = frozenset(h3.grid_disk(ORIGIN, 1))
ELSEWHERE = h3.latlng_to_cell(34.5, 39.6, RES)


@pytest.fixture(scope="module")
def node() -> ResponderNode:
    return make_responder(PROTECTED, res=RES, res_min=RES_MIN)


def opened(node: ResponderNode, cell: int) -> StandaloneCellOpening:
    return open_committed_cell(
        descriptor=node.descriptor,
        keys=node.epoch.keys,
        snapshot=node.reader(),
        cell=cell,
        rng=DeterministicRng(b"opening"),
    )


def round_trip(document: StandaloneCellOpening) -> StandaloneCellOpening:
    return StandaloneCellOpening.from_json(document.to_json())


def test_protected_cells_and_their_ancestors_open_as_inside(node: ResponderNode) -> None:
    for res in range(RES_MIN, RES + 1):
        cell = h3.cell_to_parent(ORIGIN, res)
        verdict = verify_standalone_opening(round_trip(opened(node, cell)), node.verify_key)
        assert verdict.inside is True
        assert verdict.cell == cell
        assert verdict.responder == "coalition"
        assert verdict.epoch_id == node.descriptor.descriptor.epoch_id
        assert verdict.epoch_sequence == node.descriptor.descriptor.sequence


def test_other_cells_open_as_outside(node: ResponderNode) -> None:
    for cell in (ELSEWHERE, h3.cell_to_parent(ELSEWHERE, RES_MIN), h3.grid_ring(ORIGIN, 2)[0]):
        verdict = verify_standalone_opening(round_trip(opened(node, cell)), node.verify_key)
        assert verdict.inside is False


def test_the_document_carries_the_signed_descriptor(node: ResponderNode) -> None:
    document = json.loads(opened(node, ORIGIN).to_json())
    assert document["format"] == "hexpsi/v2/cell-opening"
    assert document["descriptor"] == node.descriptor.encoded.hex()
    assert document["descriptor_signature"] == node.descriptor.signature.hex()
    assert document["cell"] == f"{ORIGIN:x}"


def test_a_cell_outside_the_epochs_resolutions_cannot_be_opened(node: ResponderNode) -> None:
    for cell in (h3.cell_to_parent(ORIGIN, RES_MIN - 1), h3.cell_to_center_child(ORIGIN, 10)):
        with pytest.raises(InputError, match="resolutions 6 to 9"):
            opened(node, cell)
    with pytest.raises(InputError, match="not a valid H3 cell"):
        opened(node, 0x1234)


def test_another_responders_key_verifies_nothing(node: ResponderNode) -> None:
    with pytest.raises(VerificationError, match="signature"):
        verify_standalone_opening(opened(node, ORIGIN), signing_key("somebody").verify_key)


def edited(node: ResponderNode, **changes: Any) -> StandaloneCellOpening:
    document = json.loads(opened(node, ORIGIN).to_json())
    document.update(changes)
    return StandaloneCellOpening.from_json(json.dumps(document).encode())


def flip(text: str) -> str:
    data = bytearray(bytes.fromhex(text))
    data[len(data) // 2] ^= 1
    return data.hex()


def test_a_tampered_document_verifies_nothing(node: ResponderNode) -> None:
    honest = json.loads(opened(node, ORIGIN).to_json())
    other_epoch = make_responder(PROTECTED, res=RES, res_min=RES_MIN, seed=b"other epoch")
    for changes in (
        {"descriptor": flip(honest["descriptor"])},
        {"descriptor_signature": flip(honest["descriptor_signature"])},
        {"proof": flip(honest["proof"])},
        {"evaluated": flip(honest["evaluated"])},
        {"cell": f"{h3.grid_ring(ORIGIN, 1)[0]:x}"},
        {
            "descriptor": other_epoch.descriptor.encoded.hex(),
            "descriptor_signature": other_epoch.descriptor.signature.hex(),
        },
    ):
        with pytest.raises(VerificationError):
            verify_standalone_opening(edited(node, **changes), node.verify_key)


def test_a_v1_opening_is_not_a_v2_document(node: ResponderNode) -> None:
    v1 = opened(node, ORIGIN).opening
    with pytest.raises(InputError, match="not a hexpsi/v2/cell-opening document"):
        StandaloneCellOpening.from_json(v1.to_json())
    assert CellOpening.from_json(v1.to_json()) == v1


@pytest.mark.parametrize(
    "changes",
    [{"descriptor": "zz"}, {"descriptor_signature": 5}, {"cell": 7}, {"opening": None}],
)
def test_malformed_documents_are_input_errors(node: ResponderNode, changes: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        edited(node, **changes)
