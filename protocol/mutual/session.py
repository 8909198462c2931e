"""Mutual proximity: how many cells two maps share, and nothing else (DH-based PSI-cardinality).

Both sides take their own protected cells at the responder's ``res`` (the
responder's signed epoch descriptor names it) and run, on one bidirectional
stream::

    proposer (key a)                              responder (key b)
    MutualStart: session, descriptor digest,  ->
      own epoch id, padded size n_A
                                              <-  MutualAccept: padded size n_B
    A1 = a*H(A + dummies), chunks             ->  (both at once)
                                              <-  B1 = b*H(B + dummies), chunks
    MutualCommitment: digest of D_B           ->
                                              <-  D_A = sorted(b*A1), chunks
    D_B = sorted(a*B1), chunks                ->
    MutualFinish: statement, signed           ->
                                              <-  countersignature

H hashes a cell's token into ristretto255 under its own domain
(``b"hexpsi/v1/mutual"``, never the check's OPRF). Keys are fresh per session
and never stored. Each side pads its set with random elements up to a size
bucket (``hexpsi.protocol.padding``) and shuffles real and padding elements together
before blinding, so a peer learns only the bucket. ``D_A`` and ``D_B`` hold
``ab*H(x)`` for every real cell x on both sides, so ``|D_A ∩ D_B|`` is exactly
the number of shared cells (padding never matches).

Who learns what: each side learns the count and the other's padded size; it
never learns which cells are shared. The double-blinded sets travel *sorted*:
the sorted order of values ``ab*H(x)`` is a function of the set alone, so it
cannot carry the order the other side sent (a shuffle under a fixed random
source could), and to the holder of one key it is a uniformly random order,
because placing any cell needs the other key. Both sides count the matches
themselves: the proposer commits to ``D_B`` before it sees ``D_A`` and reveals
it afterwards, so neither side can copy the other's set to inflate the count,
and the responder countersigns only the count it computed. The statement both
sign binds the descriptor, both epochs, the sizes, the count and a hash of all
four sets.

What a cheating peer can still do: choose its input (any set of cells, up to
the size limit, so the count for a chosen area), and, by blinding each element
with a different key and trying every pairing locally (n_A * n_B scalar
multiplications), learn which of its *own* elements are shared. DH-based
PSI-cardinality is secure against peers that follow the protocol; these
deviations are what the per-peer mutual-check allowance and the audit logs on
both sides are for.

Sessions are sans-IO state machines: the server moves their messages and runs
their heavy steps in threads. The group work on a chunk goes through a
``map``-like callable in batches, so threads spread it over cores (libsodium
releases the GIL). Within a session the sending and receiving lanes may run at
the same time (they touch separate state); every other step is sequential. Any
error parks the session in ``ERROR``; a session is used once.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from nacl.signing import SigningKey, VerifyKey

from hexpsi.protocol.clock import check_skew
from hexpsi.protocol.crypto.group import random_scalar, scalar_mult_many
from hexpsi.protocol.encoding import Writer, tagged_hash
from hexpsi.protocol.epoch.descriptor import SignedDescriptor
from hexpsi.protocol.errors import (
    HexpsiError,
    InputError,
    LocalProtocolError,
    RemoteProtocolError,
    StaleError,
    VerificationError,
)
from hexpsi.protocol.limits import EPOCH_ID_SIZE, SESSION_ID_SIZE, SIGNATURE_SIZE
from hexpsi.protocol.mutual.messages import (
    BUCKET_MINIMUM,
    MAX_CHUNK_ELEMENTS,
    MAX_SET_SIZE,
    ElementChunk,
    MutualAccept,
    MutualCommitment,
    MutualFinish,
    MutualReceipt,
    MutualStart,
    MutualStatement,
    require_size,
    verify_statement_signature,
)
from hexpsi.protocol.mutual.sets import (
    InboundSet,
    SetDigest,
    batched,
    blind_slots,
    cells_at_resolution,
    checked_batched,
    padded_slots,
    require_ascending,
    sorted_distinct,
    split_chunks,
    validate_batch,
)
from hexpsi.protocol.padding import size_bucket
from hexpsi.protocol.parallel import Mapper
from hexpsi.protocol.randomness import RandomBytes

TRANSCRIPT_LABEL = b"hexpsi/v1/mutual-transcript"
CHUNK_ELEMENTS = 4096
"""Elements per streamed chunk (128 KiB): small enough to pipeline the work."""

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class MutualResult:
    """What the proposer takes home: the count, what it means, and the receipt."""

    receipt: MutualReceipt
    own_cells: int

    @property
    def shared_cells(self) -> int:
        return self.receipt.statement.shared_cells

    @property
    def area_km2(self) -> float:
        return self.receipt.statement.area_km2


def _own_set_size(count: int, res: int) -> int:
    size = size_bucket(count, minimum=BUCKET_MINIMUM)
    if size > MAX_SET_SIZE:
        raise LocalProtocolError(
            f"this map covers {count} cells at res {res}; a mutual check takes at most "
            f"{MAX_SET_SIZE} padded elements"
        )
    return size


def _check_chunk_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_CHUNK_ELEMENTS:
        raise InputError(f"chunk size must be 1..{MAX_CHUNK_ELEMENTS} elements, got {size!r}")
    return size


def check_start(start: MutualStart, descriptor: SignedDescriptor, *, now: float) -> None:
    """Whether a proposer's opening is for this responder epoch, while it is valid.

    Cheap and needs no map: a server checks it before it charges or loads anything.
    """
    if start.descriptor_digest != descriptor.digest:
        raise StaleError(
            "the mutual check names another epoch descriptor; fetch the current one and retry"
        )
    if now > descriptor.descriptor.valid_until:
        raise StaleError("this epoch has expired; fetch the new descriptor and retry")


# --- sessions -----------------------------------------------------------------------


class State(enum.Enum):
    IDLE = "idle"
    STARTED = "started"
    EXCHANGING = "exchanging"
    COMMITTED = "committed"
    ANSWERED = "answered"
    REVEALED = "revealed"
    FINISHED = "finished"
    DONE = "done"
    ERROR = "error"


PROPOSER_STEPS = {
    "start": (State.IDLE, State.STARTED),
    "accept": (State.STARTED, State.EXCHANGING),
    "commit": (State.EXCHANGING, State.COMMITTED),
    "last D_A chunk": (State.COMMITTED, State.ANSWERED),
    "reveal": (State.ANSWERED, State.REVEALED),
    "finish": (State.REVEALED, State.FINISHED),
    "complete": (State.FINISHED, State.DONE),
}
"""The proposer's moves (A1 goes out and B1 comes in during EXCHANGING, D_A during COMMITTED)."""

