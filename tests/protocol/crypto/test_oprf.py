"""RFC 9497 OPRF/VOPRF behaviour beyond the vectors: batching, forgeries, bad input."""

from __future__ import annotations

import hashlib
import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest

from hexpsi.protocol.crypto import group, oprf
from hexpsi.protocol.crypto.oprf import KeyPair, Mode
from hexpsi.protocol.errors import (
    InputError,
    LocalProtocolError,
    RemoteProtocolError,
    VerificationError,
)
from hexpsi.protocol.randomness import RandomBytes

Session = tuple[list[bytes], list[bytes], list[bytes], bytes]
INPUTS = [b"hexpsi/v1/cell" + bytes([9]) + n.to_bytes(8, "big") for n in range(6)]


def stream(label: bytes) -> RandomBytes:
    counter = itertools.count()
    return lambda n: hashlib.shake_256(label + next(counter).to_bytes(8, "big")).digest(n)


@pytest.fixture(scope="module")
def key() -> KeyPair:
    return oprf.derive_key_pair(bytes(range(32)), b"test key", Mode.VOPRF)


@pytest.fixture(scope="module")
def other_key() -> KeyPair:
    return oprf.derive_key_pair(bytes(range(32)), b"another key", Mode.VOPRF)


@pytest.fixture(scope="module")
def session(key: KeyPair) -> Session:
    """(blinds, blinded, evaluated, proof) for INPUTS under ``key``."""
    blinds, blinded = oprf.blind(INPUTS, Mode.VOPRF, stream(b"client"))
    evaluated = oprf.blind_evaluate(key, blinded)
    proof = oprf.generate_proof(key, blinded, evaluated, Mode.VOPRF, stream(b"server"))
    return blinds, blinded, evaluated, proof


# --- the protocol works ----------------------------------------------------------


@pytest.mark.parametrize("mode", list(Mode))
def test_blind_evaluate_finalize_equals_direct_evaluate(mode: Mode) -> None:
    key = oprf.derive_key_pair(bytes(32), b"info", mode)
    blinds, blinded = oprf.blind(INPUTS, mode, stream(b"round trip"))
    outputs = oprf.finalize(INPUTS, blinds, oprf.blind_evaluate(key, blinded), mode)
    assert outputs == oprf.evaluate(key.secret, INPUTS, mode)
    assert all(len(output) == oprf.OUTPUT_SIZE for output in outputs)
    assert len(set(outputs)) == len(INPUTS)


def test_honest_proof_verifies(key: KeyPair, session: Session) -> None:
    _, blinded, evaluated, proof = session
    oprf.verify_proof(key.public, blinded, evaluated, proof, Mode.VOPRF)


def test_batch_of_one_matches_its_place_in_a_batch(key: KeyPair, session: Session) -> None:
    blinds, blinded, evaluated, _ = session
    single = oprf.finalize(
        INPUTS[3:4], blinds[3:4], oprf.blind_evaluate(key, blinded[3:4]), Mode.VOPRF
    )
    assert single == oprf.finalize(INPUTS, blinds, evaluated, Mode.VOPRF)[3:4]
    proof = oprf.generate_proof(key, blinded[3:4], evaluated[3:4], Mode.VOPRF, stream(b"one"))
    oprf.verify_proof(key.public, blinded[3:4], evaluated[3:4], proof, Mode.VOPRF)


def test_blinding_hides_the_input_and_depends_on_the_blind() -> None:
    _, first = oprf.blind(INPUTS[:1] * 2, Mode.VOPRF, stream(b"a"))
    assert first[0] != first[1]
    assert first[0] != group.hash_to_group(
        INPUTS[0], b"HashToGroup-" + oprf.context_string(Mode.VOPRF)
    )


