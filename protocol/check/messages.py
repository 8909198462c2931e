"""The check's messages as typed values, each with one canonical encoding.

``server`` carries them in protobuf, but what is hashed into transcripts and
signed in receipts is this encoding, so both peers (and a third party reading
evidence later) compute the same bytes. Messages check their own shape when
built or decoded; the group validity of the elements inside is checked by the
sessions, where the error can say whose fault it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from nacl.signing import SigningKey, VerifyKey

from hexpsi.protocol.crypto.group import ELEMENT_SIZE
from hexpsi.protocol.crypto.oprf import PROOF_SIZE
from hexpsi.protocol.crypto.signing import verify_signature
from hexpsi.protocol.encoding import Reader, Writer, tagged_hash
from hexpsi.protocol.errors import RemoteProtocolError
from hexpsi.protocol.geo.resolution import check_resolution
from hexpsi.protocol.limits import DIGEST_SIZE, SESSION_ID_SIZE, SIGNATURE_SIZE

QUERY_LABEL = b"hexpsi/v1/query"
RESPONSE_LABEL = b"hexpsi/v1/response"
RECEIPT_LABEL = b"hexpsi/v1/receipt"
TRANSCRIPT_LABEL = b"hexpsi/v1/transcript"
MAX_ELEMENTS = 1 << 20


def _split_elements(data: bytes, what: str) -> tuple[bytes, ...]:
    if len(data) % ELEMENT_SIZE:
        raise RemoteProtocolError(
            f"{what}: element bytes are not a multiple of {ELEMENT_SIZE} ({len(data)} bytes)"
        )
    return tuple(data[i : i + ELEMENT_SIZE] for i in range(0, len(data), ELEMENT_SIZE))


@dataclass(frozen=True, slots=True)
class ElementGroup:
    """Blinded elements (or their evaluations) declared at one resolution."""

    resolution: int
    elements: tuple[bytes, ...]

    def __post_init__(self) -> None:
        check_resolution(self.resolution, error=RemoteProtocolError)
        for element in self.elements:
            if len(element) != ELEMENT_SIZE:
                raise RemoteProtocolError(
                    f"an element at resolution {self.resolution} is {len(element)} bytes, "
                    f"expected {ELEMENT_SIZE}"
                )

    def joined(self) -> bytes:
        return b"".join(self.elements)

    @classmethod
    def from_joined(cls, resolution: int, data: bytes) -> ElementGroup:
        return cls(resolution, _split_elements(data, f"group at resolution {resolution}"))


def _check_session_id(session_id: bytes) -> None:
    if len(session_id) != SESSION_ID_SIZE:
        raise RemoteProtocolError(f"session id must be {SESSION_ID_SIZE} bytes")


def _check_groups(groups: tuple[ElementGroup, ...], what: str) -> None:
    resolutions = [group.resolution for group in groups]
    if resolutions != sorted(set(resolutions)):
        raise RemoteProtocolError(f"{what}: groups must have distinct, ascending resolutions")


@dataclass(frozen=True, slots=True)
class Query:
    """Proposer → responder: blinded elements per resolution, for one session."""

    session_id: bytes
    descriptor_digest: bytes
    groups: tuple[ElementGroup, ...]

    def __post_init__(self) -> None:
        _check_session_id(self.session_id)
        if len(self.descriptor_digest) != DIGEST_SIZE:
            raise RemoteProtocolError(f"descriptor digest must be {DIGEST_SIZE} bytes")
        _check_groups(self.groups, "query")

    @property
    def element_count(self) -> int:
        return sum(len(group.elements) for group in self.groups)

    def group_sizes(self) -> dict[int, int]:
        return {group.resolution: len(group.elements) for group in self.groups}

    def encode(self) -> bytes:
        writer = Writer().blob(QUERY_LABEL).fixed(self.session_id, SESSION_ID_SIZE)
        writer.fixed(self.descriptor_digest, DIGEST_SIZE).u8(len(self.groups))
        for group in self.groups:
            writer.u8(group.resolution).blob(group.joined())
        return writer.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Query:
        reader = Reader(data, what="query")
        if reader.blob(max_size=64) != QUERY_LABEL:
            raise RemoteProtocolError("not a hexpsi v1 query")
        session_id = reader.fixed(SESSION_ID_SIZE)
        digest = reader.fixed(DIGEST_SIZE)
        groups = tuple(
            ElementGroup.from_joined(reader.u8(), reader.blob(max_size=MAX_ELEMENTS * ELEMENT_SIZE))
            for _ in range(reader.u8())
        )
        reader.end()
        return cls(session_id, digest, groups)


@dataclass(frozen=True, slots=True)
class EvaluatedGroup:
    """Evaluations of one query group, with the batched DLEQ proof for them."""

    resolution: int
    elements: tuple[bytes, ...]
    proof: bytes

    def __post_init__(self) -> None:
        ElementGroup(self.resolution, self.elements)
        if len(self.proof) != PROOF_SIZE:
            raise RemoteProtocolError(f"proof must be {PROOF_SIZE} bytes")


@dataclass(frozen=True, slots=True)
class Receipt:
    """The responder's signed statement that it evaluated this transcript."""

    responder: str
    proposer: str
    epoch_id: bytes
    session_id: bytes
    issued_at: float
    area_km2: float
    transcript_hash: bytes
    signature: bytes = b""

    def body(self) -> bytes:
        return (
            Writer()
            .blob(RECEIPT_LABEL)
            .text(self.responder)
            .text(self.proposer)
            .blob(self.epoch_id)
            .fixed(self.session_id, SESSION_ID_SIZE)
            .f64(self.issued_at)
            .f64(self.area_km2)
            .fixed(self.transcript_hash, DIGEST_SIZE)
            .getvalue()
        )

    @property
    def receipt_id(self) -> str:
        """A short stable name for the receipt: the hash of what was signed."""
        return tagged_hash(b"hexpsi/v1/receipt-id", self.body())[:16].hex()

    def signed(self, signing_key: SigningKey) -> Receipt:
        signature = signing_key.sign(self.body()).signature
        return Receipt(
            self.responder,
            self.proposer,
            self.epoch_id,
            self.session_id,
            self.issued_at,
            self.area_km2,
            self.transcript_hash,
            signature,
        )

    def verify(self, verify_key: VerifyKey) -> None:
        verify_signature(
            verify_key, self.body(), self.signature, "receipt signature does not verify"
        )

    def encode(self) -> bytes:
        return Writer().blob(self.body()).fixed(self.signature, SIGNATURE_SIZE).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Receipt:
        outer = Reader(data, what="receipt")
        body = outer.blob(max_size=4096)
        signature = outer.fixed(SIGNATURE_SIZE)
        outer.end()
        reader = Reader(body, what="receipt")
        if reader.blob(max_size=64) != RECEIPT_LABEL:
            raise RemoteProtocolError("not a hexpsi v1 receipt")
        receipt = cls(
            responder=reader.text(max_size=63),
            proposer=reader.text(max_size=63),
            epoch_id=reader.blob(max_size=64),
            session_id=reader.fixed(SESSION_ID_SIZE),
            issued_at=reader.f64(),
            area_km2=reader.f64(),
            transcript_hash=reader.fixed(DIGEST_SIZE),
            signature=signature,
        )
        reader.end()
        return receipt


