"""What a third party is handed: a document whose ``format`` member says what it is.

:func:`read_document` parses evidence bundles and cell openings of either
version; :func:`verify_document` verifies whichever it is with the
responder's public key alone, and refuses the two v1 kinds that cannot stand
on their own: a v1 bundle carries no strike zone (it proves only the tokens it
lists), and a v1 opening carries no descriptor.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from nacl.signing import VerifyKey

from hexpsi.protocol.check.cell_opening import (
    STANDALONE_OPENING_FORMAT,
    OpeningVerdict,
    StandaloneCellOpening,
    verify_standalone_opening,
)
from hexpsi.protocol.check.evidence import (
    CELL_OPENING_FORMAT,
    EVIDENCE_FORMAT,
    CellOpening,
    Evidence,
)
from hexpsi.protocol.check.zone_evidence import (
    ZONE_EVIDENCE_FORMAT,
    ZoneEvidence,
    ZoneVerdict,
    verify_zone_evidence,
)
from hexpsi.protocol.epoch.descriptor import Descriptor
from hexpsi.protocol.errors import HexpsiError, InputError

Document = ZoneEvidence | Evidence | StandaloneCellOpening | CellOpening
READERS: dict[str, Callable[[bytes], Document]] = {
    ZONE_EVIDENCE_FORMAT: ZoneEvidence.from_json,
    EVIDENCE_FORMAT: Evidence.from_json,
    STANDALONE_OPENING_FORMAT: StandaloneCellOpening.from_json,
    CELL_OPENING_FORMAT: CellOpening.from_json,
}


def document_format(data: bytes) -> str:
    """The ``format`` a document names; InputError if it is no hexpsi document."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise InputError(f"not a hexpsi document: not usable JSON ({error})") from None
    kind = obj.get("format") if isinstance(obj, dict) else None
    if not isinstance(kind, str) or kind not in READERS:
        raise InputError(
            f"not a hexpsi document: its format is {json.dumps(kind)[:60]}, expected one of "
            f"{', '.join(READERS)}"
        )
    return kind


def read_document(data: bytes) -> Document:
    """Parse an evidence bundle or a cell opening, whichever ``data`` says it is."""
    return READERS[document_format(data)](data)


def verify_document(document: Document, responder_key: VerifyKey) -> ZoneVerdict | OpeningVerdict:
    """Verify a document with the responder's key; raises VerificationError (or InputError,
    for a v1 opening, which cannot be verified without its epoch's descriptor)."""
    if isinstance(document, StandaloneCellOpening):
        return verify_standalone_opening(document, responder_key)
    if isinstance(document, CellOpening):
        raise InputError(
            f"a {CELL_OPENING_FORMAT} document carries no epoch descriptor, so it cannot be "
            "verified on its own",
            hint=f"ask the responder for a {STANDALONE_OPENING_FORMAT}: hexpsi evidence open",
        )
    return verify_zone_evidence(document, responder_key)


def claimed_responder(document: Document) -> str | None:
    """The responder a document's descriptor names, unverified, or None if it has none
    that decodes: for saying "this is another node's document" rather than only "the
    signature does not verify". Trust nothing else about it before verification."""
    if isinstance(document, CellOpening):
        return None
    encoded = (
        document.replay.descriptor if isinstance(document, ZoneEvidence) else document.descriptor
    )
    try:
        return Descriptor.decode(encoded).node
    except HexpsiError:
        return None
