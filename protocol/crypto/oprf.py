"""RFC 9497 OPRF (mode 0) and VOPRF (mode 1) with the ristretto255-SHA512 suite.

Everything works on batches, since hexpsi blinds about a thousand tokens per
check and evaluates millions per snapshot; a single element is a batch of one.
The client side is :func:`blind` then :func:`finalize` (after
:func:`verify_proof` in VOPRF mode); the server side is :func:`blind_evaluate`
and :func:`generate_proof`, or :func:`evaluate` when it holds the inputs itself.
Randomness comes in as ``rng(n)``; :func:`blind_with` and
:func:`generate_proof_with` take it explicitly so test vectors and evidence
bundles can be re-derived. Elements from a peer are validated and raise
:class:`RemoteProtocolError`; bad local arguments raise :class:`InputError`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from hexpsi.protocol.crypto import dleq, group
from hexpsi.protocol.errors import InputError, LocalProtocolError
from hexpsi.protocol.parallel import Mapper
from hexpsi.protocol.randomness import RandomBytes

IDENTIFIER = b"ristretto255-SHA512"
SEED_SIZE = 32
"""DeriveKeyPair's seed is Ns = 32 bytes."""

OUTPUT_SIZE = 64
"""Nh: every OPRF output is one SHA-512 digest."""

PROOF_SIZE = dleq.PROOF_SIZE
MAX_BATCH = dleq.MAX_BATCH
MAX_INPUT_SIZE = 0xFFFF
"""Inputs (and key info) are length-prefixed with two bytes."""

_DERIVE_KEY_PAIR_ATTEMPTS = 256


class Mode(IntEnum):
    """RFC 9497 protocol variants; POPRF (2) is not used by hexpsi."""

    OPRF = 0
    VOPRF = 1


def context_string(mode: Mode) -> bytes:
    """``"OPRFV1-" || I2OSP(mode, 1) || "-ristretto255-SHA512"``."""
    return b"OPRFV1-" + bytes((_checked_mode(mode).value,)) + b"-" + IDENTIFIER


@dataclass(frozen=True, eq=False)
class KeyPair:
    """An evaluator's key: secret scalar k and public element k * G.

    Checked at construction (the public part must match the secret), never
    shows the secret in ``repr``, compares in constant time.
    """

    secret: bytes = field(repr=False)
    public: bytes

    def __post_init__(self) -> None:
        group.require_scalar(self.secret, "secret key")
        if not hmac.compare_digest(group.scalar_mult_base(self.secret), self.public):
            raise InputError("public key does not match the secret key")

    @classmethod
    def from_secret(cls, secret: bytes) -> KeyPair:
        """The key pair for a stored secret scalar."""
        group.require_scalar(secret, "secret key")
        return cls(secret, group.scalar_mult_base(secret))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyPair):
            return NotImplemented
        return hmac.compare_digest(self.secret, other.secret)

    def __hash__(self) -> int:
        return hash(self.public)


def derive_key_pair(seed: bytes, info: bytes, mode: Mode) -> KeyPair:
    """DeriveKeyPair: a key pair deterministically derived from a 32-byte seed and public info."""
    if not isinstance(seed, bytes) or len(seed) != SEED_SIZE:
        raise InputError(f"key seed must be {SEED_SIZE} bytes")
    _check_input(info, "key info")
    derive_input = seed + dleq.with_length(info)
    dst = b"DeriveKeyPair" + context_string(mode)
    for counter in range(_DERIVE_KEY_PAIR_ATTEMPTS):
        secret = group.hash_to_scalar(derive_input + bytes((counter,)), dst)
        if not group.is_zero_scalar(secret):
            return KeyPair.from_secret(secret)
    raise LocalProtocolError("key derivation produced only zero scalars")


def blind(
    inputs: Sequence[bytes], mode: Mode, rng: RandomBytes, *, mapper: Mapper = map
) -> tuple[list[bytes], list[bytes]]:
    """Blind: fresh blinds from ``rng``; returns (blinds, blinded elements), both kept in order."""
    blinds = [group.random_scalar(rng) for _ in inputs]
    return blinds, blind_with(inputs, blinds, mode, mapper=mapper)


def blind_with(
    inputs: Sequence[bytes],
    blinds: Sequence[bytes],
    mode: Mode,
    *,
    mapper: Mapper = map,
) -> list[bytes]:
    """Blind with given blinds: ``blind[i] * HashToGroup(input[i])``."""
    if len(blinds) != len(inputs):
        raise InputError(f"{len(blinds)} blinds for {len(inputs)} inputs")
    for index, blind_scalar in enumerate(blinds):
        group.require_scalar(blind_scalar, f"blind {index}")
    hashed = _hash_inputs(inputs, mode, mapper=mapper)
    return group.scalar_mult_pairs(blinds, hashed, "hashed input", mapper=mapper)


