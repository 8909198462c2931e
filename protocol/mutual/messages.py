"""The mutual check's messages and the statement both sides sign, as typed values.

``server`` carries the messages in protobuf; the statement travels as its
canonical encoding (``hexpsi.protocol.encoding``), because that is what both sides
sign and what a third party verifies later. Messages check their shape when
built; the group validity of the elements inside is checked by the sessions
(``hexpsi.protocol.mutual.session``), where the error can say which set and chunk was bad.
"""

from __future__ import annotations

from dataclasses import dataclass

from nacl.signing import VerifyKey

from hexpsi.protocol.budget import cell_area_km2
from hexpsi.protocol.crypto.group import ELEMENT_SIZE
from hexpsi.protocol.crypto.signing import verify_signature
from hexpsi.protocol.encoding import Reader, Writer, tagged_hash
from hexpsi.protocol.errors import RemoteProtocolError, Status
from hexpsi.protocol.geo.resolution import is_resolution
from hexpsi.protocol.limits import DIGEST_SIZE, EPOCH_ID_SIZE, SESSION_ID_SIZE, SIGNATURE_SIZE
from hexpsi.protocol.padding import size_bucket

STATEMENT_LABEL = b"hexpsi/v1/mutual-statement"
RECEIPT_ID_LABEL = b"hexpsi/v1/mutual-receipt-id"
BUCKET_MINIMUM = 128
"""Every map up to this many cells looks the same size to the peer."""
MAX_SET_SIZE = 1 << 20
"""Largest padded set either side accepts: 32 MiB of elements, minutes of group work."""
MAX_CHUNK_ELEMENTS = 16384
"""At most 512 KiB of elements per streamed chunk, far below gRPC's message limits."""
MAX_NAME_SIZE = 63


def require_size(data: bytes, size: int, what: str) -> None:
    if not isinstance(data, bytes) or len(data) != size:
        got = len(data) if isinstance(data, bytes) else type(data).__name__
        raise RemoteProtocolError(f"{what} must be {size} bytes, got {got}")


def _require_set_size(size: int, what: str) -> None:
    """A padded set size: a bucket, at least the minimum and at most the limit."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise RemoteProtocolError(f"{what} must be a positive element count, got {size!r}")
    if size > MAX_SET_SIZE:
        raise RemoteProtocolError(
            f"{what} is {size} elements; at most {MAX_SET_SIZE} are accepted",
            status=Status.RESOURCE_EXHAUSTED,
        )
    if size_bucket(size, minimum=BUCKET_MINIMUM) != size:
        raise RemoteProtocolError(f"{what} is {size}, which is not a padding bucket size")


@dataclass(frozen=True, slots=True)
class MutualStart:
    """Proposer -> responder: open a session against the responder's current epoch."""

    session_id: bytes
    descriptor_digest: bytes
    proposer_epoch_id: bytes
    proposer_set_size: int

    def __post_init__(self) -> None:
        require_size(self.session_id, SESSION_ID_SIZE, "session id")
        require_size(self.descriptor_digest, DIGEST_SIZE, "descriptor digest")
        require_size(self.proposer_epoch_id, EPOCH_ID_SIZE, "proposer epoch id")
        _require_set_size(self.proposer_set_size, "the proposer's set size")


@dataclass(frozen=True, slots=True)
class MutualAccept:
    """Responder -> proposer: the session is charged and the responder's set size."""

    session_id: bytes
    responder_set_size: int

    def __post_init__(self) -> None:
        require_size(self.session_id, SESSION_ID_SIZE, "session id")
        _require_set_size(self.responder_set_size, "the responder's set size")


@dataclass(frozen=True, slots=True)
class ElementChunk:
    """Consecutive elements of one streamed set; ``index`` counts chunks from 0."""

    index: int
    elements: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise RemoteProtocolError(f"chunk index must be a non-negative integer: {self.index!r}")
        if not 1 <= len(self.elements) <= MAX_CHUNK_ELEMENTS:
            raise RemoteProtocolError(
                f"chunk {self.index} holds {len(self.elements)} elements; "
                f"1..{MAX_CHUNK_ELEMENTS} are allowed"
            )
        for position, element in enumerate(self.elements):
            if not isinstance(element, bytes) or len(element) != ELEMENT_SIZE:
                raise RemoteProtocolError(
                    f"chunk {self.index}, element {position} is not {ELEMENT_SIZE} bytes"
                )

    def joined(self) -> bytes:
        return b"".join(self.elements)

    @classmethod
    def from_joined(cls, index: int, data: bytes) -> ElementChunk:
        """Split packed elements; lengths are checked here, group validity by the session."""
        if len(data) % ELEMENT_SIZE:
            raise RemoteProtocolError(
                f"chunk {index}: {len(data)} bytes is not a whole number of "
                f"{ELEMENT_SIZE}-byte elements"
            )
        if len(data) > MAX_CHUNK_ELEMENTS * ELEMENT_SIZE:
            raise RemoteProtocolError(
                f"chunk {index} holds {len(data) // ELEMENT_SIZE} elements; "
                f"at most {MAX_CHUNK_ELEMENTS} are allowed"
            )
        return cls(
            index, tuple(data[i : i + ELEMENT_SIZE] for i in range(0, len(data), ELEMENT_SIZE))
        )