@dataclass(frozen=True, slots=True)
class Response:
    """Responder → proposer: evaluations and proofs per group, and the signed receipt."""

    session_id: bytes
    groups: tuple[EvaluatedGroup, ...]
    receipt: Receipt

    def __post_init__(self) -> None:
        _check_session_id(self.session_id)
        resolutions = [group.resolution for group in self.groups]
        if resolutions != sorted(set(resolutions)):
            raise RemoteProtocolError("response: groups must have distinct, ascending resolutions")

    def encode(self) -> bytes:
        writer = Writer().blob(RESPONSE_LABEL).fixed(self.session_id, SESSION_ID_SIZE)
        writer.u8(len(self.groups))
        for group in self.groups:
            writer.u8(group.resolution).blob(b"".join(group.elements)).fixed(
                group.proof, PROOF_SIZE
            )
        return writer.blob(self.receipt.encode()).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Response:
        reader = Reader(data, what="response")
        if reader.blob(max_size=64) != RESPONSE_LABEL:
            raise RemoteProtocolError("not a hexpsi v1 response")
        session_id = reader.fixed(SESSION_ID_SIZE)
        groups = []
        for _ in range(reader.u8()):
            resolution = reader.u8()
            elements = _split_elements(
                reader.blob(max_size=MAX_ELEMENTS * ELEMENT_SIZE), "response group"
            )
            groups.append(EvaluatedGroup(resolution, elements, reader.fixed(PROOF_SIZE)))
        receipt = Receipt.decode(reader.blob(max_size=8192))
        reader.end()
        return cls(session_id, tuple(groups), receipt)


def transcript_hash(
    *,
    descriptor_digest: bytes,
    proposer: str,
    query: Query,
    groups: tuple[EvaluatedGroup, ...],
) -> bytes:
    """Binds the descriptor, session, proposer, every blinded and evaluated element and proof."""
    evaluated = Writer().u8(len(groups))
    for group in groups:
        evaluated.u8(group.resolution).blob(b"".join(group.elements)).fixed(group.proof, PROOF_SIZE)
    return tagged_hash(
        TRANSCRIPT_LABEL,
        descriptor_digest,
        proposer.encode("utf-8"),
        query.encode(),
        evaluated.getvalue(),
    )
