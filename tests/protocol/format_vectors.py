"""Known-answer vectors for hexpsi's v1 formats, built from fixed inputs.

Round-trip tests pass when a change alters the encoder and the decoder alike;
these do not. ``build()`` makes every signed or hashed v1 format from fixed
seeds (keys, cells, clock, a SHAKE-256 byte stream for randomness) and
``tests/vectors/hexpsi-v1-formats.json`` freezes the result. The test rebuilds
them and compares byte for byte, and also decodes and verifies the frozen
bytes on their own, as a verifier years from now would.

Regenerate only for a deliberate format change (and then bump the version
label): ``python -m tests.protocol.format_vectors``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h3.api.basic_int as h3

from hexpsi.protocol.audit import GENESIS_HASH, canonical_json, sign_entry, sign_head
from hexpsi.protocol.check.evidence import export_evidence, open_cell
from hexpsi.protocol.epoch.descriptor import snapshot_params
from hexpsi.protocol.snapshot.gcs import GcsParams, encode_blocks
from hexpsi.protocol.snapshot.merkle import MerkleBuilder
from tests.protocol.helpers import NOW, CheckPair, DeterministicRng, make_responder, signing_key
from tests.protocol.mutual_helpers import mutual_pair

VECTORS_PATH = Path(__file__).parents[1] / "vectors" / "hexpsi-v1-formats.json"

RES = 9
RES_MIN = 7
AT_TANF = h3.latlng_to_cell(33.5069, 38.6183, RES)
"""Protected: two rings around the garrison; the strike overlaps their edge."""
PROTECTED = sorted(h3.grid_disk(AT_TANF, 2))
STRIKE = sorted(h3.grid_disk(h3.grid_ring(AT_TANF, 3)[0], 1))
AUDIT_ENTRIES: tuple[tuple[float, str, str, dict[str, Any]], ...] = (
    (NOW + 1.0, "evaluate", "russia", {"area_km2": 9.1, "elements": 38, "session": "00" * 16}),
    (NOW + 2.5, "mutual", "russia", {"shared_cells": 0, "set_size": 1024}),
    (NOW + 4.0, "epoch", "", {"sequence": 2}),
)


def _descriptor_vector() -> tuple[Any, dict[str, Any]]:
    node = make_responder(PROTECTED, res=RES, res_min=RES_MIN, seed=b"format vectors")
    signed = node.descriptor
    return node, {
        "responder_verify_key": bytes(node.verify_key).hex(),
        "encoded": signed.encoded.hex(),
        "signature": signed.signature.hex(),
        "digest": signed.digest.hex(),
    }


def _check_vectors(node: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    pair = CheckPair(node, frozenset(STRIKE), seed=b"format vectors proposer")
    query = pair.query()
    response = pair.respond(query)
    result = pair.finish(response)
    receipt = response.receipt
    evidence = export_evidence(pair.proposer)
    check = {
        "strike_cells": [f"{cell:x}" for cell in STRIKE],
        "query": query.encode().hex(),
        "response": response.encode().hex(),
        "receipt": receipt.encode().hex(),
        "receipt_id": receipt.receipt_id,
        "transcript_hash": receipt.transcript_hash.hex(),
        "conflict": result.conflict,
        "conflicting_tokens": sorted(f"{t:x}" for t in result.conflicting_tokens),
    }
    return check, {"bundle": evidence.to_json().decode()}


def _cell_opening_vector(node: Any) -> dict[str, Any]:
    opening = open_cell(
        cell=AT_TANF,
        key=node.epoch.keys[RES],
        snapshot=node.reader(),
        bits=snapshot_params(node.descriptor.descriptor).bits,
        rng=DeterministicRng(b"format vectors opening"),
    )
    return {"cell": f"{AT_TANF:x}", "document": opening.to_json().decode(), "inside": True}


def _mutual_vector() -> dict[str, Any]:
    pair = mutual_pair(
        PROTECTED,
        STRIKE,
        proposer_seed=b"format vectors mutual proposer",
        responder_seed=b"format vectors mutual responder",
    )
    result = pair.run()
    assert pair.receipt is not None
    return {
        "proposer_verify_key": bytes(signing_key("russia").verify_key).hex(),
        "statement": pair.receipt.statement.encode().hex(),
        "receipt": pair.receipt.encode().hex(),
        "receipt_id": pair.receipt.receipt_id,
        "shared_cells": result.shared_cells,
    }


def _audit_vector() -> dict[str, Any]:
    key = signing_key("audit")
    prev = GENESIS_HASH
    entries = []
    for seq, (time, kind, peer, details) in enumerate(AUDIT_ENTRIES, start=1):
        entry = sign_entry(
            seq=seq,
            time=time,
            kind=kind,
            peer=peer,
            details=canonical_json(details),
            prev_hash=prev,
            signing_key=key,
        )
        entries.append(entry.to_json())
        prev = entry.hash
    head = sign_head(len(entries), prev, key)
    return {
        "verify_key": bytes(key.verify_key).hex(),
        "entries": entries,
        "head": {"seq": head.seq, "hash": head.hash.hex(), "signature": head.signature.hex()},
    }


def _gcs_vector() -> dict[str, Any]:
    rng = DeterministicRng(b"format vectors gcs")
    bits = 40
    values = sorted({int.from_bytes(rng(5), "big") for _ in range(300)})
    params = GcsParams.choose(count=len(values), bits=bits, block_size=64)
    blocks = list(encode_blocks(values, params))
    builder = MerkleBuilder()
    for block in blocks:
        builder.add_block(block)
    return {
        "values": [f"{v:x}" for v in values],
        "params": params.encode().hex(),
        "blocks": [block.hex() for block in blocks],
        "tree_root": builder.root().hex(),
    }


def build() -> dict[str, Any]:
    """Every v1 format from the fixed inputs above."""
    node, descriptor = _descriptor_vector()
    check, evidence = _check_vectors(node)
    return {
        "about": "hexpsi v1 format known-answer vectors; see tests/vectors/README.md",
        "now": NOW,
        "protected_cells": [f"{cell:x}" for cell in PROTECTED],
        "descriptor": descriptor,
        "check": check,
        "evidence": evidence,
        "cell_opening": _cell_opening_vector(node),
        "mutual": _mutual_vector(),
        "audit": _audit_vector(),
        "gcs": _gcs_vector(),
    }


def load() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
    return loaded


if __name__ == "__main__":
    VECTORS_PATH.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {VECTORS_PATH}")