@dataclass(frozen=True, slots=True)
class MutualCommitment:
    """Proposer -> responder: the digest of ``D_B``, sent before the proposer sees ``D_A``."""

    digest: bytes

    def __post_init__(self) -> None:
        require_size(self.digest, DIGEST_SIZE, "commitment")


@dataclass(frozen=True, slots=True)
class MutualStatement:
    """What both sides sign: who, which epochs, the sizes, the count and the transcript."""

    proposer: str
    responder: str
    session_id: bytes
    responder_epoch_id: bytes
    proposer_epoch_id: bytes
    res: int
    proposer_set_size: int
    responder_set_size: int
    shared_cells: int
    issued_at: float
    transcript_hash: bytes

    def encode(self) -> bytes:
        return (
            Writer()
            .blob(STATEMENT_LABEL)
            .text(self.proposer)
            .text(self.responder)
            .fixed(self.session_id, SESSION_ID_SIZE)
            .fixed(self.responder_epoch_id, EPOCH_ID_SIZE)
            .fixed(self.proposer_epoch_id, EPOCH_ID_SIZE)
            .u8(self.res)
            .u32(self.proposer_set_size)
            .u32(self.responder_set_size)
            .u32(self.shared_cells)
            .f64(self.issued_at)
            .fixed(self.transcript_hash, DIGEST_SIZE)
            .getvalue()
        )

    @classmethod
    def decode(cls, data: bytes) -> MutualStatement:
        reader = Reader(data, what="mutual statement")
        if reader.blob(max_size=64) != STATEMENT_LABEL:
            raise RemoteProtocolError("not a hexpsi v1 mutual statement")
        statement = cls(
            proposer=reader.text(max_size=MAX_NAME_SIZE),
            responder=reader.text(max_size=MAX_NAME_SIZE),
            session_id=reader.fixed(SESSION_ID_SIZE),
            responder_epoch_id=reader.fixed(EPOCH_ID_SIZE),
            proposer_epoch_id=reader.fixed(EPOCH_ID_SIZE),
            res=reader.u8(),
            proposer_set_size=reader.u32(),
            responder_set_size=reader.u32(),
            shared_cells=reader.u32(),
            issued_at=reader.f64(),
            transcript_hash=reader.fixed(DIGEST_SIZE),
        )
        reader.end()
        if not is_resolution(statement.res):
            raise RemoteProtocolError(f"mutual statement names resolution {statement.res}")
        return statement

    @property
    def area_km2(self) -> float:
        """The shared cells as area: count times the average cell area at ``res``."""
        return self.shared_cells * cell_area_km2(self.res)


def verify_statement_signature(key: VerifyKey, body: bytes, signature: bytes, who: str) -> None:
    """Raise unless ``who`` (proposer or responder) signed the statement ``body``."""
    verify_signature(
        key, body, signature, f"the {who}'s signature on the mutual statement does not verify"
    )


@dataclass(frozen=True, slots=True)
class MutualFinish:
    """Proposer -> responder: the statement and the proposer's signature over it."""

    statement: MutualStatement
    signature: bytes

    def __post_init__(self) -> None:
        require_size(self.signature, SIGNATURE_SIZE, "signature")


@dataclass(frozen=True, slots=True)
class MutualReceipt:
    """The statement signed by both sides: what each of them keeps and logs."""

    statement: MutualStatement
    proposer_signature: bytes
    responder_signature: bytes

    @property
    def receipt_id(self) -> str:
        return tagged_hash(RECEIPT_ID_LABEL, self.statement.encode())[:16].hex()

    def verify(self, *, proposer_key: VerifyKey, responder_key: VerifyKey) -> None:
        body = self.statement.encode()
        verify_statement_signature(proposer_key, body, self.proposer_signature, "proposer")
        verify_statement_signature(responder_key, body, self.responder_signature, "responder")

    def encode(self) -> bytes:
        return (
            Writer()
            .blob(self.statement.encode())
            .fixed(self.proposer_signature, SIGNATURE_SIZE)
            .fixed(self.responder_signature, SIGNATURE_SIZE)
            .getvalue()
        )

    @classmethod
    def decode(cls, data: bytes) -> MutualReceipt:
        reader = Reader(data, what="mutual receipt")
        statement = MutualStatement.decode(reader.blob(max_size=4096))
        receipt = cls(statement, reader.fixed(SIGNATURE_SIZE), reader.fixed(SIGNATURE_SIZE))
        reader.end()
        return receipt
