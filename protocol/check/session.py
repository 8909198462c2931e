"""The check as two sans-IO state machines: proposer and responder.

The proposer turns its strike cover into tokens, blinds them, pads every
resolution group with random elements up to a size bucket and sends a
:class:`Query`. The responder validates every element, the epoch and the group
sizes, says what area the query costs (the server charges it), evaluates under
each resolution's key, proves each group with a batched DLEQ proof and signs a
receipt over the transcript. The proposer verifies proofs, receipt and
transcript, and that the receipt is dated within the allowed skew of its own
clock, before it unblinds anything, then tests membership in the snapshot and
maps hits back to its own strike cells.

Any error parks a session in ``ERROR``; a session is used once.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from nacl.signing import SigningKey, VerifyKey

from hexpsi.protocol.budget import query_area_km2
from hexpsi.protocol.check.messages import (
    ElementGroup,
    EvaluatedGroup,
    Query,
    Receipt,
    Response,
    transcript_hash,
)
from hexpsi.protocol.check.plan import QUERY_BUCKET_MINIMUM, check_fits, plan_query
from hexpsi.protocol.clock import check_skew
from hexpsi.protocol.crypto.group import hash_to_group, validate_elements
from hexpsi.protocol.crypto.oprf import (
    MAX_BATCH,
    KeyPair,
    Mode,
    blind,
    blind_evaluate,
    finalize,
    generate_proof,
    verify_proof,
)
from hexpsi.protocol.epoch.descriptor import SignedDescriptor, snapshot_params
from hexpsi.protocol.errors import (
    HexpsiError,
    LocalProtocolError,
    RemoteProtocolError,
    StaleError,
    VerificationError,
)
from hexpsi.protocol.geo.tokens import cells_inside, query_tokens, token_bytes
from hexpsi.protocol.limits import SESSION_ID_SIZE
from hexpsi.protocol.padding import size_bucket
from hexpsi.protocol.parallel import Mapper
from hexpsi.protocol.randomness import RandomBytes, shuffle_in_place
from hexpsi.protocol.snapshot.build import truncate_output
from hexpsi.protocol.snapshot.gcs import Opening

DUMMY_LABEL = b"hexpsi/v1/dummy-element"
MODE = Mode.VOPRF


class SnapshotView(Protocol):
    """What the proposer needs from a verified snapshot: membership, and proof of it."""

    def contains(self, value: int) -> bool: ...

    def open(self, value: int) -> Opening: ...


class State(enum.Enum):
    IDLE = "idle"
    SENT = "sent"
    RECEIVED = "received"
    DONE = "done"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class QueryToken:
    """One real query position: its token cell, group, index in the group and blind."""

    cell: int
    resolution: int
    index: int
    blind: bytes


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What the proposer learns: whether, how many tokens and which of its own cells."""

    responder: str
    epoch_id: bytes
    conflict: bool
    conflicting_tokens: frozenset[int]
    conflicting_cells: frozenset[int]
    tokens_sent: int
    elements_sent: int
    receipt: Receipt


