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

from hexpsi.protocol.budget import query_area_km2, query_volume_km2h
from hexpsi.protocol.check.messages import (
    ElementGroup,
    EvaluatedGroup,
    GroupKey,
    Query,
    Receipt,
    Response,
    group_key,
    transcript_hash,
)
from hexpsi.protocol.check.pieces import Piece, timed_parts
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
from hexpsi.protocol.epoch.descriptor import Descriptor, SignedDescriptor, snapshot_params
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
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.protocol.spacetime.tokens import TimedGroup, timed_token_bytes
from hexpsi.protocol.spacetime.tree import Node

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
    """One real query position: its token cell, group, index in the group and blind;
    for a timed token also its time node and the window part it asks for."""

    cell: int
    resolution: int
    index: int
    blind: bytes
    level: int | None = None
    node_index: int = 0
    part: int = -1
    """Which of the piece's timed parts the token belongs to (-1: standing)."""

    @property
    def node(self) -> Node:
        return (self.level or 0, self.node_index)

    def token(self) -> bytes:
        """The OPRF input: a standing cell token or a space-time token."""
        if self.level is None:
            return token_bytes(self.cell)
        return timed_token_bytes(self.cell, self.node)

    @property
    def group(self) -> GroupKey:
        return group_key(self.resolution, self.level)


