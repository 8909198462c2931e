"""The v1 formats are frozen: today's code makes the same bytes, and reads the old ones.

Two halves per format. Rebuilding from the fixed inputs must give the frozen
bytes exactly (a change to an encoder fails even if its decoder changed too).
Decoding the frozen bytes, re-encoding them and checking their signatures must
work from the file alone, the way a third party verifies an old receipt or an
evidence bundle years later.
"""

from __future__ import annotations

from typing import Any

import pytest
from nacl.signing import VerifyKey

from hexpsi.protocol.audit import Entry, Head, canonical_json, verify_chain
from hexpsi.protocol.check.evidence import (
    CellOpening,
    Evidence,
    verify_cell_opening,
    verify_evidence,
)
from hexpsi.protocol.check.messages import Query, Receipt, Response
from hexpsi.protocol.epoch.descriptor import SignedDescriptor
from hexpsi.protocol.mutual.messages import MutualReceipt, MutualStatement
from hexpsi.protocol.snapshot.gcs import GcsParams, decode_block
from hexpsi.protocol.snapshot.merkle import MerkleBuilder
from tests.protocol import format_vectors

FROZEN = format_vectors.load()


@pytest.fixture(scope="module")
def rebuilt() -> dict[str, Any]:
    return format_vectors.build()


@pytest.mark.parametrize(
    "section", ["descriptor", "check", "evidence", "cell_opening", "mutual", "audit", "gcs"]
)
def test_rebuilding_gives_the_frozen_bytes(rebuilt: dict[str, Any], section: str) -> None:
    assert rebuilt[section] == FROZEN[section]


def _descriptor() -> tuple[SignedDescriptor, VerifyKey]:
    vector = FROZEN["descriptor"]
    key = VerifyKey(bytes.fromhex(vector["responder_verify_key"]))
    signed = SignedDescriptor.verify_without_freshness(
        bytes.fromhex(vector["encoded"]), bytes.fromhex(vector["signature"]), key
    )
    return signed, key


def test_frozen_descriptor_verifies_and_reencodes() -> None:
    signed, _ = _descriptor()
    assert signed.descriptor.encode() == signed.encoded
    assert signed.digest.hex() == FROZEN["descriptor"]["digest"]
    assert signed.descriptor.res == format_vectors.RES
    assert signed.descriptor.res_min == format_vectors.RES_MIN


def test_frozen_query_response_and_receipt_decode_and_verify() -> None:
    _, key = _descriptor()
    vector = FROZEN["check"]
    query = Query.decode(bytes.fromhex(vector["query"]))
    response = Response.decode(bytes.fromhex(vector["response"]))
    receipt = Receipt.decode(bytes.fromhex(vector["receipt"]))
    assert query.encode().hex() == vector["query"]
    assert response.encode().hex() == vector["response"]
    assert receipt == response.receipt
    receipt.verify(key)
    assert receipt.receipt_id == vector["receipt_id"]
    assert receipt.transcript_hash.hex() == vector["transcript_hash"]


def test_frozen_evidence_still_verifies_to_its_verdict() -> None:
    _, key = _descriptor()
    verdict = verify_evidence(
        Evidence.from_json(FROZEN["evidence"]["bundle"].encode()), responder_key=key
    )
    assert verdict.conflict is FROZEN["check"]["conflict"] is True
    assert (
        sorted(f"{t:x}" for t in verdict.conflicting_tokens)
        == (FROZEN["check"]["conflicting_tokens"])
    )
    assert verdict.receipt_id == FROZEN["check"]["receipt_id"]


def test_frozen_cell_opening_still_proves_membership() -> None:
    signed, _ = _descriptor()
    opening = CellOpening.from_json(FROZEN["cell_opening"]["document"].encode())
    assert f"{opening.cell:x}" == FROZEN["cell_opening"]["cell"]
    assert verify_cell_opening(opening, signed) is FROZEN["cell_opening"]["inside"]


def test_frozen_mutual_receipt_verifies_under_both_keys() -> None:
    vector = FROZEN["mutual"]
    receipt = MutualReceipt.decode(bytes.fromhex(vector["receipt"]))
    assert receipt.encode().hex() == vector["receipt"]
    assert MutualStatement.decode(bytes.fromhex(vector["statement"])) == receipt.statement
    assert receipt.statement.encode().hex() == vector["statement"]
    receipt.verify(
        proposer_key=VerifyKey(bytes.fromhex(vector["proposer_verify_key"])),
        responder_key=VerifyKey(bytes.fromhex(FROZEN["descriptor"]["responder_verify_key"])),
    )
    assert receipt.receipt_id == vector["receipt_id"]
    assert receipt.statement.shared_cells == vector["shared_cells"]


def _frozen_entry(row: dict[str, Any]) -> Entry:
    return Entry(
        seq=row["seq"],
        time=row["time"],
        kind=row["kind"],
        peer=row["peer"],
        details=canonical_json(row["details"]),
        prev_hash=bytes.fromhex(row["prev_hash"]),
        hash=bytes.fromhex(row["hash"]),
        signature=bytes.fromhex(row["signature"]),
    )


def test_frozen_audit_chain_verifies_with_its_head() -> None:
    vector = FROZEN["audit"]
    head = vector["head"]
    verify_chain(
        [_frozen_entry(row) for row in vector["entries"]],
        VerifyKey(bytes.fromhex(vector["verify_key"])),
        head=Head(head["seq"], bytes.fromhex(head["hash"]), bytes.fromhex(head["signature"])),
    )


def test_frozen_gcs_blocks_decode_to_their_values() -> None:
    vector = FROZEN["gcs"]
    params = GcsParams.decode(bytes.fromhex(vector["params"]))
    assert params.encode().hex() == vector["params"]
    values: list[int] = []
    builder = MerkleBuilder()
    for index, block in enumerate(vector["blocks"]):
        values.extend(decode_block(bytes.fromhex(block), params, index))
        builder.add_block(bytes.fromhex(block))
    assert [f"{v:x}" for v in values] == vector["values"]
    assert builder.root().hex() == vector["tree_root"]