class ProposerCheck:
    """Proposer side of one check against one epoch of one responder."""

    def __init__(
        self,
        *,
        descriptor: SignedDescriptor,
        responder_key: VerifyKey,
        snapshot: SnapshotView,
        proposer: str,
        strike_cells: Iterable[int],
        rng: RandomBytes,
        mapper: Mapper = map,
        tokens: Mapping[int, Iterable[int]] | None = None,
    ) -> None:
        """``tokens`` (default: all of the strike's) is the part of the strike's query
        tokens this check sends, when a zone too large for one check is split
        (:func:`hexpsi.protocol.check.plan.split_tokens`)."""
        self.descriptor = descriptor
        self.responder_key = responder_key
        self.snapshot = snapshot
        self.proposer = proposer
        self.rng = rng
        self.mapper = mapper
        d = descriptor.descriptor
        self.strike_cells = frozenset(strike_cells)
        if tokens is None:
            self.tokens = query_tokens(self.strike_cells, res=d.res, res_min=d.res_min)
        else:
            self.tokens = {r: set(cells) for r, cells in tokens.items() if cells}
        self.state = State.IDLE
        self.positions: list[QueryToken] = []
        self.query: Query | None = None
        self.response: Response | None = None
        self.result: CheckResult | None = None
        self.values: list[int] = []

    def start(self) -> Query:
        """Blind and pad the strike tokens; returns the query to send."""
        self._expect(State.IDLE)
        try:
            self.query = self._start()
        except HexpsiError:
            self.state = State.ERROR
            raise
        self.state = State.SENT
        return self.query

    def _start(self) -> Query:
        d = self.descriptor.descriptor
        if not self.tokens:
            raise LocalProtocolError("the strike zone covers no cells; nothing to check")
        groups: list[ElementGroup] = []
        plan = plan_query(self.tokens)
        check_fits(plan, max_query_tokens=d.max_query_tokens, node=d.node)
        for group in plan.groups:
            resolution = group.resolution
            cells = sorted(self.tokens[resolution])
            blinds, blinded = blind(
                [token_bytes(c) for c in cells], MODE, self.rng, mapper=self.mapper
            )
            slots: list[tuple[bytes, int | None]] = [(b, i) for i, b in enumerate(blinded)]
            slots += [(self._dummy(), None) for _ in range(group.padded - len(cells))]
            shuffle_in_place(slots, self.rng)
            for index, (_, real) in enumerate(slots):
                if real is not None:
                    self.positions.append(QueryToken(cells[real], resolution, index, blinds[real]))
            groups.append(ElementGroup(resolution, tuple(element for element, _ in slots)))
        return Query(self.rng(SESSION_ID_SIZE), self.descriptor.digest, tuple(groups))

    def _dummy(self) -> bytes:
        return hash_to_group(self.rng(32), DUMMY_LABEL)

    def finish(self, response: Response, *, now: float, max_skew: float) -> CheckResult:
        """Verify everything about the response, then unblind and test membership.

        ``now`` is when the response arrived, by this node's clock: a receipt dated
        more than ``max_skew`` seconds from it, either way, is refused before any
        result exists (see :mod:`hexpsi.protocol.clock`).
        """
        self._expect(State.SENT)
        try:
            self.result = self._finish(response, now, max_skew)
        except HexpsiError:
            self.state = State.ERROR
            raise
        self.response = response
        self.state = State.DONE
        return self.result

    def _finish(self, response: Response, now: float, max_skew: float) -> CheckResult:
        assert self.query is not None
        d = self.descriptor.descriptor
        verify_response(
            descriptor=self.descriptor,
            responder_key=self.responder_key,
            proposer=self.proposer,
            query=self.query,
            response=response,
            mapper=self.mapper,
        )
        # verify_response judges the receipt as a later verifier would (within the
        # epoch); only the proposer, now, can tell whether its time is the real one.
        check_skew("receipt", response.receipt.issued_at, now=now, max_skew=max_skew)
        evaluated = {group.resolution: group.elements for group in response.groups}
        outputs = finalize(
            [token_bytes(p.cell) for p in self.positions],
            [p.blind for p in self.positions],
            [evaluated[p.resolution][p.index] for p in self.positions],
            MODE,
            mapper=self.mapper,
        )
        bits = snapshot_bits(self.descriptor)
        self.values = [truncate_output(output, bits) for output in outputs]
        hits = frozenset(
            p.cell
            for p, value in zip(self.positions, self.values, strict=True)
            if self.snapshot.contains(value)
        )
        cells = frozenset(
            cell
            for token in hits
            for cell in cells_inside(token, res=d.res)
            if cell in self.strike_cells
        )
        return CheckResult(
            responder=d.node,
            epoch_id=d.epoch_id,
            conflict=bool(hits),
            conflicting_tokens=hits,
            conflicting_cells=cells,
            tokens_sent=len(self.positions),
            elements_sent=self.query.element_count if self.query else 0,
            receipt=response.receipt,
        )

    def _expect(self, state: State) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"proposer check is {self.state.value}, not {state.value}")


def snapshot_bits(descriptor: SignedDescriptor) -> int:
    """λ, the truncation length the snapshot was built with."""
    return snapshot_params(descriptor.descriptor).bits


def verify_response(
    *,
    descriptor: SignedDescriptor,
    responder_key: VerifyKey,
    proposer: str,
    query: Query,
    response: Response,
    mapper: Mapper = map,
) -> None:
    """Everything a proposer (or a later verifier) checks before trusting evaluations.

    ``mapper`` spreads the proof composites over threads (see hexpsi.protocol.crypto.Mapper).
    """
    d = descriptor.descriptor
    if response.session_id != query.session_id:
        raise VerificationError("response belongs to another session")
    if [g.resolution for g in response.groups] != [g.resolution for g in query.groups]:
        raise VerificationError("response groups do not match the query")
    for sent in query.groups:
        if sent.resolution not in d.public_keys or not 1 <= len(sent.elements) <= MAX_BATCH:
            raise VerificationError("the query holds a group this epoch cannot have evaluated")
    for sent, got in zip(query.groups, response.groups, strict=True):
        if len(sent.elements) != len(got.elements):
            raise VerificationError("response group sizes do not match the query")
        # verify_proof validates every evaluated element as it multiplies it.
        verify_proof(
            d.public_keys[got.resolution],
            sent.elements,
            got.elements,
            got.proof,
            MODE,
            mapper=mapper,
        )
    receipt = response.receipt
    expected_hash = transcript_hash(
        descriptor_digest=descriptor.digest, proposer=proposer, query=query, groups=response.groups
    )
    receipt.verify(responder_key)
    if (
        receipt.transcript_hash != expected_hash
        or receipt.responder != d.node
        or receipt.proposer != proposer
        or receipt.epoch_id != d.epoch_id
        or receipt.session_id != query.session_id
    ):
        raise VerificationError("receipt does not match this check's transcript")
    if not d.created_at <= receipt.issued_at <= d.valid_until:
        raise VerificationError("the receipt was issued outside the epoch's validity")
    expected_area = query_area_km2(query.group_sizes(), d.res)
    if not math.isclose(receipt.area_km2, expected_area, rel_tol=1e-9):
        raise VerificationError(
            f"receipt charges {receipt.area_km2} km² but the query covers {expected_area} km²"
        )


