"""Rotation formats are frozen too: statements a peer keeps, one audit chain through them.

As for v1 and v2: rebuilding from the fixed inputs must give the frozen bytes
exactly, and the frozen statements and audit entries must decode, re-encode and
verify from the file alone, the way a peer reading its kept statements, or a
third party reading an exported audit log, does years later.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from nacl.signing import VerifyKey

from hexpsi.protocol.audit import ChainBroken, Entry, Head, canonical_json, verify_chain
from hexpsi.protocol.rotation import Pinned, SignedRotation, hand_over
from hexpsi.server.node import tls
from tests.protocol import format_vectors

FROZEN = format_vectors.load_rotation()


@pytest.fixture(scope="module")
def rebuilt() -> dict[str, Any]:
    return format_vectors.build_rotation()


@pytest.mark.parametrize("section", ["signing_keys", "certificates", "statements", "audit"])
def test_rebuilding_gives_the_frozen_bytes(rebuilt: dict[str, Any], section: str) -> None:
    assert rebuilt[section] == FROZEN[section]


def _keys() -> list[VerifyKey]:
    return [VerifyKey(bytes.fromhex(key)) for key in FROZEN["signing_keys"]]


def _statements() -> list[SignedRotation]:
    return [
        SignedRotation.from_signed_message(bytes.fromhex(vector["signed_message"]))
        for vector in FROZEN["statements"]
    ]


@pytest.mark.parametrize("index", [0, 1])
def test_frozen_statements_read_the_same_in_every_form(index: int) -> None:
    vector = FROZEN["statements"][index]
    from_wire = _statements()[index]
    from_parts = SignedRotation.from_parts(
        bytes.fromhex(vector["encoded"]),
        bytes.fromhex(vector["signature"]),
        bytes.fromhex(vector["new_key_signature"]),
    )
    from_document = SignedRotation.from_json(vector["document"].encode())
    assert from_wire == from_parts == from_document
    assert from_document.to_json().decode() == vector["document"]
    assert from_wire.rotation.sequence == index + 1


def test_frozen_statements_hand_the_first_identity_over_to_the_last() -> None:
    keys = _keys()
    certificates = [bytes.fromhex(c) for c in FROZEN["certificates"]]
    first = Pinned(
        FROZEN["node"], bytes(keys[0]), hashlib.sha256(certificates[0]).digest(), rotations=()
    )
    state = hand_over(first, _statements())
    assert state.signing_key == bytes(keys[2])
    assert state.certificate_sha256 == hashlib.sha256(certificates[1]).digest()
    for der in certificates:
        tls.check_peer_certificate(tls.load_certificate(der), FROZEN["node"], where="vector")


def _frozen_chain() -> tuple[list[Entry], Head]:
    vector = FROZEN["audit"]
    entries = [
        Entry(
            seq=row["seq"],
            time=row["time"],
            kind=row["kind"],
            peer=row["peer"],
            details=canonical_json(row["details"]),
            prev_hash=bytes.fromhex(row["prev_hash"]),
            hash=bytes.fromhex(row["hash"]),
            signature=bytes.fromhex(row["signature"]),
        )
        for row in vector["entries"]
    ]
    head = vector["head"]
    return entries, Head(head["seq"], bytes.fromhex(head["hash"]), bytes.fromhex(head["signature"]))


def test_the_frozen_chain_verifies_through_both_rotations_from_the_first_key() -> None:
    entries, head = _frozen_chain()
    keys = _keys()
    assert verify_chain(entries, keys[0], head=head) == keys[2]
    assert verify_chain(entries, keys, head=head) == keys[2]


def test_the_frozen_chain_does_not_verify_from_a_later_key_or_through_other_keys() -> None:
    entries, head = _frozen_chain()
    keys = _keys()
    with pytest.raises(ChainBroken) as caught:
        verify_chain(entries, keys[1], head=head)
    assert caught.value.seq == 1
    with pytest.raises(ChainBroken, match="not to the known signing key 2") as caught:
        verify_chain(entries, [keys[0], keys[2]], head=head)
    assert caught.value.seq == 2
    with pytest.raises(ChainBroken, match="ends before it hands over"):
        verify_chain(entries[:3], [*keys])
