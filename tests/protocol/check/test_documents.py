"""Documents are told apart by their ``format``; the v1 kinds cannot stand on their own."""

from __future__ import annotations

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.check.cell_opening import (
    OpeningVerdict,
    StandaloneCellOpening,
    open_committed_cell,
)
from hexpsi.protocol.check.documents import document_format, read_document, verify_document
from hexpsi.protocol.check.evidence import CellOpening, Evidence, export_evidence
from hexpsi.protocol.check.zone_evidence import ZoneEvidence, ZoneVerdict, export_zone_evidence
from hexpsi.protocol.errors import InputError, VerificationError
from hexpsi.protocol.geo.shapes import Circle, Feature
from hexpsi.protocol.geo.zone import StrikeZone
from tests.protocol.helpers import NOW, CheckPair, DeterministicRng, ResponderNode, make_responder

RES, RES_MIN = 9, 7
ORIGIN = h3.latlng_to_cell(33.5, 38.6, RES)
ZONE = StrikeZone((Feature(0, (Circle((33.5, 38.6), 300.0),)),))


@pytest.fixture(scope="module")
def node() -> ResponderNode:
    return make_responder(h3.grid_disk(ORIGIN, 1), res=RES, res_min=RES_MIN)


@pytest.fixture(scope="module")
def documents(node: ResponderNode) -> dict[str, bytes]:
    pair = CheckPair(node, frozenset(ZONE.cover(RES)))
    pair.run()
    standalone = open_committed_cell(
        descriptor=node.descriptor,
        keys=node.epoch.keys,
        snapshot=node.reader(),
        cell=ORIGIN,
        rng=DeterministicRng(b"documents"),
    )
    return {
        "v2 evidence": export_zone_evidence(pair.proposer, zone=ZONE, received_at=NOW).to_json(),
        "v1 evidence": export_evidence(pair.proposer).to_json(),
        "v2 opening": standalone.to_json(),
        "v1 opening": standalone.opening.to_json(),
    }


KINDS = {
    "v2 evidence": ZoneEvidence,
    "v1 evidence": Evidence,
    "v2 opening": StandaloneCellOpening,
    "v1 opening": CellOpening,
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_document_is_read_as_what_its_format_says(
    documents: dict[str, bytes], kind: str
) -> None:
    document = read_document(documents[kind])
    assert type(document) is KINDS[kind]
    assert document.to_json() == documents[kind]


def test_v2_documents_verify_with_the_responders_key(
    documents: dict[str, bytes], node: ResponderNode
) -> None:
    evidence = verify_document(read_document(documents["v2 evidence"]), node.verify_key)
    assert isinstance(evidence, ZoneVerdict)
    assert evidence.conflict
    opening = verify_document(read_document(documents["v2 opening"]), node.verify_key)
    assert isinstance(opening, OpeningVerdict)
    assert opening.inside


def test_v1_evidence_is_refused_because_it_proves_no_zone(
    documents: dict[str, bytes], node: ResponderNode
) -> None:
    with pytest.raises(VerificationError, match="carries no strike zone"):
        verify_document(read_document(documents["v1 evidence"]), node.verify_key)


def test_a_v1_opening_is_refused_because_it_carries_no_descriptor(
    documents: dict[str, bytes], node: ResponderNode
) -> None:
    with pytest.raises(InputError, match="carries no epoch descriptor"):
        verify_document(read_document(documents["v1 opening"]), node.verify_key)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"{}",
        b'{"format": "hexpsi/v3/evidence"}',
        b'{"format": 2}',
        b'{"format": ["hexpsi/v2/evidence"]}',
        b'{"format": {}}',
        b"[" * 100_000,
    ],
)
def test_anything_else_is_an_input_error(data: bytes) -> None:
    with pytest.raises(InputError, match="not a hexpsi document"):
        document_format(data)
    with pytest.raises(InputError):
        read_document(data)