@dataclass(frozen=True, slots=True)
class TimedHit:
    """Strike cells that meet a timed position during one time node of their window."""

    window: Interval | None
    """The window asked (None: the whole horizon)."""
    interval: Interval
    """When: the time node's span, inside the window rounded outward to slots."""
    cells: frozenset[int]


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
    standing_cells: frozenset[int] = frozenset()
    """Strike cells that meet a standing position (at any time of their window)."""
    timed_hits: tuple[TimedHit, ...] = ()


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
        piece: Piece | None = None,
    ) -> None:
        """``piece`` (default: the whole strike, asked over the whole horizon too when
        the epoch has a time tree) is what this check sends; a zone too large for
        one check, or with windows, is planned by
        :func:`hexpsi.protocol.check.pieces.plan_pieces`."""
        self.descriptor = descriptor
        self.responder_key = responder_key
        self.snapshot = snapshot
        self.proposer = proposer
        self.rng = rng
        self.mapper = mapper
        d = descriptor.descriptor
        self.strike_cells = frozenset(strike_cells)
        if piece is None:
            standing = query_tokens(self.strike_cells, res=d.res, res_min=d.res_min)
            piece = Piece(
                {r: sorted(cells) for r, cells in standing.items() if cells},
                timed_parts({None: self.strike_cells}, d),
            )
        self.piece = piece
        self.tokens = {r: set(cells) for r, cells in piece.standing.items() if cells}
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
        plan = plan_query(self.tokens, self.piece.timed_sizes(d.time_tree))
        check_fits(plan, max_query_tokens=d.max_query_tokens, node=d.node)
        groups = [
            self._group(
                group.resolution, None, [(c, 0, -1) for c in sorted(self.tokens[r])], group.padded
            )
            for group in plan.groups
            for r in (group.resolution,)
        ]
        timed = [
            self._group(r, level, entries, plan.timed[r, level])
            for (r, level), entries in sorted(self._timed_entries().items())
        ]
        return Query(self.rng(SESSION_ID_SIZE), self.descriptor.digest, tuple(groups), tuple(timed))

    def _timed_entries(self) -> dict[TimedGroup, list[tuple[int, int, int]]]:
        """Each timed group's real tokens as (cell, node index, part), in a fixed order."""
        tree = self.descriptor.descriptor.time_tree
        entries: dict[TimedGroup, list[tuple[int, int, int]]] = {}
        if tree is None:
            return entries
        for number, part in enumerate(self.piece.timed):
            padded = part.padded_levels(tree)
            cover = part.cover(tree)
            for r, cells in part.tokens.items():
                for level in padded:
                    group = entries.setdefault((r, level), [])
                    group.extend(
                        (cell, index, number)
                        for cell in cells
                        for node_level, index in cover
                        if node_level == level
                    )
        return entries

    def _group(
        self, resolution: int, level: int | None, real: list[tuple[int, int, int]], padded: int
    ) -> ElementGroup:
        """Blind the group's real tokens, pad with dummies to ``padded``, shuffle."""
        tokens = [
            QueryToken(cell, resolution, 0, b"", level, index, part) for cell, index, part in real
        ]
        blinds, blinded = blind([t.token() for t in tokens], MODE, self.rng, mapper=self.mapper)
        slots: list[tuple[bytes, int | None]] = [(b, i) for i, b in enumerate(blinded)]
        slots += [(self._dummy(), None) for _ in range(padded - len(tokens))]
        shuffle_in_place(slots, self.rng)
        for position, (_, real_index) in enumerate(slots):
            if real_index is not None:
                token = tokens[real_index]
                self.positions.append(
                    QueryToken(
                        token.cell,
                        resolution,
                        position,
                        blinds[real_index],
                        level,
                        token.node_index,
                        token.part,
                    )
                )
        return ElementGroup(resolution, tuple(element for element, _ in slots), level)

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
        evaluated = {group.key: group.elements for group in response.all_groups}
        outputs = finalize(
            [p.token() for p in self.positions],
            [p.blind for p in self.positions],
            [evaluated[p.group][p.index] for p in self.positions],
            MODE,
            mapper=self.mapper,
        )
        bits = snapshot_bits(self.descriptor)
        self.values = [truncate_output(output, bits) for output in outputs]
        hit_positions = [
            p
            for p, value in zip(self.positions, self.values, strict=True)
            if self.snapshot.contains(value)
        ]
        standing = frozenset(p.cell for p in hit_positions if p.level is None)
        standing_cells = self._inside(standing, self.strike_cells)
        timed_hits = self._timed_hits([p for p in hit_positions if p.level is not None])
        hits = frozenset(p.cell for p in hit_positions)
        return CheckResult(
            responder=d.node,
            epoch_id=d.epoch_id,
            conflict=bool(hits),
            conflicting_tokens=hits,
            conflicting_cells=standing_cells.union(*(hit.cells for hit in timed_hits)),
            tokens_sent=len(self.positions),
            elements_sent=self.query.element_count if self.query else 0,
            receipt=response.receipt,
            standing_cells=standing_cells,
            timed_hits=timed_hits,
        )

    def _inside(self, tokens: Iterable[int], cells: frozenset[int]) -> frozenset[int]:
        res = self.descriptor.descriptor.res
        return frozenset(
            cell for token in tokens for cell in cells_inside(token, res=res) if cell in cells
        )

    def _timed_hits(self, positions: list[QueryToken]) -> tuple[TimedHit, ...]:
        tree = self.descriptor.descriptor.time_tree
        if tree is None or not positions:
            return ()
        by_node: dict[tuple[int, Node], set[int]] = {}
        for p in positions:
            part = self.piece.timed[p.part]
            by_node.setdefault((p.part, p.node), set()).update(self._inside([p.cell], part.cells))
        return tuple(
            TimedHit(self.piece.timed[number].window, tree.node_interval(node), frozenset(cells))
            for (number, node), cells in sorted(by_node.items())
            if cells
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
    if [g.key for g in response.all_groups] != [g.key for g in query.all_groups]:
        raise VerificationError("response groups do not match the query")
    for sent in query.all_groups:
        if group_public_key(d, sent) is None or not 1 <= len(sent.elements) <= MAX_BATCH:
            raise VerificationError("the query holds a group this epoch cannot have evaluated")
    for sent, got in zip(query.all_groups, response.all_groups, strict=True):
        if len(sent.elements) != len(got.elements):
            raise VerificationError("response group sizes do not match the query")
        public = group_public_key(d, sent)
        assert public is not None
        # verify_proof validates every evaluated element as it multiplies it.
        verify_proof(public, sent.elements, got.elements, got.proof, MODE, mapper=mapper)
    receipt = response.receipt
    expected_hash = transcript_hash(
        descriptor_digest=descriptor.digest,
        proposer=proposer,
        query=query,
        groups=response.groups,
        timed_groups=response.timed_groups,
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
    expected_volume = query_volume(query, d)
    if not math.isclose(receipt.volume_km2h, expected_volume, rel_tol=1e-9, abs_tol=0.0):
        raise VerificationError(
            f"receipt charges {receipt.volume_km2h} km²·h but the query spans "
            f"{expected_volume} km²·h"
        )


def group_public_key(d: Descriptor, group: ElementGroup) -> bytes | None:
    """The public key a group is evaluated under, or None if the epoch has no such group."""
    if group.level is None:
        return d.public_keys.get(group.resolution)
    return d.timed_public_keys.get((group.resolution, group.level))


def query_volume(query: Query, d: Descriptor) -> float:
    """The space-time volume a query's timed groups are charged (0 without any)."""
    if not query.timed_groups or d.time_tree is None:
        return 0.0
    return query_volume_km2h(query.timed_sizes(), d.res, d.time_tree.level_hours)


def _check_standing_groups(query: Query, d: Descriptor) -> None:
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


def _check_timed_groups(query: Query, d: Descriptor) -> None:
    for group in query.timed_groups:
        where = f"timed group at resolution {group.resolution}, level {group.level}"
        if group_public_key(d, group) is None:
            raise RemoteProtocolError(
                f"{where} is not one this epoch has (see its descriptor's time tree)"
            )
        size = len(group.elements)
        if not 1 <= size <= MAX_BATCH:
            raise RemoteProtocolError(
                f"{where} holds {size} elements; one proof covers 1..{MAX_BATCH}"
            )


@dataclass(frozen=True, slots=True)
class Assessment:
    """A validated query: what it costs, before any group operation is spent on it."""

    area_km2: float
    group_sizes: Mapping[int, int]
    volume_km2h: float = 0.0
    """Space-time volume of the timed groups (km²·h), charged against its own budget."""


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
        timed_keys: Mapping[TimedGroup, KeyPair] | None = None,
    ) -> None:
        self.descriptor = descriptor
        self.keys = keys
        self.timed_keys = timed_keys or {}
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
        _check_standing_groups(query, d)
        _check_timed_groups(query, d)
        for group in query.all_groups:
            validate_elements(group.elements, mapper=self.mapper)
        sizes = query.group_sizes()
        return Assessment(
            area_km2=query_area_km2(sizes, d.res),
            group_sizes=sizes,
            volume_km2h=query_volume(query, d),
        )

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
        evaluated_groups = tuple(self._evaluate(group) for group in query.groups)
        timed_groups = tuple(self._evaluate(group) for group in query.timed_groups)
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
                timed_groups=timed_groups,
            ),
            volume_km2h=assessment.volume_km2h,
        ).signed(self.signing_key)
        return Response(query.session_id, evaluated_groups, receipt, timed_groups)

    def _evaluate(self, group: ElementGroup) -> EvaluatedGroup:
        if group.level is None:
            key = self.keys[group.resolution]
        else:
            key = self.timed_keys[group.resolution, group.level]
        evaluated = blind_evaluate(key, group.elements, mapper=self.mapper)
        proof = generate_proof(key, group.elements, evaluated, MODE, self.rng, mapper=self.mapper)
        return EvaluatedGroup(group.resolution, tuple(evaluated), proof, group.level)