def test_modes_are_domain_separated() -> None:
    assert oprf.context_string(Mode.OPRF) == b"OPRFV1-\x00-ristretto255-SHA512"
    assert oprf.context_string(Mode.VOPRF) == b"OPRFV1-\x01-ristretto255-SHA512"
    oprf_key = oprf.derive_key_pair(bytes(32), b"", Mode.OPRF)
    voprf_key = oprf.derive_key_pair(bytes(32), b"", Mode.VOPRF)
    assert oprf_key != voprf_key
    assert oprf.evaluate(oprf_key, INPUTS[:1], Mode.OPRF) != oprf.evaluate(
        oprf_key, INPUTS[:1], Mode.VOPRF
    )


def test_empty_input_is_a_valid_input(key: KeyPair) -> None:
    blinds, blinded = oprf.blind([b""], Mode.VOPRF, stream(b"empty"))
    outputs = oprf.finalize([b""], blinds, oprf.blind_evaluate(key, blinded), Mode.VOPRF)
    assert outputs == oprf.evaluate(key, [b""], Mode.VOPRF)


# --- forgeries are caught --------------------------------------------------------


def test_proof_under_one_key_fails_under_another(
    key: KeyPair, other_key: KeyPair, session: Session
) -> None:
    _, blinded, evaluated, proof = session
    with pytest.raises(VerificationError):
        oprf.verify_proof(other_key.public, blinded, evaluated, proof, Mode.VOPRF)


def test_evaluations_under_another_key_fail(
    key: KeyPair, other_key: KeyPair, session: Session
) -> None:
    _, blinded, _, _ = session
    evaluated = oprf.blind_evaluate(other_key, blinded)
    proof = oprf.generate_proof(other_key, blinded, evaluated, Mode.VOPRF, stream(b"x"))
    with pytest.raises(VerificationError):
        oprf.verify_proof(key.public, blinded, evaluated, proof, Mode.VOPRF)


def test_one_position_evaluated_under_another_key_fails(
    key: KeyPair, other_key: KeyPair, session: Session
) -> None:
    """A responder that evaluates one element under a different key cannot prove the batch."""
    _, blinded, evaluated, _ = session
    for position in range(len(blinded)):
        mixed = list(evaluated)
        mixed[position] = oprf.blind_evaluate(other_key, [blinded[position]])[0]
        proof = oprf.generate_proof(key, blinded, mixed, Mode.VOPRF, stream(b"mixed"))
        with pytest.raises(VerificationError):
            oprf.verify_proof(key.public, blinded, mixed, proof, Mode.VOPRF)


@pytest.mark.parametrize("position", range(len(INPUTS)))
def test_tampered_evaluation_in_one_position_fails(
    key: KeyPair, session: Session, position: int
) -> None:
    _, blinded, evaluated, proof = session
    tampered = list(evaluated)
    tampered[position] = group.element_add(tampered[position], group.GENERATOR)
    with pytest.raises(VerificationError):
        oprf.verify_proof(key.public, blinded, tampered, proof, Mode.VOPRF)


@pytest.mark.parametrize("first", range(len(INPUTS) - 1))
def test_swapped_evaluations_fail(key: KeyPair, session: Session, first: int) -> None:
    _, blinded, evaluated, proof = session
    swapped = list(evaluated)
    swapped[first], swapped[first + 1] = swapped[first + 1], swapped[first]
    with pytest.raises(VerificationError):
        oprf.verify_proof(key.public, blinded, swapped, proof, Mode.VOPRF)


def test_proof_does_not_cover_a_subset_or_another_order(key: KeyPair, session: Session) -> None:
    _, blinded, evaluated, proof = session
    with pytest.raises(VerificationError):
        oprf.verify_proof(key.public, blinded[:-1], evaluated[:-1], proof, Mode.VOPRF)
    with pytest.raises(VerificationError):
        oprf.verify_proof(key.public, blinded[::-1], evaluated[::-1], proof, Mode.VOPRF)


@pytest.mark.parametrize(
    "proof",
    [b"", bytes(63), bytes(65), bytes(64), b"\xff" * 64, group.ORDER.to_bytes(32, "little") * 2],
    ids=["empty", "short", "long", "zeros", "non-canonical", "order"],
)
def test_malformed_proofs_fail_with_the_same_error(
    key: KeyPair, session: Session, proof: bytes
) -> None:
    _, blinded, evaluated, _ = session
    with pytest.raises(VerificationError, match=r"^proof does not verify$"):
        oprf.verify_proof(key.public, blinded, evaluated, proof, Mode.VOPRF)