RESPONDER_STEPS = {
    "receive_start": (State.IDLE, State.EXCHANGING),
    "receive_commitment": (State.EXCHANGING, State.COMMITTED),
    "answer": (State.COMMITTED, State.ANSWERED),
    "last D_B chunk": (State.ANSWERED, State.REVEALED),
    "countersign": (State.REVEALED, State.DONE),
}
"""The responder's moves (B1 goes out and A1 comes in during EXCHANGING, D_B during ANSWERED)."""


def _step(method: Callable[..., R]) -> Callable[..., R]:
    """Run a session step; any error parks the session in ERROR."""

    @functools.wraps(method)
    def wrapper(self: _Session, *args: object, **kwargs: object) -> R:
        try:
            return method(self, *args, **kwargs)
        except HexpsiError as error:
            self.fail(error)
            raise

    return wrapper


class _Session:
    """What both roles share: keys, the own padded set, set digests and the transcript."""

    role = ""

    def __init__(
        self,
        *,
        descriptor: SignedDescriptor,
        proposer: str,
        cells: Iterable[int],
        rng: RandomBytes,
        mapper: Mapper,
        chunk_elements: int,
        key: bytes | None,
        points: Mapping[int, bytes] | None = None,
    ) -> None:
        self.descriptor = descriptor
        self.points = points
        self.res = descriptor.descriptor.res
        self.responder = descriptor.descriptor.node
        self.proposer = proposer
        self.rng = rng
        self.mapper = mapper
        self.chunk_elements = _check_chunk_size(chunk_elements)
        self.cells = cells_at_resolution(cells, self.res)
        self.own_set_size = _own_set_size(len(self.cells), self.res)
        self._key = key
        self.state = State.IDLE
        self.session_id = b""
        self.proposer_epoch_id = b""
        self.proposer_set_size = 0
        self.responder_set_size = 0
        self._own_sent = 0
        self._own_digest: SetDigest | None = None
        self.shared_cells: int | None = None
        self.failure: HexpsiError | None = None
        """The error that parked the session in ERROR: the cause, when lanes fail together."""

    def release(self) -> None:
        """Drop the sets and keys the session holds; it is unusable afterwards.

        A server calls this when a call ends, however it ends, so a failed
        session's memory does not wait for the garbage collector (an error that
        parked the session refers back to it through its traceback).
        """
        self.points = None
        self.cells = frozenset()
        self._key = None
        self.failure = None
        self.state = State.ERROR

    def fail(self, error: HexpsiError) -> None:
        """Park the session in ERROR, remembering the first error as the cause."""
        if self.failure is None:
            self.failure = error
        self.state = State.ERROR

    def _expect(self, *states: State) -> None:
        if self.state not in states:
            wanted = " or ".join(s.value for s in states)
            raise LocalProtocolError(
                f"{self.role} mutual session is {self.state.value}, not {wanted}"
            )

    def _draw_key(self) -> None:
        if self._key is None:
            self._key = random_scalar(self.rng)

    @property
    def own_set_sent(self) -> bool:
        return self._own_digest is not None and self._own_sent == self.own_set_size

    def _own_chunks(self, role: str) -> Iterator[ElementChunk]:
        """Pad, shuffle and blind the own set chunk by chunk (the heavy part of EXCHANGING).

        The shuffle happens here, in the lane, rather than before the accept, so
        it overlaps with the peer's work instead of holding up both sides.
        """
        try:
            self._expect(State.EXCHANGING)
            if self._own_digest is not None:
                raise LocalProtocolError(f"the {self.role}'s own set is already being sent")
            assert self._key is not None
            digest = self._own_digest = SetDigest(role, self.session_id)
            slots = padded_slots(self.cells, self.own_set_size, self.rng)
            blind = functools.partial(blind_slots, self._key, points=self.points)
            for index, start in enumerate(range(0, len(slots), self.chunk_elements)):
                self._expect(State.EXCHANGING)
                elements = batched(self.mapper, blind, slots[start : start + self.chunk_elements])
                digest.add(elements)
                self._own_sent += len(elements)
                yield ElementChunk(index, tuple(elements))
        except HexpsiError as error:
            self.fail(error)
            raise

    def _blind_received(self, chunk: ElementChunk, what: str) -> list[bytes]:
        assert self._key is not None
        return checked_batched(
            self.mapper, functools.partial(scalar_mult_many, self._key), chunk, what
        )

    def _transcript_hash(self, digests: Sequence[bytes]) -> bytes:
        return tagged_hash(
            TRANSCRIPT_LABEL,
            self.descriptor.digest,
            self.proposer.encode("utf-8"),
            self.responder.encode("utf-8"),
            self.session_id,
            self.proposer_epoch_id,
            Writer()
            .u8(self.res)
            .u32(self.proposer_set_size)
            .u32(self.responder_set_size)
            .getvalue(),
            *digests,
        )

    def _statement(self, *, issued_at: float, transcript_hash: bytes) -> MutualStatement:
        assert self.shared_cells is not None
        return MutualStatement(
            proposer=self.proposer,
            responder=self.responder,
            session_id=self.session_id,
            responder_epoch_id=self.descriptor.descriptor.epoch_id,
            proposer_epoch_id=self.proposer_epoch_id,
            res=self.res,
            proposer_set_size=self.proposer_set_size,
            responder_set_size=self.responder_set_size,
            shared_cells=self.shared_cells,
            issued_at=issued_at,
            transcript_hash=transcript_hash,
        )


