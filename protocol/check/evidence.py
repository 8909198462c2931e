"""Evidence a third party can check: "this zone was checked against that map, then".

The proposer exports, after a finished check, everything needed to replay its
side: the signed descriptor, the query and response, the receipt, each real
token with its blind and position, and a snapshot opening for each token's
output. :func:`verify_evidence` needs nothing else but the responder's public
signing key: it re-derives every blinded element from token and blind, checks
the proofs, the receipt and the openings, and states the answer.

The responder can likewise open one committed cell of an epoch
(:func:`open_cell`): it shows the cell's evaluation under the committed key
with a DLEQ proof and the snapshot opening of its output.

Exporting evidence reveals the strike tokens to whoever receives it: that is
the point, and the proposer's choice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import h3.api.basic_int as h3
from nacl.signing import VerifyKey

from hexpsi.protocol.check.messages import GroupKey, Query, Response, group_key
from hexpsi.protocol.check.session import MODE, ProposerCheck, SnapshotView, verify_response
from hexpsi.protocol.crypto.group import SCALAR_SIZE, is_canonical_scalar, is_zero_scalar
from hexpsi.protocol.crypto.oprf import (
    KeyPair,
    blind_evaluate,
    blind_with,
    finalize,
    generate_proof,
    verify_proof,
)
from hexpsi.protocol.epoch.descriptor import Descriptor, SignedDescriptor, snapshot_params
from hexpsi.protocol.errors import (
    InputError,
    LocalProtocolError,
    RemoteProtocolError,
    VerificationError,
)
from hexpsi.protocol.geo.tokens import is_cell, token_bytes
from hexpsi.protocol.randomness import RandomBytes
from hexpsi.protocol.snapshot.build import truncate_output
from hexpsi.protocol.snapshot.gcs import Opening, verify_opening
from hexpsi.protocol.spacetime.tokens import timed_token_bytes

EVIDENCE_FORMAT = "hexpsi/v1/evidence"
CELL_OPENING_FORMAT = "hexpsi/v1/cell-opening"
ONE = (1).to_bytes(SCALAR_SIZE, "little")


@dataclass(frozen=True, slots=True)
class EvidencePosition:
    """One real token of the query: where it sits, its blind and its snapshot opening;
    a timed token also its time node (``level``, ``node`` index)."""

    cell: int
    resolution: int
    index: int
    blind: bytes
    opening: Opening
    level: int | None = None
    node: int = 0

    @property
    def group(self) -> GroupKey:
        return group_key(self.resolution, self.level)

    def token(self) -> bytes:
        if self.level is None:
            return token_bytes(self.cell)
        return timed_token_bytes(self.cell, (self.level, self.node))

    @property
    def timed_token(self) -> tuple[int, int, int] | None:
        """``(cell, level, node)`` for a timed token, else None."""
        return None if self.level is None else (self.cell, self.level, self.node)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything a verifier needs to replay a finished check."""

    descriptor: bytes
    descriptor_signature: bytes
    proposer: str
    query: bytes
    response: bytes
    positions: tuple[EvidencePosition, ...]

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": EVIDENCE_FORMAT,
                **self.transcript_members(),
                "positions": self.positions_json(),
            },
            indent=1,
        ).encode()

    def transcript_members(self) -> dict[str, Any]:
        """The descriptor, proposer and messages as every evidence format writes them."""
        return {
            "descriptor": self.descriptor.hex(),
            "descriptor_signature": self.descriptor_signature.hex(),
            "proposer": self.proposer,
            "query": self.query.hex(),
            "response": self.response.hex(),
        }

    def positions_json(self) -> list[dict[str, Any]]:
        return [_position_json(p) for p in self.positions]

    @classmethod
    def from_json(cls, data: bytes) -> Evidence:
        """Parse a bundle; a malformed one is an InputError, a tampered opening a
        VerificationError. Nothing is verified here: see :func:`verify_evidence`."""
        try:
            return cls.from_members(json_document(data, EVIDENCE_FORMAT))
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            raise InputError(f"evidence bundle is malformed: {error}") from None

    @classmethod
    def from_members(cls, obj: dict[str, Any]) -> Evidence:
        """The replay material of a parsed bundle of either format; raises ValueError,
        KeyError or TypeError on a malformed member (the caller names the document)."""
        positions = obj["positions"]
        if not isinstance(positions, list):
            raise TypeError("positions must be a list")
        return cls(
            descriptor=bytes.fromhex(obj["descriptor"]),
            descriptor_signature=bytes.fromhex(obj["descriptor_signature"]),
            proposer=text_member(obj["proposer"], "proposer"),
            query=bytes.fromhex(obj["query"]),
            response=bytes.fromhex(obj["response"]),
            positions=tuple(_position(p) for p in positions),
        )


