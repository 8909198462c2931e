"""Group and OPRF costs: the numbers every sizing decision in hexpsi rests on.

Per-operation rates for the two primitives that dominate (hash-to-group and
variable-base scalar multiplication), the server's direct evaluation rate that
bounds snapshot building, and one whole 1,000-element VOPRF exchange in memory.
Each timed call reports ``ops``; per-op microseconds are the harness median
divided by ``ops`` (``us_per_op`` in the extras is the last run's own figure).
"""

from __future__ import annotations

import hashlib
import itertools
import time

from hexpsi.protocol.crypto import group, oprf
from hexpsi.protocol.crypto.oprf import Mode
from hexpsi.protocol.randomness import RandomBytes
from hexpsi.server.bench.harness import Extra, RunOnce, Workload

MODE = Mode.VOPRF
DST = b"HashToGroup-" + oprf.context_string(MODE)


def _stream(label: bytes) -> RandomBytes:
    """Deterministic bytes, so every run does identical work."""
    counter = itertools.count()
    return lambda n: hashlib.shake_256(label + next(counter).to_bytes(8, "big")).digest(n)


def _tokens(count: int) -> list[bytes]:
    """Inputs shaped like hexpsi cell tokens: label, resolution, 8-byte cell index."""
    return [b"hexpsi/v1/cell" + bytes([9]) + n.to_bytes(8, "big") for n in range(count)]


def _rate(ops: int, started: float) -> Extra:
    elapsed = time.perf_counter() - started
    return {
        "ops": ops,
        "us_per_op": round(elapsed / ops * 1e6, 2),
        "ops_per_s": round(ops / elapsed),
    }


def _prepare_hash_to_group(quick: bool) -> RunOnce:
    messages = _tokens(500 if quick else 2000)

    def run() -> Extra:
        started = time.perf_counter()
        group.hash_to_group_many(messages, DST)
        return _rate(len(messages), started)

    return run


def _prepare_scalar_mult(quick: bool) -> RunOnce:
    scalar = group.random_scalar(_stream(b"scalar"))
    elements = group.hash_to_group_many(_tokens(500 if quick else 2000), DST)

    def run() -> Extra:
        started = time.perf_counter()
        group.scalar_mult_many(scalar, elements)
        return _rate(len(elements), started)

    return run


def _prepare_evaluate(quick: bool) -> RunOnce:
    key = oprf.derive_key_pair(bytes(32), b"bench", MODE)
    tokens = _tokens(500 if quick else 2000)

    def run() -> Extra:
        started = time.perf_counter()
        oprf.evaluate(key, tokens, MODE)
        return _rate(len(tokens), started)

    return run


def _prepare_voprf_1k(quick: bool) -> RunOnce:
    key = oprf.derive_key_pair(bytes(32), b"bench", MODE)
    tokens = _tokens(1000)

    def run() -> Extra:
        client_rng, server_rng = _stream(b"client"), _stream(b"server")
        marks = [time.perf_counter()]
        blinds, blinded = oprf.blind(tokens, MODE, client_rng)
        marks.append(time.perf_counter())
        evaluated = oprf.blind_evaluate(key, blinded)
        marks.append(time.perf_counter())
        proof = oprf.generate_proof(key, blinded, evaluated, MODE, server_rng)
        marks.append(time.perf_counter())
        oprf.verify_proof(key.public, blinded, evaluated, proof, MODE)
        marks.append(time.perf_counter())
        outputs = oprf.finalize(tokens, blinds, evaluated, MODE)
        marks.append(time.perf_counter())
        if outputs[0] != oprf.evaluate(key, tokens[:1], MODE)[0]:
            raise AssertionError("the VOPRF exchange disagreed with direct evaluation")
        phases = ("blind", "evaluate", "prove", "verify", "finalize")
        extra: Extra = {
            f"{phase}_ms": round((end - start) * 1e3, 1)
            for phase, start, end in zip(phases, marks, marks[1:], strict=False)
        }
        per_token = (marks[-1] - marks[0]) / len(tokens)
        return extra | {"ops": len(tokens), "us_per_op": round(per_token * 1e6, 1)}

    return run


WORKLOADS = [
    Workload(
        "hash_to_group",
        "RFC 9380 expand_message_xmd (SHA-512) + ristretto255 one-way map, per token",
        _prepare_hash_to_group,
    ),
    Workload(
        "scalar_mult",
        "ristretto255 variable-base scalar multiplication (libsodium), per element",
        _prepare_scalar_mult,
    ),
    Workload(
        "oprf_evaluate",
        "server-side direct RFC 9497 Evaluate (hash, multiply, SHA-512), per token",
        _prepare_evaluate,
    ),
    Workload(
        "voprf_1k_in_memory",
        "1,000 tokens: blind, evaluate, prove, verify, finalize in one process",
        _prepare_voprf_1k,
    ),
]
