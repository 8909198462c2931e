"""Known-answer vectors for hexpsi's v1 and v2 formats, built from fixed inputs.

Round-trip tests pass when a change alters the encoder and the decoder alike;
these do not. ``build()`` makes every signed or hashed v1 format from fixed
seeds (keys, cells, clock, a SHAKE-256 byte stream for randomness) and
``tests/vectors/hexpsi-v1-formats.json`` freezes the result; ``build_v2()``
does the same for the v2 documents (zone evidence, standalone cell opening)
into ``tests/vectors/hexpsi-v2-formats.json``; ``build_rotation()`` the key
rotation statements (``hexpsi/v1/rotation``) and an audit chain handed over
through two rotations into ``tests/vectors/hexpsi-rotation-formats.json``. The
tests rebuild them and compare byte for byte, and also decode and verify the
frozen bytes on their own, as a verifier years from now would.

Regenerate only for a deliberate format change (and then bump the version
label): ``python -m tests.protocol.format_vectors`` writes the v1 file,
``--v2`` the v2 file, ``--rotation`` the rotation file. A frozen file is
never rewritten for a format it already holds.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
from pathlib import Path as FilePath
from typing import Any

import h3.api.basic_int as h3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from nacl.signing import SigningKey

from hexpsi.protocol.audit import (
    GENESIS_HASH,
    ROTATION_KIND,
    canonical_json,
    rotation_details,
    sign_entry,
    sign_head,
)
from hexpsi.protocol.check.cell_opening import open_committed_cell
from hexpsi.protocol.check.evidence import export_evidence, open_cell
from hexpsi.protocol.check.zone_evidence import export_zone_evidence
from hexpsi.protocol.epoch.descriptor import snapshot_params
from hexpsi.protocol.geo.shapes import Area, Circle, Feature, Path
from hexpsi.protocol.geo.zone import StrikeZone
from hexpsi.protocol.rotation import Rotation, SignedRotation
from hexpsi.protocol.snapshot.gcs import GcsParams, encode_blocks
from hexpsi.protocol.snapshot.merkle import MerkleBuilder
from tests.protocol.helpers import NOW, CheckPair, DeterministicRng, make_responder, signing_key
from tests.protocol.mutual_helpers import mutual_pair

VECTORS_PATH = FilePath(__file__).parents[1] / "vectors" / "hexpsi-v1-formats.json"
V2_VECTORS_PATH = VECTORS_PATH.with_name("hexpsi-v2-formats.json")
ROTATION_VECTORS_PATH = VECTORS_PATH.with_name("hexpsi-rotation-formats.json")

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


# --- v2 ---------------------------------------------------------------------------

V2_ZONE = StrikeZone(
    (
        Feature("strike", (Circle(h3.cell_to_latlng(STRIKE[0]), 250.0),)),
        Feature("road", (Path(((33.470, 38.560), (33.475, 38.570)), 120.0),)),
        Feature(
            7,
            (
                Area(
                    exterior=((33.440, 38.600), (33.440, 38.612), (33.432, 38.612)),
                    holes=(),
                    buffer_m=50.0,
                ),
            ),
        ),
    ),
    default_radius_m=50.0,
)
"""Every shape kind, one of them reaching the protected rings (a conflict)."""
V2_RECEIVED_AT = NOW + 0.375
V2_CLOSED_CELL = h3.latlng_to_cell(33.440, 38.606, RES)


def _zone_evidence_vector(node: Any) -> dict[str, Any]:
    pair = CheckPair(node, frozenset(V2_ZONE.cover(RES)), seed=b"format vectors v2 proposer")
    result = pair.run()
    evidence = export_zone_evidence(pair.proposer, zone=V2_ZONE, received_at=V2_RECEIVED_AT)
    return {
        "bundle": evidence.to_json().decode(),
        "receipt_id": result.receipt.receipt_id,
        "checked_at": result.receipt.issued_at,
        "received_at": V2_RECEIVED_AT,
        "conflict": result.conflict,
        "conflicting_tokens": sorted(f"{t:x}" for t in result.conflicting_tokens),
        "conflicting_cells": sorted(f"{c:x}" for c in result.conflicting_cells),
        "zone_cells": len(pair.proposer.strike_cells),
        "tokens": result.tokens_sent,
    }


def _standalone_opening_vectors(node: Any) -> list[dict[str, Any]]:
    return [
        {
            "cell": f"{cell:x}",
            "document": open_committed_cell(
                descriptor=node.descriptor,
                keys=node.epoch.keys,
                snapshot=node.reader(),
                cell=cell,
                rng=DeterministicRng(b"format vectors v2 opening " + f"{cell:x}".encode()),
            )
            .to_json()
            .decode(),
            "inside": inside,
        }
        for cell, inside in ((AT_TANF, True), (V2_CLOSED_CELL, False))
    ]


def build_v2() -> dict[str, Any]:
    """Every v2 document from the fixed inputs above, against the v1 vectors' epoch."""
    node, descriptor = _descriptor_vector()
    return {
        "about": "hexpsi v2 format known-answer vectors; see tests/vectors/README.md",
        "now": NOW,
        "protected_cells": [f"{cell:x}" for cell in PROTECTED],
        "descriptor": descriptor,
        "zone_evidence": _zone_evidence_vector(node),
        "cell_openings": _standalone_opening_vectors(node),
    }