def test_proof_with_zero_response_is_computed_not_crashed(key: KeyPair, session: Session) -> None:
    """s = 0 makes t2 = c*B; the verifier handles it and rejects the forgery."""
    _, blinded, evaluated, proof = session
    with pytest.raises(VerificationError):
        oprf.verify_proof(key.public, blinded, evaluated, proof[:32] + bytes(32), Mode.VOPRF)


def test_proofs_only_in_voprf_mode(key: KeyPair, session: Session) -> None:
    _, blinded, evaluated, proof = session
    with pytest.raises(LocalProtocolError):
        oprf.generate_proof(key, blinded, evaluated, Mode.OPRF, stream(b"x"))
    with pytest.raises(LocalProtocolError):
        oprf.verify_proof(key.public, blinded, evaluated, proof, Mode.OPRF)


# --- malformed peer input --------------------------------------------------------


def test_blind_evaluate_names_the_bad_element(key: KeyPair, session: Session) -> None:
    _, blinded, _, _ = session
    with pytest.raises(RemoteProtocolError, match="blinded element 2 is the identity"):
        oprf.blind_evaluate(key, [*blinded[:2], group.IDENTITY])
    with pytest.raises(RemoteProtocolError, match="blinded element 1 is not a canonical"):
        oprf.blind_evaluate(key, [blinded[0], b"\xff" * 32])
    with pytest.raises(RemoteProtocolError, match="blinded element 0 must be 32 bytes"):
        oprf.blind_evaluate(key, [blinded[0][:31]])


def test_verify_names_a_malformed_evaluation(key: KeyPair, session: Session) -> None:
    _, blinded, evaluated, proof = session
    bad = [*evaluated[:-1], group.IDENTITY]
    with pytest.raises(RemoteProtocolError, match="evaluated element 5 is the identity"):
        oprf.verify_proof(key.public, blinded, bad, proof, Mode.VOPRF)
    with pytest.raises(RemoteProtocolError, match="5 evaluated elements for 6"):
        oprf.verify_proof(key.public, blinded, evaluated[:-1], proof, Mode.VOPRF)
    with pytest.raises(RemoteProtocolError, match="public key is the identity"):
        oprf.verify_proof(group.IDENTITY, blinded, evaluated, proof, Mode.VOPRF)
    top_bit = [*evaluated[:3], evaluated[3][:-1] + bytes([evaluated[3][-1] | 0x80]), *evaluated[4:]]
    with pytest.raises(RemoteProtocolError, match="evaluated element 3 is not a canonical"):
        oprf.verify_proof(key.public, blinded, top_bit, proof, Mode.VOPRF)
    with pytest.raises(RemoteProtocolError, match="evaluated element 1 must be 32 bytes"):
        oprf.verify_proof(
            key.public, blinded, [evaluated[0], b"\x01" * 31, *evaluated[2:]], proof, Mode.VOPRF
        )
    # A bad element is named even when the proof itself is malformed.
    with pytest.raises(RemoteProtocolError, match="evaluated element 5 is the identity"):
        oprf.verify_proof(key.public, blinded, bad, b"short", Mode.VOPRF)


