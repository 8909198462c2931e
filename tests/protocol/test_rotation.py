"""Rotation statements: one encoding, two signatures, and a peer that follows only its own keys."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from nacl.signing import SigningKey

from hexpsi.protocol.errors import (
    InputError,
    LocalProtocolError,
    RemoteProtocolError,
    VerificationError,
)
from hexpsi.protocol.rotation import (
    MAX_ROTATIONS,
    ROTATION_FORMAT,
    Pinned,
    Rotation,
    SignedRotation,
    check_chain,
    follow,
    hand_over,
)
from tests.protocol.helpers import NOW, signing_key

NODE = "coalition"
KEYS = [signing_key(f"{NODE} {n}") for n in range(4)]
CERTIFICATES = [f"certificate {n} of {NODE}".encode() for n in range(4)]


def fingerprint(certificate: bytes) -> bytes:
    return hashlib.sha256(certificate).digest()


def statement(
    sequence: int,
    old: tuple[SigningKey, bytes],
    new: tuple[SigningKey, bytes],
    *,
    node: str = NODE,
    signer: SigningKey | None = None,
) -> SignedRotation:
    """Rotation ``sequence`` from ``old`` (key, certificate) to ``new``, signed by the old key
    (or by ``signer`` in its place, as a forger would)."""
    rotation = Rotation(
        node=node,
        sequence=sequence,
        rotated_at=NOW + sequence,
        old_signing_key=bytes(old[0].verify_key),
        new_signing_key=bytes(new[0].verify_key),
        old_certificate_sha256=fingerprint(old[1]),
        new_certificate_sha256=fingerprint(new[1]),
        new_certificate=new[1],
    )
    if signer is None:
        return SignedRotation.sign(rotation, old[0], new[0])
    honest = SignedRotation.sign(rotation, old[0], new[0])
    return dataclasses.replace(honest, signature=signer.sign(honest.encoded).signature)


ONE = statement(1, (KEYS[0], CERTIFICATES[0]), (KEYS[1], CERTIFICATES[1]))
"""Signing key and certificate."""
TWO = statement(2, (KEYS[1], CERTIFICATES[1]), (KEYS[2], CERTIFICATES[1]))
"""Signing key only."""
THREE = statement(3, (KEYS[2], CERTIFICATES[1]), (KEYS[2], CERTIFICATES[2]))
"""Certificate only."""


def pinned_at(key: SigningKey, certificate: bytes, *rotations: SignedRotation) -> Pinned:
    return Pinned(NODE, bytes(key.verify_key), fingerprint(certificate), tuple(rotations))


FIRST = pinned_at(KEYS[0], CERTIFICATES[0])


# ---------------------------------------------------------------- the statement itself


@pytest.mark.parametrize("signed", [ONE, TWO, THREE], ids=["both", "signing", "tls"])
def test_a_statement_round_trips_through_every_form(signed: SignedRotation) -> None:
    assert SignedRotation.from_signed_message(signed.signed_message) == signed
    assert SignedRotation.from_json(signed.to_json()) == signed
    assert Rotation.decode(signed.encoded) == signed.rotation
    document = json.loads(signed.to_json())
    assert document["format"] == ROTATION_FORMAT
    assert document["new_tls_certificate"].startswith("-----BEGIN CERTIFICATE-----")


def test_what_a_rotation_changes_is_named() -> None:
    assert ONE.rotation.what == "signing key and TLS certificate"
    assert TWO.rotation.what == "signing key"
    assert THREE.rotation.what == "TLS certificate"


def test_a_rotation_that_changes_nothing_or_names_a_wrong_fingerprint_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="must change"):
        dataclasses.replace(
            ONE.rotation,
            new_signing_key=ONE.rotation.old_signing_key,
            new_certificate_sha256=ONE.rotation.old_certificate_sha256,
            new_certificate=CERTIFICATES[0],
        )
    with pytest.raises(LocalProtocolError, match="fingerprint"):
        dataclasses.replace(ONE.rotation, new_certificate=b"another certificate")


def test_signing_with_keys_other_than_the_named_ones_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="old signing key"):
        SignedRotation.sign(ONE.rotation, KEYS[3], KEYS[1])
    with pytest.raises(LocalProtocolError, match="new signing key"):
        SignedRotation.sign(ONE.rotation, KEYS[0], KEYS[3])


def test_every_flipped_byte_of_the_wire_form_is_refused() -> None:
    data = ONE.signed_message
    for index in range(0, len(data), 7):
        spoiled = bytearray(data)
        spoiled[index] ^= 0x01
        with pytest.raises(RemoteProtocolError):
            SignedRotation.from_signed_message(bytes(spoiled))


def test_a_statement_signed_by_another_key_is_refused() -> None:
    forged = statement(1, (KEYS[0], CERTIFICATES[0]), (KEYS[3], CERTIFICATES[3]), signer=KEYS[3])
    with pytest.raises(VerificationError, match="not signed by the old signing key it names"):
        SignedRotation.from_signed_message(forged.signed_message)


def test_a_statement_the_new_key_did_not_accept_is_refused() -> None:
    other = KEYS[3].sign(b"hexpsi/v1/rotation-acceptance" + ONE.encoded).signature
    unaccepted = dataclasses.replace(ONE, new_key_signature=other)
    with pytest.raises(VerificationError, match="not accepted by the new signing key"):
        SignedRotation.from_signed_message(unaccepted.signed_message)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("node", "russia", "does not match"),
        ("sequence", 2, "does not match"),
        ("sequence", "1", "does not match"),
        ("rotated_at", "2001-01-01T00:00:00Z", "does not match"),
        ("new_signing_public_key", "00" * 32, "does not match"),
        ("new_tls_certificate", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----", "match"),
        ("format", "hexpsi/v9/rotation", "not a rotation statement"),
        ("statement", "zz", "must be hex"),
        ("signature", "00" * 64, "not signed by the old signing key"),
    ],
)
def test_a_document_whose_readable_parts_disagree_with_the_signed_ones_is_refused(
    key: str, value: object, message: str
) -> None:
    document = {**json.loads(ONE.to_json()), key: value}
    with pytest.raises(InputError, match=message):
        SignedRotation.from_document(document)


def test_a_document_with_a_missing_or_unknown_key_is_refused() -> None:
    document = json.loads(ONE.to_json())
    with pytest.raises(InputError, match="missing 'signature'"):
        SignedRotation.from_document({k: v for k, v in document.items() if k != "signature"})
    with pytest.raises(InputError, match="unknown key 'comment'"):
        SignedRotation.from_document({**document, "comment": "hi"})
    with pytest.raises(InputError, match="not valid JSON"):
        SignedRotation.from_json(b"{not json")
    with pytest.raises(InputError, match="JSON object"):
        SignedRotation.from_json(b"[1, 2]")


def test_hex_is_read_in_either_case() -> None:
    document = json.loads(ONE.to_json())
    upper = {k: v.upper() if k == "new_signing_public_key" else v for k, v in document.items()}
    assert SignedRotation.from_document(upper) == ONE


# ---------------------------------------------------------------- a peer judging statements


def test_a_chain_of_statements_hands_a_pin_over_to_the_last_keys() -> None:
    state = hand_over(FIRST, [THREE, ONE, TWO])
    assert state == pinned_at(KEYS[2], CERTIFICATES[2], ONE, TWO, THREE)
    assert state.applied == 3
    assert state.used_keys == {bytes(KEYS[0].verify_key), bytes(KEYS[1].verify_key)}


def test_a_statement_for_another_node_is_refused() -> None:
    other = statement(1, (KEYS[0], CERTIFICATES[0]), (KEYS[1], CERTIFICATES[1]), node="russia")
    with pytest.raises(VerificationError, match="for node 'russia', not 'coalition'"):
        hand_over(FIRST, [other])


def test_a_statement_from_keys_that_are_not_pinned_is_refused() -> None:
    with pytest.raises(VerificationError, match="not from the one pinned for coalition"):
        hand_over(FIRST, [TWO])
    from_other_certificate = statement(1, (KEYS[0], CERTIFICATES[3]), (KEYS[1], CERTIFICATES[1]))
    with pytest.raises(VerificationError, match="hands over from certificate"):
        hand_over(FIRST, [from_other_certificate])


def test_a_self_signed_statement_by_an_outsider_is_refused() -> None:
    """Consistent in itself, signed by the key it names as old: not the pinned key."""
    outsider = statement(1, (KEYS[3], CERTIFICATES[0]), (KEYS[2], CERTIFICATES[1]))
    with pytest.raises(VerificationError, match="hands over from signing key"):
        hand_over(FIRST, [outsider])


def test_a_replayed_statement_is_refused() -> None:
    state = hand_over(FIRST, [ONE, TWO])
    with pytest.raises(VerificationError, match="already applied: a replayed statement"):
        hand_over(state, [TWO])
    with pytest.raises(VerificationError, match="already applied"):
        hand_over(state, [ONE])


def test_an_older_statement_than_the_newest_applied_is_refused() -> None:
    state = pinned_at(KEYS[2], CERTIFICATES[1], TWO)
    with pytest.raises(VerificationError, match="older than rotation 2 already applied"):
        hand_over(state, [ONE])


def test_a_second_hand_over_for_an_applied_sequence_is_called_what_it_is() -> None:
    state = hand_over(FIRST, [ONE])
    fork = statement(1, (KEYS[0], CERTIFICATES[0]), (KEYS[3], CERTIFICATES[3]))
    with pytest.raises(VerificationError, match="signed two different hand-overs"):
        hand_over(state, [fork])


def test_a_statement_handing_back_to_a_used_key_is_refused() -> None:
    state = hand_over(FIRST, [ONE])
    back = statement(2, (KEYS[1], CERTIFICATES[1]), (KEYS[0], CERTIFICATES[1]))
    with pytest.raises(VerificationError, match="back to a signing key it used before"):
        hand_over(state, [back])
    back_tls = statement(2, (KEYS[1], CERTIFICATES[1]), (KEYS[1], CERTIFICATES[0]))
    with pytest.raises(VerificationError, match="back to a certificate it used before"):
        hand_over(state, [back_tls])


def test_nothing_to_hand_over_is_an_error() -> None:
    with pytest.raises(InputError, match="no rotation statement"):
        hand_over(FIRST, [])


def test_following_passes_over_what_does_not_concern_the_pin() -> None:
    """A peer pinned at rotation 1's keys without its statement, then given all three: the
    first is from before its pin, the second leads on, the third changes the certificate
    it talks over and is not followed automatically."""
    fresh = pinned_at(KEYS[1], CERTIFICATES[1])
    state = follow(fresh, [ONE, TWO], certificate_may_change=False)
    assert state == pinned_at(KEYS[2], CERTIFICATES[1], TWO)
    with pytest.raises(VerificationError, match="changes its TLS certificate"):
        follow(fresh, [ONE, TWO, THREE], certificate_may_change=False)
    assert follow(fresh, [ONE, TWO, THREE], certificate_may_change=True).applied == 3
    assert follow(state, [ONE, TWO], certificate_may_change=False) == state


def test_following_refuses_what_would_be_refused_by_hand() -> None:
    fresh = pinned_at(KEYS[1], CERTIFICATES[1])
    forged = statement(2, (KEYS[1], CERTIFICATES[1]), (KEYS[3], CERTIFICATES[1]), signer=KEYS[3])
    with pytest.raises(VerificationError, match="not signed by the old signing key"):
        follow(fresh, [forged], certificate_may_change=False)
    other = statement(2, (KEYS[1], CERTIFICATES[1]), (KEYS[3], CERTIFICATES[1]), node="russia")
    with pytest.raises(VerificationError, match="for node 'russia'"):
        follow(fresh, [other], certificate_may_change=False)
    with pytest.raises(VerificationError, match="at most"):
        follow(fresh, [TWO] * (MAX_ROTATIONS + 1), certificate_may_change=False)


def test_following_a_fork_of_an_applied_rotation_is_refused() -> None:
    state = hand_over(FIRST, [ONE])
    fork = statement(1, (KEYS[0], CERTIFICATES[0]), (KEYS[3], CERTIFICATES[0]))
    with pytest.raises(VerificationError, match="two different hand-overs"):
        follow(state, [fork], certificate_may_change=False)


def test_a_kept_chain_must_lead_to_the_keys_in_use() -> None:
    check_chain(
        [ONE, TWO, THREE],
        node=NODE,
        signing_key=bytes(KEYS[2].verify_key),
        certificate_sha256=fingerprint(CERTIFICATES[2]),
    )
    with pytest.raises(InputError, match="not the current one"):
        check_chain([ONE, TWO], node=NODE, signing_key=bytes(KEYS[3].verify_key))
    with pytest.raises(InputError, match="does not hand over from the keys rotation 1"):
        check_chain([ONE, THREE], node=NODE)
    with pytest.raises(InputError, match="comes after"):
        check_chain([TWO, ONE], node=NODE)
    with pytest.raises(InputError, match="of 'coalition', not 'russia'"):
        check_chain([ONE], node="russia")