class ProposerMutual(_Session):
    """The side that starts a mutual check against a responder's current epoch.

    ``cells`` are the proposer's own protected cells at any resolution; they are
    taken at the descriptor's ``res``. ``key`` fixes the blinding key (tests);
    by default it is drawn fresh from ``rng``. ``points`` may hold the cells'
    precomputed H(cell) values (hexpsi.protocol.mutual.sets.mutual_points).
    """

    role = "proposer"

    def __init__(
        self,
        *,
        descriptor: SignedDescriptor,
        responder_key: VerifyKey,
        proposer: str,
        signing_key: SigningKey,
        cells: Iterable[int],
        proposer_epoch_id: bytes,
        rng: RandomBytes,
        mapper: Mapper = map,
        chunk_elements: int = CHUNK_ELEMENTS,
        key: bytes | None = None,
        points: Mapping[int, bytes] | None = None,
    ) -> None:
        super().__init__(
            descriptor=descriptor,
            proposer=proposer,
            cells=cells,
            rng=rng,
            mapper=mapper,
            chunk_elements=chunk_elements,
            key=key,
            points=points,
        )
        if len(proposer_epoch_id) != EPOCH_ID_SIZE:
            raise InputError(f"the proposer's epoch id must be {EPOCH_ID_SIZE} bytes")
        self.responder_key = responder_key
        self.signing_key = signing_key
        self.proposer_epoch_id = proposer_epoch_id
        self.proposer_set_size = self.own_set_size
        self._responder_set: InboundSet | None = None
        self._finals: list[bytes] = []
        self._double_b: list[bytes] = []
        self._commitment = b""
        self._double_a: InboundSet | None = None
        self.received_doubles: list[bytes] = []
        """``D_A`` as received: the proposer's elements double-blinded, in sorted order."""
        self._last_double = b""
        self._finish: MutualFinish | None = None
        self._revealed_at_all = False

    def release(self) -> None:
        super().release()
        self._responder_set = None
        self._finals = []
        self._double_b = []
        self._double_a = None
        self.received_doubles = []

    @_step
    def start(self) -> MutualStart:
        """Draw the session id and key, pad and shuffle the own set; returns the opening."""
        self._expect(State.IDLE)
        self.session_id = self.rng(SESSION_ID_SIZE)
        self._draw_key()
        self.state = State.STARTED
        return MutualStart(
            self.session_id, self.descriptor.digest, self.proposer_epoch_id, self.proposer_set_size
        )

    @_step
    def accept(self, accept: MutualAccept) -> None:
        self._expect(State.STARTED)
        if accept.session_id != self.session_id:
            raise RemoteProtocolError("the responder accepted another session")
        self.responder_set_size = accept.responder_set_size
        self._responder_set = InboundSet(
            "responder", "the responder's set", accept.responder_set_size, self.session_id
        )
        self.state = State.EXCHANGING

    def outgoing_chunks(self) -> Iterator[ElementChunk]:
        """A1, the proposer's blinded set, computed chunk by chunk as it is iterated."""
        return self._own_chunks("proposer")

    @property
    def responder_set_complete(self) -> bool:
        return self._responder_set is not None and self._responder_set.complete

    @_step
    def receive_responder_chunk(self, chunk: ElementChunk) -> None:
        """One chunk of B1: validate (libsodium refuses bad encodings) and blind with a."""
        self._expect(State.EXCHANGING)
        assert self._responder_set is not None
        self._responder_set.admit(chunk)
        self._finals.extend(self._blind_received(chunk, "the responder's set"))
        self._responder_set.record(chunk.elements)

    @_step
    def commit(self) -> MutualCommitment:
        """Sort a*B1 into D_B and commit to it; call once A1 is out and B1 is in."""
        self._expect(State.EXCHANGING)
        if not self.own_set_sent or not self.responder_set_complete:
            raise LocalProtocolError("commit needs the own set sent and the responder's received")
        self._double_b = sorted_distinct(self._finals, "the responder's set")
        self._finals = []
        digest = SetDigest("responder-double", self.session_id)
        digest.add(self._double_b)
        self._commitment = digest.digest()
        self._double_a = InboundSet(
            "proposer-double",
            "the double-blinded proposer set",
            self.proposer_set_size,
            self.session_id,
        )
        self.state = State.COMMITTED
        return MutualCommitment(self._commitment)

    @property
    def answer_complete(self) -> bool:
        return self._double_a is not None and self._double_a.complete

    @_step
    def receive_double_chunk(self, chunk: ElementChunk) -> None:
        """One chunk of D_A: every element valid, the whole set strictly ascending."""
        self._expect(State.COMMITTED)
        assert self._double_a is not None
        self._double_a.admit(chunk)
        checked_batched(self.mapper, validate_batch, chunk, "the double-blinded proposer set")
        self._last_double = require_ascending(
            self._last_double, chunk.elements, "the double-blinded proposer set"
        )
        self.received_doubles.extend(chunk.elements)
        self._double_a.record(chunk.elements)
        if self._double_a.complete:
            self.state = State.ANSWERED

    @property
    def revealed(self) -> bool:
        """Whether D_B (what depends on the responder's set) was handed out."""
        return self._revealed_at_all

    @_step
    def reveal(self) -> list[ElementChunk]:
        """D_B, the committed set, in chunks; the proposer counts the matches here."""
        self._expect(State.ANSWERED)
        self._revealed_at_all = True
        self.shared_cells = len(set(self.received_doubles).intersection(self._double_b))
        self.state = State.REVEALED
        return split_chunks(self._double_b, self.chunk_elements)

    @_step
    def finish(self, *, now: float) -> MutualFinish:
        """The statement with the count, signed by the proposer."""
        self._expect(State.REVEALED)
        assert self._responder_set is not None
        assert self._own_digest is not None
        assert self._double_a is not None
        statement = self._statement(
            issued_at=now,
            transcript_hash=self._transcript_hash(
                [
                    self._own_digest.digest(),
                    self._responder_set.digest.digest(),
                    self._double_a.digest.digest(),
                    self._commitment,
                ]
            ),
        )
        self._finish = MutualFinish(statement, self.signing_key.sign(statement.encode()).signature)
        self.state = State.FINISHED
        return self._finish

    @_step
    def complete(self, responder_signature: bytes) -> MutualResult:
        """Check the responder's countersignature; the result both sides now hold."""
        self._expect(State.FINISHED)
        assert self._finish is not None
        require_size(responder_signature, SIGNATURE_SIZE, "countersignature")
        receipt = MutualReceipt(self._finish.statement, self._finish.signature, responder_signature)
        receipt.verify(proposer_key=self.signing_key.verify_key, responder_key=self.responder_key)
        self.state = State.DONE
        return MutualResult(receipt, own_cells=len(self.cells))


