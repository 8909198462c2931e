"""RFC 9497 section 2.2: the batched discrete-log-equality proof behind VOPRF.

The evaluator proves that every ``D[i] = k * C[i]`` for the ``k`` behind its
public key ``B = k * G``, in one 64-byte proof ``(c, s)`` for the whole batch.
Both sides first fold the batch into composites ``M = sum d_i * C[i]`` and
``Z = sum d_i * D[i]`` with ``d_i`` hashed from the whole transcript; the prover
takes the shortcut ``Z = k * M`` (ComputeCompositesFast). Functions take the
RFC 9497 context string so this module does not care about modes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence

from hexpsi.protocol.crypto import group
from hexpsi.protocol.errors import InputError, RemoteProtocolError, VerificationError
from hexpsi.protocol.parallel import Mapper
from hexpsi.protocol.randomness import RandomBytes

PROOF_SIZE = 2 * group.SCALAR_SIZE
MAX_BATCH = 0xFFFF
"""Composite indices are encoded in two bytes, so a batch holds at most this many."""

_ELEMENT_LENGTH = group.ELEMENT_SIZE.to_bytes(2, "big")  # I2OSP(Ne, 2)


def with_length(data: bytes) -> bytes:
    """RFC 9497's ``I2OSP(len(data), 2) || data``, the framing of every hashed input."""
    return len(data).to_bytes(2, "big") + data


def _composite_weights(
    public: bytes, blinded: Sequence[bytes], evaluated: Sequence[bytes], context: bytes
) -> Callable[[int, int], list[bytes]]:
    """The d_i of ComputeComposites, one scalar per (C[i], D[i]) bound to the whole
    batch: ``weights(start, end)`` derives d_start .. d_end-1 (the parallel passes
    call it per chunk, so the hashing overlaps other chunks' multiplications)."""
    seed_transcript = with_length(public) + with_length(b"Seed-" + context)
    prefix = with_length(hashlib.sha512(seed_transcript).digest())
    dst = b"HashToScalar-" + context

    def weights(start: int, end: int) -> list[bytes]:
        transcripts = (
            prefix
            + index.to_bytes(2, "big")
            + _ELEMENT_LENGTH
            + blinded[index]
            + _ELEMENT_LENGTH
            + evaluated[index]
            + b"Composite"
            for index in range(start, end)
        )
        return group.hash_to_scalar_many(transcripts, dst)

    return weights


def compute_composites(
    public: bytes,
    blinded: Sequence[bytes],
    evaluated: Sequence[bytes],
    context: bytes,
    *,
    mapper: Mapper = map,
) -> tuple[bytes, bytes]:
    """Verifier's (M, Z): both composites computed from the elements, in one pass.

    The evaluated elements come from the prover: each must be a valid,
    non-identity element, checked as it is multiplied.
    """
    m, z = group.weighted_sums(
        _composite_weights(public, blinded, evaluated, context),
        [
            group.Column(blinded, "blinded element"),
            group.Column(evaluated, "evaluated element", peer_elements=True),
        ],
        mapper=mapper,
    )
    return m, z


def compute_composites_fast(
    secret: bytes,
    public: bytes,
    blinded: Sequence[bytes],
    evaluated: Sequence[bytes],
    context: bytes,
    *,
    mapper: Mapper = map,
) -> tuple[bytes, bytes]:
    """Prover's (M, Z): M from the blinded elements, then Z = k * M."""
    (m,) = group.weighted_sums(
        _composite_weights(public, blinded, evaluated, context),
        [group.Column(blinded, "blinded element")],
        mapper=mapper,
    )
    return m, group.linear_combination([secret], [m])


def _challenge(parts: tuple[bytes, bytes, bytes, bytes, bytes], context: bytes) -> bytes:
    """HashToScalar over (B, M, Z, t2, t3), each length-prefixed, then "Challenge"."""
    transcript = b"".join(with_length(part) for part in parts) + b"Challenge"
    return group.hash_to_scalar(transcript, b"HashToScalar-" + context)


def _check_batch_shape(blinded: Sequence[bytes], evaluated: Sequence[bytes]) -> None:
    if not blinded:
        raise InputError("a proof covers at least one element")
    if len(blinded) > MAX_BATCH:
        raise InputError(f"a proof covers at most {MAX_BATCH} elements, not {len(blinded)}")
    if len(evaluated) != len(blinded):
        raise RemoteProtocolError(
            f"{len(evaluated)} evaluated elements for {len(blinded)} blinded elements"
        )


def generate_proof_with(
    secret: bytes,
    public: bytes,
    blinded: Sequence[bytes],
    evaluated: Sequence[bytes],
    nonce: bytes,
    *,
    context: bytes,
    mapper: Mapper = map,
) -> bytes:
    """GenerateProof with an explicit nonce ``r`` (the RFC vectors fix it); returns c || s."""
    group.require_scalar(secret, "secret key")
    group.require_scalar(nonce, "proof nonce")
    _check_batch_shape(blinded, evaluated)
    for index, element in enumerate(evaluated):
        if not isinstance(element, bytes) or len(element) != group.ELEMENT_SIZE:
            raise InputError(f"evaluated element {index} must be {group.ELEMENT_SIZE} bytes")
    m, z = compute_composites_fast(secret, public, blinded, evaluated, context, mapper=mapper)
    t2 = group.scalar_mult_base(nonce)
    t3 = group.linear_combination([nonce], [m])
    c = _challenge((public, m, z, t2, t3), context)
    s = group.scalar_sub(nonce, group.scalar_mul(c, secret))
    return c + s


def generate_proof(
    secret: bytes,
    public: bytes,
    blinded: Sequence[bytes],
    evaluated: Sequence[bytes],
    rng: RandomBytes,
    *,
    context: bytes,
    mapper: Mapper = map,
) -> bytes:
    """GenerateProof with a fresh nonce from ``rng``."""
    return generate_proof_with(
        secret,
        public,
        blinded,
        evaluated,
        group.random_scalar(rng),
        context=context,
        mapper=mapper,
    )


def verify_proof(
    public: bytes,
    blinded: Sequence[bytes],
    evaluated: Sequence[bytes],
    proof: bytes,
    *,
    context: bytes,
    mapper: Mapper = map,
) -> None:
    """VerifyProof; returns only if the proof holds, else raises VerificationError.

    A malformed proof is reported with the same terse error as a wrong one. An
    element that is not a valid encoding is a malformed message and raises
    :class:`RemoteProtocolError` naming it.
    """
    group.validate_element(public, "public key")
    _check_batch_shape(blinded, evaluated)
    # Composites first: they validate every evaluated element, whose error names it.
    m, z = compute_composites(public, blinded, evaluated, context, mapper=mapper)
    if not isinstance(proof, bytes) or len(proof) != PROOF_SIZE:
        raise VerificationError("proof does not verify")
    c, s = proof[: group.SCALAR_SIZE], proof[group.SCALAR_SIZE :]
    if not (group.is_canonical_scalar(c) and group.is_canonical_scalar(s)):
        raise VerificationError("proof does not verify")
    t2 = group.linear_combination([s, c], [group.GENERATOR, public])
    t3 = group.linear_combination([s, c], [m, z])
    if not hmac.compare_digest(_challenge((public, m, z, t2, t3), context), c):
        raise VerificationError("proof does not verify")