def test_parallel_verification_names_the_bad_element_by_its_batch_index(key: KeyPair) -> None:
    inputs = [bytes([i % 256, i // 256]) for i in range(300)]
    _, blinded = oprf.blind(inputs, Mode.VOPRF, stream(b"parallel"))
    evaluated = oprf.blind_evaluate(key, blinded)
    proof = oprf.generate_proof(key, blinded, evaluated, Mode.VOPRF, stream(b"proof"))
    with ThreadPoolExecutor(2) as pool:
        oprf.verify_proof(key.public, blinded, evaluated, proof, Mode.VOPRF, mapper=pool.map)
        bad = [*evaluated[:257], group.IDENTITY, *evaluated[258:]]
        with pytest.raises(RemoteProtocolError, match="evaluated element 257 is the identity"):
            oprf.verify_proof(key.public, blinded, bad, proof, Mode.VOPRF, mapper=pool.map)
        wrong = [*evaluated[:299], evaluated[0]]
        with pytest.raises(VerificationError):
            oprf.verify_proof(key.public, blinded, wrong, proof, Mode.VOPRF, mapper=pool.map)


def test_finalize_rejects_bad_evaluations(session: Session) -> None:
    blinds, _, evaluated, _ = session
    with pytest.raises(RemoteProtocolError, match="evaluated element 0 is the identity"):
        oprf.finalize(INPUTS, blinds, [group.IDENTITY, *evaluated[1:]], Mode.VOPRF)
    with pytest.raises(InputError, match="6 inputs, 6 blinds and 5 evaluations"):
        oprf.finalize(INPUTS, blinds, evaluated[:5], Mode.VOPRF)
    with pytest.raises(InputError, match="blind 1 is zero"):
        oprf.finalize(INPUTS[:2], [blinds[0], bytes(32)], evaluated[:2], Mode.VOPRF)


# --- bad local arguments ---------------------------------------------------------


def test_key_pair_hides_and_checks_its_secret(key: KeyPair) -> None:
    assert key.secret.hex() not in repr(key)
    assert repr(key.secret) not in repr(key)
    assert key == KeyPair.from_secret(key.secret)
    assert hash(key) == hash(KeyPair.from_secret(key.secret))
    with pytest.raises(InputError, match="does not match"):
        KeyPair(key.secret, group.GENERATOR)
    with pytest.raises(InputError, match="secret key is zero"):
        KeyPair.from_secret(bytes(32))
    with pytest.raises(InputError, match="secret key must be 32 bytes"):
        oprf.blind_evaluate(key.secret[:16], [group.GENERATOR])


def test_derive_key_pair_checks_its_arguments() -> None:
    with pytest.raises(InputError, match="seed must be 32 bytes"):
        oprf.derive_key_pair(bytes(31), b"", Mode.VOPRF)
    with pytest.raises(InputError, match="key info"):
        oprf.derive_key_pair(bytes(32), bytes(0x10000), Mode.VOPRF)
    assert oprf.derive_key_pair(bytes(32), b"a", Mode.VOPRF) != oprf.derive_key_pair(
        bytes(32), b"b", Mode.VOPRF
    )


def test_oversized_input_refused() -> None:
    key = oprf.derive_key_pair(bytes(32), b"", Mode.OPRF)
    assert len(oprf.evaluate(key, [bytes(0xFFFF)], Mode.OPRF)[0]) == oprf.OUTPUT_SIZE
    with pytest.raises(InputError, match="input is 65536 bytes"):
        oprf.evaluate(key, [bytes(0x10000)], Mode.OPRF)
    with pytest.raises(InputError, match="input is 65536 bytes"):
        oprf.blind([bytes(0x10000)], Mode.OPRF, stream(b"x"))


def test_blind_with_checks_blinds() -> None:
    with pytest.raises(InputError, match="2 blinds for 1 inputs"):
        oprf.blind_with(INPUTS[:1], [bytes([1]) + bytes(31)] * 2, Mode.VOPRF)
    with pytest.raises(InputError, match="blind 0 is zero"):
        oprf.blind_with(INPUTS[:1], [bytes(32)], Mode.VOPRF)
    with pytest.raises(InputError, match="blind 0 is not canonical"):
        oprf.blind_with(INPUTS[:1], [b"\xff" * 32], Mode.VOPRF)


def test_unsupported_mode_refused() -> None:
    with pytest.raises(InputError, match="unsupported RFC 9497 mode 2"):
        oprf.context_string(2)  # type: ignore[arg-type]


def test_proof_needs_a_non_empty_batch(key: KeyPair) -> None:
    with pytest.raises(InputError, match="at least one"):
        oprf.generate_proof(key, [], [], Mode.VOPRF, stream(b"x"))
