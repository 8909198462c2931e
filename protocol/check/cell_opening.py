"""A responder's cell opening that anyone can verify with its public key alone.

A v1 opening (:class:`~hexpsi.protocol.check.evidence.CellOpening`) proves
whether one cell is in an epoch's committed snapshot, but only to a verifier
who already holds that epoch's signed descriptor. The v2 document
(``hexpsi/v2/cell-opening``) carries the signed descriptor with it, so a third
party needs nothing but the responder's identity: the signature binds the
descriptor to the responder, the descriptor's keys and Merkle root bind the
opening to the epoch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import h3.api.basic_int as h3
from nacl.signing import VerifyKey

from hexpsi.protocol.check.evidence import (
    CellOpening,
    json_document,
    open_cell,
    verified_descriptor,
    verify_cell_opening,
)
from hexpsi.protocol.check.session import SnapshotView
from hexpsi.protocol.crypto.oprf import KeyPair
from hexpsi.protocol.epoch.descriptor import SignedDescriptor, snapshot_params
from hexpsi.protocol.errors import InputError, RemoteProtocolError, VerificationError
from hexpsi.protocol.geo.tokens import is_cell
from hexpsi.protocol.randomness import RandomBytes

STANDALONE_OPENING_FORMAT = "hexpsi/v2/cell-opening"


@dataclass(frozen=True, slots=True)
class StandaloneCellOpening:
    """A cell opening with the signed descriptor of the epoch it opens."""

    descriptor: bytes
    descriptor_signature: bytes
    opening: CellOpening

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": STANDALONE_OPENING_FORMAT,
                "descriptor": self.descriptor.hex(),
                "descriptor_signature": self.descriptor_signature.hex(),
                **self.opening.opening_members(),
            },
            indent=1,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> StandaloneCellOpening:
        """Parse a document; a malformed one is an InputError. Nothing is verified here."""
        try:
            obj = json_document(data, STANDALONE_OPENING_FORMAT)
            return cls(
                descriptor=bytes.fromhex(obj["descriptor"]),
                descriptor_signature=bytes.fromhex(obj["descriptor_signature"]),
                opening=CellOpening.from_members(obj),
            )
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            raise InputError(f"cell opening is malformed: {error}") from None


@dataclass(frozen=True, slots=True)
class OpeningVerdict:
    """What a verified opening establishes: whether the cell is in the committed snapshot."""

    responder: str
    epoch_id: bytes
    epoch_sequence: int
    cell: int
    inside: bool


def open_committed_cell(
    *,
    descriptor: SignedDescriptor,
    keys: Mapping[int, KeyPair],
    snapshot: SnapshotView,
    cell: int,
    rng: RandomBytes,
) -> StandaloneCellOpening:
    """Open ``cell`` (at any token resolution of the epoch) in the epoch's own snapshot."""
    d = descriptor.descriptor
    if not is_cell(cell):
        raise InputError("not a valid H3 cell")
    resolution = h3.get_resolution(cell)
    if not d.res_min <= resolution <= d.res:
        raise InputError(
            f"cell {cell:x} is at resolution {resolution}; this epoch holds tokens at "
            f"resolutions {d.res_min} to {d.res}"
        )
    opening = open_cell(
        cell=cell,
        key=keys[resolution],
        snapshot=snapshot,
        bits=snapshot_params(d).bits,
        rng=rng,
    )
    return StandaloneCellOpening(descriptor.encoded, descriptor.signature, opening)


def verify_standalone_opening(
    document: StandaloneCellOpening, responder_key: VerifyKey
) -> OpeningVerdict:
    """Check the descriptor's signature and the opening's proofs; raises VerificationError
    if either proves nothing."""
    try:
        signed = verified_descriptor(
            document.descriptor, document.descriptor_signature, responder_key
        )
        inside = verify_cell_opening(document.opening, signed)
    except VerificationError:
        raise
    except (RemoteProtocolError, InputError) as error:
        raise VerificationError(f"cell opening does not verify: {error.message}") from None
    d = signed.descriptor
    return OpeningVerdict(
        responder=d.node,
        epoch_id=d.epoch_id,
        epoch_sequence=d.sequence,
        cell=document.opening.cell,
        inside=inside,
    )
