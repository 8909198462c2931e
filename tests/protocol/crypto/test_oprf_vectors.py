"""Every RFC 9497 ristretto255-SHA512 vector of modes OPRF and VOPRF, byte for byte."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hexpsi.protocol.crypto import group, oprf
from hexpsi.protocol.crypto.oprf import Mode
from hexpsi.protocol.errors import VerificationError

SUITES: list[dict[str, Any]] = [
    suite
    for suite in json.loads(
        (Path(__file__).parents[2] / "vectors" / "rfc9497-ristretto255-sha512.json").read_text()
    )
    if suite["mode"] in (Mode.OPRF, Mode.VOPRF)
]


def _items(field: str) -> list[bytes]:
    return [bytes.fromhex(item) for item in field.split(",")]


@dataclass(frozen=True)
class Case:
    """One vector with its suite's key material, parsed."""

    mode: Mode
    key: oprf.KeyPair
    inputs: list[bytes]
    blinds: list[bytes]
    blinded: list[bytes]
    evaluated: list[bytes]
    outputs: list[bytes]
    proof: bytes | None
    nonce: bytes | None


def _cases() -> list[Any]:
    cases = []
    for suite in SUITES:
        mode = Mode(suite["mode"])
        secret = bytes.fromhex(suite["skSm"])
        key = oprf.KeyPair.from_secret(secret)
        for number, vector in enumerate(suite["vectors"]):
            proof = vector.get("Proof")
            case = Case(
                mode=mode,
                key=key,
                inputs=_items(vector["Input"]),
                blinds=_items(vector["Blind"]),
                blinded=_items(vector["BlindedElement"]),
                evaluated=_items(vector["EvaluationElement"]),
                outputs=_items(vector["Output"]),
                proof=bytes.fromhex(proof["proof"]) if proof else None,
                nonce=bytes.fromhex(proof["r"]) if proof else None,
            )
            assert len(case.inputs) == int(vector["Batch"])
            cases.append(pytest.param(case, id=f"{mode.name}-{number}-batch{vector['Batch']}"))
    return cases


CASES = _cases()
VOPRF_CASES = [case for case in CASES if case.values[0].mode is Mode.VOPRF]


def test_vector_file_covers_both_modes_and_batches() -> None:
    assert {suite["mode"] for suite in SUITES} == {0, 1}
    assert len(CASES) == 5
    assert any(len(case.values[0].inputs) > 1 for case in CASES)
    assert len(VOPRF_CASES) == 3


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: Mode(s["mode"]).name)
def test_derive_key_pair(suite: dict[str, Any]) -> None:
    mode = Mode(suite["mode"])
    key = oprf.derive_key_pair(bytes.fromhex(suite["seed"]), bytes.fromhex(suite["keyInfo"]), mode)
    assert key.secret.hex() == suite["skSm"]
    if "pkSm" in suite:
        assert key.public.hex() == suite["pkSm"]


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: Mode(s["mode"]).name)
def test_group_dst_is_built_from_the_context_string(suite: dict[str, Any]) -> None:
    mode = Mode(suite["mode"])
    assert bytes.fromhex(suite["groupDST"]) == b"HashToGroup-" + oprf.context_string(mode)


@pytest.mark.parametrize("case", CASES)
def test_blind(case: Case) -> None:
    assert oprf.blind_with(case.inputs, case.blinds, case.mode) == case.blinded


@pytest.mark.parametrize("case", CASES)
def test_blind_with_rng_draws_the_vector_blinds(case: Case) -> None:
    """blind() reduces 64 rng bytes; feeding each vector blind zero-extended reproduces it."""
    draws = iter(b + bytes(32) for b in case.blinds)
    blinds, blinded = oprf.blind(case.inputs, case.mode, lambda n: next(draws))
    assert (blinds, blinded) == (case.blinds, case.blinded)


@pytest.mark.parametrize("case", CASES)
def test_blind_evaluate(case: Case) -> None:
    assert oprf.blind_evaluate(case.key, case.blinded) == case.evaluated
    assert oprf.blind_evaluate(case.key.secret, case.blinded) == case.evaluated


@pytest.mark.parametrize("case", CASES)
def test_finalize(case: Case) -> None:
    assert oprf.finalize(case.inputs, case.blinds, case.evaluated, case.mode) == case.outputs


@pytest.mark.parametrize("case", CASES)
def test_evaluate(case: Case) -> None:
    assert oprf.evaluate(case.key.secret, case.inputs, case.mode) == case.outputs


@pytest.mark.parametrize("case", VOPRF_CASES)
def test_generate_proof_with_vector_nonce(case: Case) -> None:
    assert case.nonce is not None
    proof = oprf.generate_proof_with(case.key, case.blinded, case.evaluated, case.nonce, case.mode)
    assert proof == case.proof


@pytest.mark.parametrize("case", VOPRF_CASES)
def test_generate_proof_with_rng_draws_the_vector_nonce(case: Case) -> None:
    assert case.nonce is not None
    nonce = case.nonce
    proof = oprf.generate_proof(
        case.key, case.blinded, case.evaluated, case.mode, lambda n: nonce + bytes(n - 32)
    )
    assert proof == case.proof


@pytest.mark.parametrize("case", VOPRF_CASES)
def test_verify_vector_proof(case: Case) -> None:
    assert case.proof is not None
    oprf.verify_proof(case.key.public, case.blinded, case.evaluated, case.proof, case.mode)


@pytest.mark.parametrize("case", VOPRF_CASES)
@pytest.mark.parametrize("byte", [0, 17, 31, 32, 50, 63])
def test_tampered_vector_proof_rejected(case: Case, byte: int) -> None:
    assert case.proof is not None
    tampered = bytearray(case.proof)
    tampered[byte] ^= 0x01
    with pytest.raises(VerificationError):
        oprf.verify_proof(case.key.public, case.blinded, case.evaluated, bytes(tampered), case.mode)


@pytest.mark.parametrize("case", VOPRF_CASES)
def test_tampered_vector_evaluation_rejected(case: Case) -> None:
    assert case.proof is not None
    for index in range(len(case.evaluated)):
        evaluated = list(case.evaluated)
        evaluated[index] = group.element_add(evaluated[index], group.GENERATOR)
        with pytest.raises(VerificationError):
            oprf.verify_proof(case.key.public, case.blinded, evaluated, case.proof, case.mode)


@pytest.mark.parametrize("case", VOPRF_CASES)
def test_vector_proof_rejected_under_the_other_suite_key(case: Case) -> None:
    assert case.proof is not None
    other = next(c.values[0].key for c in CASES if c.values[0].mode is Mode.OPRF)
    with pytest.raises(VerificationError):
        oprf.verify_proof(other.public, case.blinded, case.evaluated, case.proof, case.mode)