@dataclass(frozen=True, slots=True)
class Assessment:
    """A validated query: what it costs, before any group operation is spent on it."""

    area_km2: float
    group_sizes: Mapping[int, int]


class ResponderCheck:
    """Responder side of one check, for one proposer, under the current epoch."""

    def __init__(
        self,
        *,
        descriptor: SignedDescriptor,
        keys: Mapping[int, KeyPair],
        signing_key: SigningKey,
        proposer: str,
        rng: RandomBytes,
        mapper: Mapper = map,
    ) -> None:
        self.descriptor = descriptor
        self.keys = keys
        self.signing_key = signing_key
        self.proposer = proposer
        self.rng = rng
        self.mapper = mapper
        self.state = State.IDLE
        self.query: Query | None = None
        self.assessment: Assessment | None = None

    def receive(self, query: Query, *, now: float) -> Assessment:
        """Validate the query completely; raises with a status hint on anything wrong."""
        if self.state is not State.IDLE:
            raise LocalProtocolError(f"responder check is {self.state.value}, not idle")
        try:
            self.assessment = self._assess(query, now)
        except HexpsiError:
            self.state = State.ERROR
            raise
        self.query = query
        self.state = State.RECEIVED
        return self.assessment

    def _assess(self, query: Query, now: float) -> Assessment:
        d = self.descriptor.descriptor
        if query.descriptor_digest != self.descriptor.digest:
            raise StaleError(
                "query is for another epoch descriptor; fetch the current descriptor and retry"
            )
        if now > d.valid_until:
            raise StaleError("this epoch has expired; fetch the new descriptor and retry")
        if not query.groups:
            raise RemoteProtocolError("query holds no elements")
        total = query.element_count
        if total > d.max_query_tokens:
            raise RemoteProtocolError(
                f"query holds {total} elements; at most {d.max_query_tokens} are accepted",
            )
        for group in query.groups:
            if not d.res_min <= group.resolution <= d.res:
                raise RemoteProtocolError(
                    f"group resolution {group.resolution} is outside {d.res_min}..{d.res}"
                )
            size = len(group.elements)
            if size == 0 or size_bucket(size, minimum=QUERY_BUCKET_MINIMUM) != size:
                raise RemoteProtocolError(
                    f"group at resolution {group.resolution} holds {size} elements, which is not "
                    "a padding bucket size"
                )
            if size > MAX_BATCH:
                raise RemoteProtocolError(
                    f"group at resolution {group.resolution} holds {size} elements; one proof "
                    f"covers at most {MAX_BATCH}"
                )
        for group in query.groups:
            validate_elements(group.elements, mapper=self.mapper)
        sizes = query.group_sizes()
        return Assessment(area_km2=query_area_km2(sizes, d.res), group_sizes=sizes)

    def respond(self, *, now: float) -> Response:
        """Evaluate, prove and sign; call after the server has charged the assessment."""
        if self.state is not State.RECEIVED or self.query is None or self.assessment is None:
            raise LocalProtocolError(f"responder check is {self.state.value}, not received")
        try:
            response = self._respond(self.query, self.assessment, now)
        except HexpsiError:
            self.state = State.ERROR
            raise
        self.state = State.DONE
        return response

    def _respond(self, query: Query, assessment: Assessment, now: float) -> Response:
        d = self.descriptor.descriptor
        if now > d.valid_until:
            # A receipt signed after the epoch ended would not hold up as evidence.
            raise StaleError("this epoch expired before the answer; fetch the new descriptor")
        groups = []
        for group in query.groups:
            key = self.keys[group.resolution]
            evaluated = blind_evaluate(key, group.elements, mapper=self.mapper)
            proof = generate_proof(
                key, group.elements, evaluated, MODE, self.rng, mapper=self.mapper
            )
            groups.append(EvaluatedGroup(group.resolution, tuple(evaluated), proof))
        evaluated_groups = tuple(groups)
        receipt = Receipt(
            responder=d.node,
            proposer=self.proposer,
            epoch_id=d.epoch_id,
            session_id=query.session_id,
            issued_at=now,
            area_km2=assessment.area_km2,
            transcript_hash=transcript_hash(
                descriptor_digest=self.descriptor.digest,
                proposer=self.proposer,
                query=query,
                groups=evaluated_groups,
            ),
        ).signed(self.signing_key)
        return Response(query.session_id, evaluated_groups, receipt)