# --- key rotation -------------------------------------------------------------------

ROTATION_NODE = "coalition"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def rotation_signing_key(index: int) -> SigningKey:
    return signing_key(f"{ROTATION_NODE} rotation {index}")


def rotation_certificate(index: int) -> bytes:
    """A pinnable certificate for the node, as ``hexpsi init`` makes one, but reproducible:
    the P-256 key and serial number from fixed seeds, deterministic ECDSA (RFC 6979)."""
    seed = hashlib.sha256(f"tls key {index} of {ROTATION_NODE}".encode()).digest()
    key = ec.derive_private_key(int.from_bytes(seed, "big") % (P256_ORDER - 1) + 1, ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ROTATION_NODE)])
    start = datetime.datetime.fromtimestamp(NOW + index * 10, tz=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(hashlib.sha256(seed).digest()[:16], "big") >> 1)
        .not_valid_before(start - datetime.timedelta(hours=1))
        .not_valid_after(start + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(ROTATION_NODE), x509.DNSName("coalition.example")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def rotation_statements() -> list[SignedRotation]:
    """Rotation 1 changes the signing key and the certificate, rotation 2 the signing key."""
    keys = [rotation_signing_key(index) for index in range(3)]
    certificates = [rotation_certificate(index) for index in range(2)]
    steps = ((1, 0, 1, 0, 1), (2, 1, 2, 1, 1))
    statements = []
    for sequence, old_key, new_key, old_cert, new_cert in steps:
        rotation = Rotation(
            node=ROTATION_NODE,
            sequence=sequence,
            rotated_at=NOW + 10.0 * sequence,
            old_signing_key=bytes(keys[old_key].verify_key),
            new_signing_key=bytes(keys[new_key].verify_key),
            old_certificate_sha256=hashlib.sha256(certificates[old_cert]).digest(),
            new_certificate_sha256=hashlib.sha256(certificates[new_cert]).digest(),
            new_certificate=certificates[new_cert],
        )
        statements.append(SignedRotation.sign(rotation, keys[old_key], keys[new_key]))
    return statements


def _rotated_audit_vector(statements: list[SignedRotation]) -> dict[str, Any]:
    """Five entries, one chain: an evaluation (key 0), rotation 1 (signed by key 0), an
    evaluation (key 1), rotation 2 (key 1), an epoch (key 2); the head signed by key 2."""
    keys = [rotation_signing_key(index) for index in range(3)]
    rows: list[tuple[float, str, str, dict[str, Any], SigningKey]] = [
        (NOW + 1.0, "evaluate", "russia", {"area_km2": 9.1, "elements": 38}, keys[0]),
        (NOW + 10.0, ROTATION_KIND, "", rotation_details(statements[0]), keys[0]),
        (NOW + 11.0, "evaluate", "russia", {"area_km2": 4.5, "elements": 16}, keys[1]),
        (NOW + 20.0, ROTATION_KIND, "", rotation_details(statements[1]), keys[1]),
        (NOW + 21.0, "epoch", "", {"sequence": 3}, keys[2]),
    ]
    prev = GENESIS_HASH
    entries = []
    for seq, (time, kind, peer, details, key) in enumerate(rows, start=1):
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
    head = sign_head(len(entries), prev, keys[2])
    return {
        "entries": entries,
        "head": {"seq": head.seq, "hash": head.hash.hex(), "signature": head.signature.hex()},
    }


def build_rotation() -> dict[str, Any]:
    """Rotation statements in every form they are kept in, and an audit chain through them."""
    statements = rotation_statements()
    return {
        "about": "hexpsi key rotation known-answer vectors; see tests/vectors/README.md",
        "now": NOW,
        "node": ROTATION_NODE,
        "signing_keys": [bytes(rotation_signing_key(i).verify_key).hex() for i in range(3)],
        "certificates": [rotation_certificate(i).hex() for i in range(2)],
        "statements": [
            {
                "encoded": statement.encoded.hex(),
                "signature": statement.signature.hex(),
                "new_key_signature": statement.new_key_signature.hex(),
                "signed_message": statement.signed_message.hex(),
                "document": statement.to_json().decode(),
            }
            for statement in statements
        ],
        "audit": _rotated_audit_vector(statements),
    }


def load() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
    return loaded


def load_v2() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(V2_VECTORS_PATH.read_text())
    return loaded


def load_rotation() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(ROTATION_VECTORS_PATH.read_text())
    return loaded


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="write a frozen format-vector file")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--v2", action="store_true", help="the v2 file instead of the v1 file")
    which.add_argument("--rotation", action="store_true", help="the key rotation file")
    options = parser.parse_args()
    if options.rotation:
        path, vectors = ROTATION_VECTORS_PATH, build_rotation()
    elif options.v2:
        path, vectors = V2_VECTORS_PATH, build_v2()
    else:
        path, vectors = VECTORS_PATH, build()
    path.write_text(json.dumps(vectors, indent=1) + "\n")
    print(f"wrote {path}")