def blind_evaluate(
    key: KeyPair | bytes, blinded: Sequence[bytes], *, mapper: Mapper = map
) -> list[bytes]:
    """BlindEvaluate: ``k * blinded[i]``; every blinded element is validated as peer input."""
    return group.scalar_mult_many(_secret_of(key), blinded, "blinded element", mapper=mapper)


def generate_proof(
    key: KeyPair,
    blinded: Sequence[bytes],
    evaluated: Sequence[bytes],
    mode: Mode,
    rng: RandomBytes,
    *,
    mapper: Mapper = map,
) -> bytes:
    """The 64-byte batched DLEQ proof that ``evaluated[i] = k * blinded[i]`` for all i."""
    return generate_proof_with(
        key, blinded, evaluated, group.random_scalar(rng), mode, mapper=mapper
    )


def generate_proof_with(
    key: KeyPair,
    blinded: Sequence[bytes],
    evaluated: Sequence[bytes],
    nonce: bytes,
    mode: Mode,
    *,
    mapper: Mapper = map,
) -> bytes:
    """:func:`generate_proof` with the nonce ``r`` given (RFC vectors, reproducible tests)."""
    return dleq.generate_proof_with(
        key.secret,
        key.public,
        blinded,
        evaluated,
        nonce,
        context=_verifiable_context(mode),
        mapper=mapper,
    )


def verify_proof(
    public: bytes,
    blinded: Sequence[bytes],
    evaluated: Sequence[bytes],
    proof: bytes,
    mode: Mode,
    *,
    mapper: Mapper = map,
) -> None:
    """Check the evaluator's proof; raises VerificationError if it does not hold."""
    dleq.verify_proof(
        public, blinded, evaluated, proof, context=_verifiable_context(mode), mapper=mapper
    )


def finalize(
    inputs: Sequence[bytes],
    blinds: Sequence[bytes],
    evaluated: Sequence[bytes],
    mode: Mode,
    *,
    mapper: Mapper = map,
) -> list[bytes]:
    """Finalize: unblind each evaluation and hash it with its input into a 64-byte output.

    In VOPRF mode call :func:`verify_proof` first: this function does not.
    Evaluated elements come from the peer and are validated.
    """
    _checked_mode(mode)
    if not len(inputs) == len(blinds) == len(evaluated):
        raise InputError(
            f"{len(inputs)} inputs, {len(blinds)} blinds and {len(evaluated)} evaluations"
        )
    for item in inputs:
        _check_input(item, "input")
    for index, blind_scalar in enumerate(blinds):
        group.require_scalar(blind_scalar, f"blind {index}")
    unblinded = group.scalar_mult_pairs(
        group.scalar_invert_many(blinds), evaluated, "evaluated element", mapper=mapper
    )
    return [_output(item, element) for item, element in zip(inputs, unblinded, strict=True)]


def evaluate(secret: KeyPair | bytes, inputs: Sequence[bytes], mode: Mode) -> list[bytes]:
    """Evaluate: the server's direct OPRF output for inputs it holds (no blinding)."""
    evaluated = group.scalar_mult_many(_secret_of(secret), _hash_inputs(inputs, mode))
    return [_output(item, element) for item, element in zip(inputs, evaluated, strict=True)]


def _hash_inputs(inputs: Sequence[bytes], mode: Mode, *, mapper: Mapper = map) -> list[bytes]:
    """HashToGroup of each input, refusing the identity as RFC 9497 requires."""
    for item in inputs:
        _check_input(item, "input")
    dst = b"HashToGroup-" + context_string(mode)
    elements = group.hash_to_group_many(inputs, dst, mapper=mapper)
    for index, element in enumerate(elements):
        if element == group.IDENTITY:
            raise InputError(f"input {index} hashes to the identity element")
    return elements


def _output(item: bytes, element: bytes) -> bytes:
    """``Hash(I2OSP(len(input), 2) || input || I2OSP(Ne, 2) || element || "Finalize")``."""
    return hashlib.sha512(dleq.with_length(item) + dleq.with_length(element) + b"Finalize").digest()


def _check_input(data: bytes, what: str) -> None:
    if not isinstance(data, bytes):
        raise InputError(f"{what} must be bytes")
    if len(data) > MAX_INPUT_SIZE:
        raise InputError(f"{what} is {len(data)} bytes; at most {MAX_INPUT_SIZE} allowed")


def _secret_of(key: KeyPair | bytes) -> bytes:
    return key.secret if isinstance(key, KeyPair) else group.require_scalar(key, "secret key")


def _checked_mode(mode: Mode) -> Mode:
    try:
        return Mode(mode)
    except ValueError:
        raise InputError(f"unsupported RFC 9497 mode {mode!r}") from None


def _verifiable_context(mode: Mode) -> bytes:
    if _checked_mode(mode) is not Mode.VOPRF:
        raise LocalProtocolError("proofs exist only in VOPRF mode")
    return context_string(mode)