class ResponderMutual(_Session):
    """The side that answers a mutual check over its current epoch's protected cells."""

    role = "responder"

    def __init__(
        self,
        *,
        descriptor: SignedDescriptor,
        signing_key: SigningKey,
        proposer: str,
        proposer_key: VerifyKey,
        cells: Iterable[int],
        rng: RandomBytes,
        mapper: Mapper = map,
        chunk_elements: int = CHUNK_ELEMENTS,
        key: bytes | None = None,
        points: Mapping[int, bytes] | None = None,
    ) -> None:
        super().__init__(
            descriptor=descriptor,
            proposer=proposer,
            cells=cells,
            rng=rng,
            mapper=mapper,
            chunk_elements=chunk_elements,
            key=key,
            points=points,
        )
        self.signing_key = signing_key
        self.proposer_key = proposer_key
        self.responder_set_size = self.own_set_size
        self._proposer_set: InboundSet | None = None
        self._doubles: list[bytes] = []
        self._double_a: list[bytes] = []
        self._double_a_digest = b""
        self._commitment = b""
        self._double_b: InboundSet | None = None
        self._last_double = b""
        self._revealed: set[bytes] = set()

    def release(self) -> None:
        super().release()
        self._proposer_set = None
        self._doubles = []
        self._double_a = []
        self._double_b = None
        self._revealed = set()

    @_step
    def receive_start(self, start: MutualStart, *, now: float) -> MutualAccept:
        """Validate the opening (no group work yet); the server charges before answering."""
        self._expect(State.IDLE)
        check_start(start, self.descriptor, now=now)
        self.session_id = start.session_id
        self.proposer_epoch_id = start.proposer_epoch_id
        self.proposer_set_size = start.proposer_set_size
        self._proposer_set = InboundSet(
            "proposer", "the proposer's set", start.proposer_set_size, self.session_id
        )
        self._draw_key()
        self.state = State.EXCHANGING
        return MutualAccept(self.session_id, self.responder_set_size)

    def own_chunks(self) -> Iterator[ElementChunk]:
        """B1, the responder's blinded set, computed chunk by chunk as it is iterated."""
        return self._own_chunks("responder")

    @property
    def proposer_set_complete(self) -> bool:
        return self._proposer_set is not None and self._proposer_set.complete

    @_step
    def receive_proposer_chunk(self, chunk: ElementChunk) -> None:
        """One chunk of A1: validate (libsodium refuses bad encodings) and blind with b."""
        self._expect(State.EXCHANGING)
        assert self._proposer_set is not None
        self._proposer_set.admit(chunk)
        self._doubles.extend(self._blind_received(chunk, "the proposer's set"))
        self._proposer_set.record(chunk.elements)

    @_step
    def receive_commitment(self, commitment: MutualCommitment) -> None:
        self._expect(State.EXCHANGING)
        assert self._proposer_set is not None
        if not self._proposer_set.complete:
            raise RemoteProtocolError(
                f"the commitment came after {self._proposer_set.received} of the "
                f"{self._proposer_set.expected} elements of the proposer's set"
            )
        if not self.own_set_sent:
            raise LocalProtocolError("the responder's own set is not sent yet")
        self._commitment = commitment.digest
        self.state = State.COMMITTED

    @_step
    def answer(self) -> list[ElementChunk]:
        """D_A: the proposer's elements double-blinded, sorted, in chunks."""
        self._expect(State.COMMITTED)
        self._double_a = sorted_distinct(self._doubles, "the proposer's set")
        self._doubles = []
        digest = SetDigest("proposer-double", self.session_id)
        digest.add(self._double_a)
        self._double_a_digest = digest.digest()
        self._double_b = InboundSet(
            "responder-double",
            "the double-blinded responder set",
            self.responder_set_size,
            self.session_id,
        )
        self.state = State.ANSWERED
        return split_chunks(self._double_a, self.chunk_elements)

    @property
    def reveal_complete(self) -> bool:
        return self._double_b is not None and self._double_b.complete

    @_step
    def receive_reveal_chunk(self, chunk: ElementChunk) -> None:
        """One chunk of D_B; once complete it must match the commitment, then we count."""
        self._expect(State.ANSWERED)
        assert self._double_b is not None
        what = "the double-blinded responder set"
        self._double_b.admit(chunk)
        checked_batched(self.mapper, validate_batch, chunk, what)
        self._last_double = require_ascending(self._last_double, chunk.elements, what)
        self._revealed.update(chunk.elements)
        self._double_b.record(chunk.elements)
        if self._double_b.complete:
            if self._double_b.digest.digest() != self._commitment:
                raise VerificationError("the proposer revealed a set it had not committed to")
            self.shared_cells = len(self._revealed.intersection(self._double_a))
            self.state = State.REVEALED

    @_step
    def countersign(self, finish: MutualFinish, *, now: float, max_skew: float) -> MutualReceipt:
        """Check the proposer's statement against our own view, then sign it too.

        The statement's time is the proposer's word: one dated more than
        ``max_skew`` seconds from ``now`` (this node's clock), either way, is refused.
        """
        self._expect(State.REVEALED)
        assert self._proposer_set is not None
        assert self._own_digest is not None
        claimed = finish.statement
        expected = self._statement(
            issued_at=claimed.issued_at,
            transcript_hash=self._transcript_hash(
                [
                    self._proposer_set.digest.digest(),
                    self._own_digest.digest(),
                    self._double_a_digest,
                    self._commitment,
                ]
            ),
        )
        if claimed.shared_cells != expected.shared_cells:
            raise VerificationError(
                f"the proposer claims {claimed.shared_cells} shared cells; "
                f"the sets share {expected.shared_cells}"
            )
        if claimed != expected:
            raise VerificationError("the mutual statement does not match this session")
        verify_statement_signature(
            self.proposer_key, claimed.encode(), finish.signature, "proposer"
        )
        check_skew("the proposer's statement", claimed.issued_at, now=now, max_skew=max_skew)
        signature = self.signing_key.sign(claimed.encode()).signature
        self.state = State.DONE
        return MutualReceipt(claimed, finish.signature, signature)