def _position_json(p: EvidencePosition) -> dict[str, Any]:
    member: dict[str, Any] = {
        "cell": f"{p.cell:x}",
        "resolution": p.resolution,
        "index": p.index,
        "blind": p.blind.hex(),
        "opening": p.opening.encode().hex(),
    }
    if p.level is not None:
        member["level"] = p.level
        member["node"] = p.node
    return member


def _position(p: Any) -> EvidencePosition:
    if not isinstance(p, dict):
        raise TypeError("a position must be a JSON object")
    timed = "level" in p
    return EvidencePosition(
        cell=int(text_member(p["cell"], "cell"), 16),
        resolution=integer_member(p["resolution"], "resolution"),
        index=integer_member(p["index"], "index"),
        blind=bytes.fromhex(p["blind"]),
        opening=Opening.decode(bytes.fromhex(p["opening"])),
        level=integer_member(p["level"], "level") if timed else None,
        node=integer_member(p["node"], "node") if timed else 0,
    )


def json_document(data: bytes, expected_format: str) -> dict[str, Any]:
    """The top-level JSON object of a document that names ``expected_format``."""
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise TypeError("the document must be a JSON object")
    if obj.get("format") != expected_format:
        raise InputError(f"not a {expected_format} document")
    return obj


def text_member(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string")
    return value


def integer_member(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer")
    return value


@dataclass(frozen=True, slots=True)
class Verdict:
    """What verified evidence establishes."""

    responder: str
    proposer: str
    epoch_id: bytes
    checked_at: float
    receipt_id: str
    tokens: frozenset[int]
    conflict: bool
    conflicting_tokens: frozenset[int]
    timed_tokens: frozenset[tuple[int, int, int]] = frozenset()
    """Timed tokens shown, as ``(cell, level, node)``."""
    conflicting_timed: frozenset[tuple[int, int, int]] = frozenset()


def export_evidence(check: ProposerCheck) -> Evidence:
    """The evidence bundle of a finished check."""
    if check.result is None or check.query is None or check.response is None:
        raise LocalProtocolError("evidence exists only for a finished check")
    return Evidence(
        descriptor=check.descriptor.encoded,
        descriptor_signature=check.descriptor.signature,
        proposer=check.proposer,
        query=check.query.encode(),
        response=check.response.encode(),
        positions=tuple(
            EvidencePosition(
                p.cell,
                p.resolution,
                p.index,
                p.blind,
                check.snapshot.open(value),
                p.level,
                p.node_index,
            )
            for p, value in zip(check.positions, check.values, strict=True)
        ),
    )


def verify_evidence(evidence: Evidence, responder_key: VerifyKey) -> Verdict:
    """Replay a check from its evidence; raises VerificationError if anything is off.

    Whatever is wrong (bytes that do not decode, an invalid element, a bad
    signature, proof or opening) the answer is one VerificationError: a bundle
    either establishes its verdict or establishes nothing.
    """
    try:
        return _replay(evidence, responder_key)
    except VerificationError:
        raise
    except (RemoteProtocolError, InputError) as error:
        raise VerificationError(f"evidence does not verify: {error.message}") from None


def _replay(evidence: Evidence, responder_key: VerifyKey) -> Verdict:
    descriptor = verified_descriptor(
        evidence.descriptor, evidence.descriptor_signature, responder_key
    )
    d = descriptor.descriptor
    query = Query.decode(evidence.query)
    response = Response.decode(evidence.response)
    verify_response(
        descriptor=descriptor,
        responder_key=responder_key,
        proposer=evidence.proposer,
        query=query,
        response=response,
    )
    receipt = response.receipt
    sent = {group.key: group.elements for group in query.all_groups}
    evaluated = {group.key: group.elements for group in response.all_groups}
    seen: set[tuple[GroupKey, int]] = set()
    params = snapshot_params(d)
    bits = params.bits
    hits: set[int] = set()
    timed_hits: set[tuple[int, int, int]] = set()
    for p in evidence.positions:
        elements = sent.get(p.group, ())
        if not 0 <= p.index < len(elements) or (p.group, p.index) in seen:
            raise VerificationError("evidence places a token outside the query")
        seen.add((p.group, p.index))
        # A token evaluated under another resolution's key can never hit: without this
        # a proposer could show "checked and clear" for a zone that conflicts.
        if not is_cell(p.cell) or h3.get_resolution(p.cell) != p.resolution:
            raise VerificationError("evidence declares a token at another resolution")
        _check_node(p, d)
        if not is_canonical_scalar(p.blind) or is_zero_scalar(p.blind):
            raise VerificationError("evidence holds a blind that is not a valid scalar")
        token = p.token()
        if blind_with([token], [p.blind], MODE)[0] != elements[p.index]:
            raise VerificationError("a token and blind do not give the element that was sent")
        (output,) = finalize([token], [p.blind], [evaluated[p.group][p.index]], MODE)
        if verify_opening(d.snapshot_root, params, truncate_output(output, bits), p.opening):
            if p.timed_token is None:
                hits.add(p.cell)
            else:
                timed_hits.add(p.timed_token)
    return Verdict(
        responder=d.node,
        proposer=evidence.proposer,
        epoch_id=d.epoch_id,
        checked_at=receipt.issued_at,
        receipt_id=receipt.receipt_id,
        tokens=frozenset(p.cell for p in evidence.positions if p.level is None),
        conflict=bool(hits or timed_hits),
        conflicting_tokens=frozenset(hits),
        timed_tokens=frozenset(
            t for t in (p.timed_token for p in evidence.positions) if t is not None
        ),
        conflicting_timed=frozenset(timed_hits),
    )


def _check_node(p: EvidencePosition, d: Descriptor) -> None:
    """A timed token's node must be one of the epoch's time tree."""
    if p.level is None:
        return
    if d.time_tree is None:
        raise VerificationError("evidence shows a timed token for an epoch without time")
    try:
        d.time_tree.node_slots((p.level, p.node))
    except LocalProtocolError:
        raise VerificationError("evidence shows a time node outside the epoch's tree") from None


def verified_descriptor(encoded: bytes, signature: bytes, key: VerifyKey) -> SignedDescriptor:
    """Signature only: evidence is checked later, so freshness is judged by the receipt time."""
    return SignedDescriptor.verify_without_freshness(encoded, signature, key)


@dataclass(frozen=True, slots=True)
class CellOpening:
    """The responder's proof that one cell's token is (or is not) in an epoch's snapshot."""

    cell: int
    evaluated: bytes
    proof: bytes
    opening: Opening

    def to_json(self) -> bytes:
        return json.dumps({"format": CELL_OPENING_FORMAT, **self.opening_members()}).encode()

    def opening_members(self) -> dict[str, Any]:
        """The cell and its proofs as every cell-opening format writes them."""
        return {
            "cell": f"{self.cell:x}",
            "evaluated": self.evaluated.hex(),
            "proof": self.proof.hex(),
            "opening": self.opening.encode().hex(),
        }

    @classmethod
    def from_json(cls, data: bytes) -> CellOpening:
        try:
            return cls.from_members(json_document(data, CELL_OPENING_FORMAT))
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            raise InputError(f"cell opening is malformed: {error}") from None

    @classmethod
    def from_members(cls, obj: dict[str, Any]) -> CellOpening:
        """The opening of a parsed document of either format; raises ValueError, KeyError
        or TypeError on a malformed member (the caller names the document)."""
        return cls(
            cell=int(text_member(obj["cell"], "cell"), 16),
            evaluated=bytes.fromhex(obj["evaluated"]),
            proof=bytes.fromhex(obj["proof"]),
            opening=Opening.decode(bytes.fromhex(obj["opening"])),
        )


def open_cell(
    *, cell: int, key: KeyPair, snapshot: SnapshotView, bits: int, rng: RandomBytes
) -> CellOpening:
    """Evaluate ``cell``'s token with blind 1, prove it, and open its output in the snapshot."""
    token = token_bytes(cell)
    (hashed,) = blind_with([token], [ONE], MODE)
    (evaluated,) = blind_evaluate(key, [hashed])
    proof = generate_proof(key, [hashed], [evaluated], MODE, rng)
    (output,) = finalize([token], [ONE], [evaluated], MODE)
    return CellOpening(cell, evaluated, proof, snapshot.open(truncate_output(output, bits)))


def verify_cell_opening(opening: CellOpening, descriptor: SignedDescriptor) -> bool:
    """Whether the cell is in the committed snapshot; raises if the opening proves nothing.

    ``descriptor`` must already be verified against the responder's key.
    """
    d = descriptor.descriptor
    resolution = _resolution_of(opening.cell)
    if not d.res_min <= resolution <= d.res:
        raise VerificationError(f"resolution {resolution} is not part of this epoch")
    token = token_bytes(opening.cell)
    (hashed,) = blind_with([token], [ONE], MODE)
    try:
        verify_proof(d.public_keys[resolution], [hashed], [opening.evaluated], opening.proof, MODE)
    except RemoteProtocolError as error:  # an evaluation that is no group element
        raise VerificationError(f"cell opening does not verify: {error.message}") from None
    (output,) = finalize([token], [ONE], [opening.evaluated], MODE)
    params = snapshot_params(d)
    return verify_opening(
        d.snapshot_root, params, truncate_output(output, params.bits), opening.opening
    )


def _resolution_of(cell: int) -> int:
    if not is_cell(cell):
        raise VerificationError("the opened cell is not a valid H3 cell")
    return int(h3.get_resolution(cell))
