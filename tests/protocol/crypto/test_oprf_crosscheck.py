"""Our RFC 9497 VOPRF against the independent ``voprf`` package (Rust), in both directions.

The package implements mode 1 (VOPRF) only, so that is the mode cross-checked
here; mode 0 differs only in its context string and is pinned by the RFC
vectors. Its wire format for a batch is the 64-byte proof followed by the
evaluated elements concatenated. On a bad proof it panics (a Rust
``PanicException``, which derives from BaseException) instead of raising.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from voprf import ristretto

from hexpsi.protocol.crypto import group, oprf
from hexpsi.protocol.crypto.oprf import Mode
from hexpsi.protocol.errors import VerificationError
from hexpsi.protocol.randomness import RandomBytes

MODE = Mode.VOPRF
seeds = st.binary(min_size=32, max_size=32)
infos = st.binary(max_size=40)
# The voprf package refuses empty inputs; our side accepts them (RFC 9497 allows it).
batches = st.lists(st.binary(min_size=1, max_size=48), min_size=1, max_size=6)


def stream(label: bytes) -> RandomBytes:
    """A deterministic rng, so failures reproduce from hypothesis' example."""
    counter = itertools.count()
    return lambda n: hashlib.shake_256(label + next(counter).to_bytes(8, "big")).digest(n)


def split_batch_output(data: bytes, count: int) -> tuple[list[bytes], bytes]:
    assert len(data) == oprf.PROOF_SIZE + count * group.ELEMENT_SIZE
    proof, rest = data[: oprf.PROOF_SIZE], data[oprf.PROOF_SIZE :]
    return [rest[i * 32 : (i + 1) * 32] for i in range(count)], proof


def join_batch_output(evaluated: list[bytes], proof: bytes) -> bytes:
    return proof + b"".join(evaluated)


def their_verifier_refuses(call: Callable[[], object]) -> bool:
    try:
        call()
    except BaseException as error:  # the package panics rather than raising an Exception
        return "ProofVerification" in str(error)
    return False


@settings(max_examples=15, deadline=None)
@given(seed=seeds, info=infos, inputs=batches)
def test_derive_key_pair_and_evaluate_agree(seed: bytes, info: bytes, inputs: list[bytes]) -> None:
    theirs = ristretto.Evaluator.from_seed(seed, info)
    ours = oprf.derive_key_pair(seed, info, MODE)
    assert ours.public == theirs.public_key.serialize()
    assert oprf.evaluate(ours, inputs, MODE) == [theirs.evaluate_known_input(x) for x in inputs]


@settings(max_examples=10, deadline=None)
@given(seed=seeds, info=infos, inputs=batches)
def test_their_client_against_our_evaluator(seed: bytes, info: bytes, inputs: list[bytes]) -> None:
    key = oprf.derive_key_pair(seed, info, MODE)
    clients, blinded_inputs = zip(*(ristretto.Client.blind(x) for x in inputs), strict=True)
    blinded = [b.serialize() for b in blinded_inputs]
    evaluated = oprf.blind_evaluate(key, blinded)
    proof = oprf.generate_proof(key, blinded, evaluated, MODE, stream(seed + info))
    response = ristretto.VerifiableBatchOutput.deserialize(join_batch_output(evaluated, proof))
    public = ristretto.PublicKey.deserialize(key.public)
    outputs = ristretto.Client.finalize_batch(list(clients), response, public)
    assert outputs == oprf.evaluate(key, inputs, MODE)


@settings(max_examples=10, deadline=None)
@given(seed=seeds, info=infos, inputs=batches)
def test_our_client_against_their_evaluator(seed: bytes, info: bytes, inputs: list[bytes]) -> None:
    evaluator = ristretto.Evaluator.from_seed(seed, info)
    public = evaluator.public_key.serialize()
    blinds, blinded = oprf.blind(inputs, MODE, stream(info + seed))
    response = evaluator.evaluate_batch([ristretto.BlindedInput.deserialize(b) for b in blinded])
    evaluated, proof = split_batch_output(response.serialize(), len(inputs))
    oprf.verify_proof(public, blinded, evaluated, proof, MODE)
    outputs = oprf.finalize(inputs, blinds, evaluated, MODE)
    assert outputs == [evaluator.evaluate_known_input(x) for x in inputs]


@settings(max_examples=3, deadline=None)
@given(seed=seeds, inputs=st.lists(st.binary(min_size=1, max_size=8), min_size=2, max_size=4))
def test_their_verifier_rejects_our_proof_for_swapped_evaluations(
    seed: bytes, inputs: list[bytes]
) -> None:
    key = oprf.derive_key_pair(seed, b"", MODE)
    clients, blinded_inputs = zip(*(ristretto.Client.blind(x) for x in inputs), strict=True)
    blinded = [b.serialize() for b in blinded_inputs]
    evaluated = oprf.blind_evaluate(key, blinded)
    proof = oprf.generate_proof(key, blinded, evaluated, MODE, stream(seed))
    swapped = [evaluated[1], evaluated[0], *evaluated[2:]]
    public = ristretto.PublicKey.deserialize(key.public)
    honest = ristretto.VerifiableBatchOutput.deserialize(join_batch_output(evaluated, proof))
    forged = ristretto.VerifiableBatchOutput.deserialize(join_batch_output(swapped, proof))
    assert not their_verifier_refuses(
        lambda: ristretto.Client.finalize_batch(list(clients), honest, public)
    )
    assert their_verifier_refuses(
        lambda: ristretto.Client.finalize_batch(list(clients), forged, public)
    )


@settings(max_examples=5, deadline=None)
@given(seed=seeds, inputs=st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=4))
def test_we_reject_their_proof_under_another_key(seed: bytes, inputs: list[bytes]) -> None:
    evaluator = ristretto.Evaluator.from_seed(seed, b"one")
    other = oprf.derive_key_pair(seed, b"two", MODE)
    _, blinded = oprf.blind(inputs, MODE, stream(seed))
    response = evaluator.evaluate_batch([ristretto.BlindedInput.deserialize(b) for b in blinded])
    evaluated, proof = split_batch_output(response.serialize(), len(inputs))
    with pytest.raises(VerificationError):
        oprf.verify_proof(other.public, blinded, evaluated, proof, MODE)
