"""The check's messages as typed values, each with one canonical encoding.

``server`` carries them in protobuf, but what is hashed into transcripts and
signed in receipts is this encoding, so both peers (and a third party reading
evidence later) compute the same bytes. Messages check their own shape when
built or decoded; the group validity of the elements inside is checked by the
sessions, where the error can say whose fault it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from nacl.signing import SigningKey, VerifyKey

from hexpsi.protocol.crypto.group import ELEMENT_SIZE
from hexpsi.protocol.crypto.oprf import PROOF_SIZE
from hexpsi.protocol.crypto.signing import verify_signature
from hexpsi.protocol.encoding import Reader, Writer, tagged_hash
from hexpsi.protocol.errors import RemoteProtocolError
from hexpsi.protocol.geo.resolution import check_resolution
from hexpsi.protocol.limits import DIGEST_SIZE, SESSION_ID_SIZE, SIGNATURE_SIZE
from hexpsi.protocol.spacetime.tree import MAX_LEVELS

QUERY_LABEL = b"hexpsi/v1/query"
RESPONSE_LABEL = b"hexpsi/v1/response"
RECEIPT_LABEL = b"hexpsi/v1/receipt"
TRANSCRIPT_LABEL = b"hexpsi/v1/transcript"
QUERY_V2_LABEL = b"hexpsi/v2/query"
RESPONSE_V2_LABEL = b"hexpsi/v2/response"
RECEIPT_V2_LABEL = b"hexpsi/v2/receipt"
TRANSCRIPT_V2_LABEL = b"hexpsi/v2/transcript"
"""v2 messages add timed groups (a resolution and a time level each) after the
standing ones, and a receipt the space-time volume charged. A message without
timed groups keeps its v1 bytes, so every v1 transcript, receipt and evidence
bundle reads and verifies as before."""
MAX_ELEMENTS = 1 << 20


def _split_elements(data: bytes, what: str) -> tuple[bytes, ...]:
    if len(data) % ELEMENT_SIZE:
        raise RemoteProtocolError(
            f"{what}: element bytes are not a multiple of {ELEMENT_SIZE} ({len(data)} bytes)"
        )
    return tuple(data[i : i + ELEMENT_SIZE] for i in range(0, len(data), ELEMENT_SIZE))


@dataclass(frozen=True, slots=True)
class ElementGroup:
    """Blinded elements (or their evaluations) declared at one resolution, and for a
    timed group at one time level."""

    resolution: int
    elements: tuple[bytes, ...]
    level: int | None = None
    """None for a standing group; the time-tree level for a timed one."""

    def __post_init__(self) -> None:
        check_resolution(self.resolution, error=RemoteProtocolError)
        check_level(self.level)
        for element in self.elements:
            if len(element) != ELEMENT_SIZE:
                raise RemoteProtocolError(
                    f"an element at resolution {self.resolution} is {len(element)} bytes, "
                    f"expected {ELEMENT_SIZE}"
                )

    def joined(self) -> bytes:
        return b"".join(self.elements)

    @property
    def key(self) -> GroupKey:
        return group_key(self.resolution, self.level)

    @classmethod
    def from_joined(cls, resolution: int, data: bytes, level: int | None = None) -> ElementGroup:
        what = f"group at resolution {resolution}" + ("" if level is None else f" level {level}")
        return cls(resolution, _split_elements(data, what), level)


GroupKey = tuple[int, int]
"""``(resolution, level)`` with level -1 for a standing group: groups sort by it."""
STANDING = -1


def group_key(resolution: int, level: int | None) -> GroupKey:
    return resolution, STANDING if level is None else level


def check_level(level: int | None) -> None:
    if level is not None and (isinstance(level, bool) or not 0 <= level <= MAX_LEVELS):
        raise RemoteProtocolError(f"time level {level} is outside 0..{MAX_LEVELS}")


def _check_session_id(session_id: bytes) -> None:
    if len(session_id) != SESSION_ID_SIZE:
        raise RemoteProtocolError(f"session id must be {SESSION_ID_SIZE} bytes")


def _check_groups(
    groups: tuple[ElementGroup, ...] | tuple[EvaluatedGroup, ...], what: str, *, timed: bool
) -> None:
    if any((group.level is not None) != timed for group in groups):
        kind = "timed" if timed else "standing"
        raise RemoteProtocolError(f"{what}: a {kind} group has the wrong kind of level")
    keys = [group.key for group in groups]
    if keys != sorted(set(keys)):
        order = "(resolution, level)" if timed else "resolutions"
        raise RemoteProtocolError(f"{what}: groups must have distinct, ascending {order}")


def _write_groups(writer: Writer, groups: Sequence[ElementGroup], *, timed: bool) -> None:
    writer.u8(len(groups))
    for group in groups:
        writer.u8(group.resolution)
        if timed:
            writer.u8(group.level or 0)
        writer.blob(group.joined())


def _read_groups(reader: Reader, *, timed: bool) -> tuple[ElementGroup, ...]:
    groups = []
    for _ in range(reader.u8()):
        resolution = reader.u8()
        level = reader.u8() if timed else None
        data = reader.blob(max_size=MAX_ELEMENTS * ELEMENT_SIZE)
        groups.append(ElementGroup.from_joined(resolution, data, level))
    return tuple(groups)


@dataclass(frozen=True, slots=True)
class Query:
    """Proposer → responder: blinded elements per resolution (and per resolution and time
    level for timed groups), for one session."""

    session_id: bytes
    descriptor_digest: bytes
    groups: tuple[ElementGroup, ...]
    timed_groups: tuple[ElementGroup, ...] = ()

    def __post_init__(self) -> None:
        _check_session_id(self.session_id)
        if len(self.descriptor_digest) != DIGEST_SIZE:
            raise RemoteProtocolError(f"descriptor digest must be {DIGEST_SIZE} bytes")
        _check_groups(self.groups, "query", timed=False)
        _check_groups(self.timed_groups, "query", timed=True)

    @property
    def all_groups(self) -> tuple[ElementGroup, ...]:
        return self.groups + self.timed_groups

    @property
    def element_count(self) -> int:
        return sum(len(group.elements) for group in self.all_groups)

    def group_sizes(self) -> dict[int, int]:
        """Standing elements per resolution."""
        return {group.resolution: len(group.elements) for group in self.groups}

    def timed_sizes(self) -> dict[tuple[int, int], int]:
        """Timed elements per (resolution, level)."""
        return {
            (group.resolution, group.level or 0): len(group.elements) for group in self.timed_groups
        }

    def encode(self) -> bytes:
        timed = bool(self.timed_groups)
        writer = Writer().blob(QUERY_V2_LABEL if timed else QUERY_LABEL)
        writer.fixed(self.session_id, SESSION_ID_SIZE).fixed(self.descriptor_digest, DIGEST_SIZE)
        _write_groups(writer, self.groups, timed=False)
        if timed:
            _write_groups(writer, self.timed_groups, timed=True)
        return writer.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Query:
        reader = Reader(data, what="query")
        label = reader.blob(max_size=64)
        if label not in (QUERY_LABEL, QUERY_V2_LABEL):
            raise RemoteProtocolError("not a hexpsi v1 or v2 query")
        session_id = reader.fixed(SESSION_ID_SIZE)
        digest = reader.fixed(DIGEST_SIZE)
        groups = _read_groups(reader, timed=False)
        timed = _read_groups(reader, timed=True) if label == QUERY_V2_LABEL else ()
        reader.end()
        if label == QUERY_V2_LABEL and not timed:
            raise RemoteProtocolError("a v2 query must hold timed groups")
        return cls(session_id, digest, groups, timed)


@dataclass(frozen=True, slots=True)
class EvaluatedGroup:
    """Evaluations of one query group, with the batched DLEQ proof for them."""

    resolution: int
    elements: tuple[bytes, ...]
    proof: bytes
    level: int | None = None

    def __post_init__(self) -> None:
        ElementGroup(self.resolution, self.elements, self.level)
        if len(self.proof) != PROOF_SIZE:
            raise RemoteProtocolError(f"proof must be {PROOF_SIZE} bytes")

    @property
    def key(self) -> GroupKey:
        return group_key(self.resolution, self.level)


def _write_evaluated(writer: Writer, groups: Sequence[EvaluatedGroup], *, timed: bool) -> None:
    writer.u8(len(groups))
    for group in groups:
        writer.u8(group.resolution)
        if timed:
            writer.u8(group.level or 0)
        writer.blob(b"".join(group.elements)).fixed(group.proof, PROOF_SIZE)


def _read_evaluated(reader: Reader, *, timed: bool) -> tuple[EvaluatedGroup, ...]:
    groups = []
    for _ in range(reader.u8()):
        resolution = reader.u8()
        level = reader.u8() if timed else None
        elements = _split_elements(
            reader.blob(max_size=MAX_ELEMENTS * ELEMENT_SIZE), "response group"
        )
        groups.append(EvaluatedGroup(resolution, elements, reader.fixed(PROOF_SIZE), level))
    return tuple(groups)


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
    volume_km2h: float = 0.0
    """Space-time volume charged for the timed groups (a v2 receipt; 0 in a v1 one)."""

    def body(self) -> bytes:
        timed = self.volume_km2h != 0.0
        writer = (
            Writer()
            .blob(RECEIPT_V2_LABEL if timed else RECEIPT_LABEL)
            .text(self.responder)
            .text(self.proposer)
            .blob(self.epoch_id)
            .fixed(self.session_id, SESSION_ID_SIZE)
            .f64(self.issued_at)
            .f64(self.area_km2)
        )
        if timed:
            writer.f64(self.volume_km2h)
        return writer.fixed(self.transcript_hash, DIGEST_SIZE).getvalue()

    @property
    def receipt_id(self) -> str:
        """A short stable name for the receipt: the hash of what was signed."""
        return tagged_hash(b"hexpsi/v1/receipt-id", self.body())[:16].hex()

    def signed(self, signing_key: SigningKey) -> Receipt:
        return replace(self, signature=signing_key.sign(self.body()).signature)

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
        label = reader.blob(max_size=64)
        if label not in (RECEIPT_LABEL, RECEIPT_V2_LABEL):
            raise RemoteProtocolError("not a hexpsi v1 or v2 receipt")
        responder = reader.text(max_size=63)
        proposer = reader.text(max_size=63)
        epoch_id = reader.blob(max_size=64)
        session_id = reader.fixed(SESSION_ID_SIZE)
        issued_at = reader.f64()
        area_km2 = reader.f64()
        volume_km2h = reader.f64() if label == RECEIPT_V2_LABEL else 0.0
        if label == RECEIPT_V2_LABEL and volume_km2h == 0.0:
            raise RemoteProtocolError("a v2 receipt must charge a space-time volume")
        receipt = cls(
            responder=responder,
            proposer=proposer,
            epoch_id=epoch_id,
            session_id=session_id,
            issued_at=issued_at,
            area_km2=area_km2,
            transcript_hash=reader.fixed(DIGEST_SIZE),
            signature=signature,
            volume_km2h=volume_km2h,
        )
        reader.end()
        return receipt


@dataclass(frozen=True, slots=True)
class Response:
    """Responder → proposer: evaluations and proofs per group, and the signed receipt."""

    session_id: bytes
    groups: tuple[EvaluatedGroup, ...]
    receipt: Receipt
    timed_groups: tuple[EvaluatedGroup, ...] = ()

    def __post_init__(self) -> None:
        _check_session_id(self.session_id)
        _check_groups(self.groups, "response", timed=False)
        _check_groups(self.timed_groups, "response", timed=True)

    @property
    def all_groups(self) -> tuple[EvaluatedGroup, ...]:
        return self.groups + self.timed_groups

    def encode(self) -> bytes:
        timed = bool(self.timed_groups)
        writer = Writer().blob(RESPONSE_V2_LABEL if timed else RESPONSE_LABEL)
        writer.fixed(self.session_id, SESSION_ID_SIZE)
        _write_evaluated(writer, self.groups, timed=False)
        if timed:
            _write_evaluated(writer, self.timed_groups, timed=True)
        return writer.blob(self.receipt.encode()).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Response:
        reader = Reader(data, what="response")
        label = reader.blob(max_size=64)
        if label not in (RESPONSE_LABEL, RESPONSE_V2_LABEL):
            raise RemoteProtocolError("not a hexpsi v1 or v2 response")
        session_id = reader.fixed(SESSION_ID_SIZE)
        groups = _read_evaluated(reader, timed=False)
        timed = _read_evaluated(reader, timed=True) if label == RESPONSE_V2_LABEL else ()
        receipt = Receipt.decode(reader.blob(max_size=8192))
        reader.end()
        if label == RESPONSE_V2_LABEL and not timed:
            raise RemoteProtocolError("a v2 response must hold timed groups")
        return cls(session_id, groups, receipt, timed)


def transcript_hash(
    *,
    descriptor_digest: bytes,
    proposer: str,
    query: Query,
    groups: tuple[EvaluatedGroup, ...],
    timed_groups: tuple[EvaluatedGroup, ...] = (),
) -> bytes:
    """Binds the descriptor, session, proposer, every blinded and evaluated element and proof."""
    evaluated = Writer()
    _write_evaluated(evaluated, groups, timed=False)
    timed = bool(query.timed_groups or timed_groups)
    if timed:
        _write_evaluated(evaluated, timed_groups, timed=True)
    return tagged_hash(
        TRANSCRIPT_V2_LABEL if timed else TRANSCRIPT_LABEL,
        descriptor_digest,
        proposer.encode("utf-8"),
        query.encode(),
        evaluated.getvalue(),
    )
