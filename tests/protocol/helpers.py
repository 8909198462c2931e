"""An in-memory check: a responder epoch and a proposer talking through bytes, no network.

Like h11's ``ConnectionPair``: :func:`make_responder` builds an epoch from
protected cells with a deterministic random source and keeps its snapshot blocks;
:class:`CheckPair` runs a :class:`ProposerCheck` against a :class:`ResponderCheck`,
passing every message through its canonical encoding as the server would.
:func:`expected_outcome` is the ground truth the hierarchy implies, computed
from plain cell sets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from nacl.signing import SigningKey, VerifyKey

from hexpsi.protocol.budget import query_area_km2
from hexpsi.protocol.check.messages import EvaluatedGroup, Query, Receipt, Response, transcript_hash
from hexpsi.protocol.check.session import CheckResult, ProposerCheck, ResponderCheck
from hexpsi.protocol.crypto.oprf import KeyPair, Mode, blind_evaluate, generate_proof
from hexpsi.protocol.epoch.descriptor import SignedDescriptor, snapshot_params
from hexpsi.protocol.epoch.start import Epoch, start_epoch
from hexpsi.protocol.geo.tokens import cells_inside, query_tokens
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS
from hexpsi.protocol.snapshot.gcs import GcsParams, SnapshotReader, decode_block

NOW = 1_750_000_000.0
VALIDITY = 3600.0
RESPONDER = "coalition"
PROPOSER = "russia"


class DeterministicRng:
    """``rng(n)``: a reproducible byte stream (SHAKE-256 of a seed and a call counter)."""

    def __init__(self, seed: bytes | str) -> None:
        self._seed = seed.encode() if isinstance(seed, str) else seed
        self._calls = 0

    def __call__(self, n: int) -> bytes:
        self._calls += 1
        return hashlib.shake_256(self._seed + self._calls.to_bytes(8, "big")).digest(n)


def signing_key(name: str) -> SigningKey:
    return SigningKey(hashlib.sha256(b"signing key of " + name.encode()).digest())


@dataclass
class ResponderNode:
    """One responder epoch with what a server would keep: blocks, keys and signing key."""

    epoch: Epoch
    blocks: list[bytes]
    signing_key: SigningKey
    protected: frozenset[int]
    rng: DeterministicRng

    @property
    def descriptor(self) -> SignedDescriptor:
        return self.epoch.descriptor

    @property
    def verify_key(self) -> VerifyKey:
        return self.signing_key.verify_key

    @property
    def params(self) -> GcsParams:
        return snapshot_params(self.descriptor.descriptor)

    def reader(self) -> SnapshotReader:
        """A proposer's verified view of the snapshot, downloaded in two chunks."""
        reader = SnapshotReader(self.params, self.blocks.__getitem__)
        half = len(self.blocks) // 2
        reader.add_chunk(0, self.blocks[:half])
        reader.add_chunk(half, self.blocks[half:])
        reader.finish(self.descriptor.descriptor.snapshot_root)
        return reader

    def snapshot_values(self) -> set[int]:
        """Every value of the committed snapshot (real and padding)."""
        values: set[int] = set()
        for index, block in enumerate(self.blocks):
            values.update(decode_block(block, self.params, index))
        return values

    def responder_check(
        self, proposer: str = PROPOSER, seed: bytes = b"responder"
    ) -> ResponderCheck:
        return ResponderCheck(
            descriptor=self.descriptor,
            keys=self.epoch.keys,
            signing_key=self.signing_key,
            proposer=proposer,
            rng=DeterministicRng(seed),
        )


def make_responder(
    protected: Iterable[int],
    *,
    res: int,
    res_min: int,
    seed: bytes = b"epoch",
    node: str = RESPONDER,
    sequence: int = 1,
    now: float = NOW,
    validity_seconds: float = VALIDITY,
    max_query_tokens: int = 4096,
    output_policy: str = "cells",
    master_secret: bytes = b"m" * 32,
    key: SigningKey | None = None,
) -> ResponderNode:
    """Start an epoch over ``protected`` (cells at ``res``) with a seeded random source."""
    protected = frozenset(protected)
    blocks: list[bytes] = []
    rng = DeterministicRng(seed)
    key = key or signing_key(node)
    epoch = start_epoch(
        node=node,
        sequence=sequence,
        master_secret=master_secret,
        signing_key=key,
        protected_cells=protected,
        res=res,
        res_min=res_min,
        now=now,
        validity_seconds=validity_seconds,
        max_query_tokens=max_query_tokens,
        rng=rng,
        sink=blocks.append,
        output_policy=output_policy,
    )
    return ResponderNode(epoch, blocks, key, protected, rng)


@dataclass
class CheckPair:
    """A proposer and a responder session wired together in memory."""

    node: ResponderNode
    strike: frozenset[int]
    proposer_name: str = PROPOSER
    seed: bytes = b"proposer"
    proposer: ProposerCheck = field(init=False)
    responder: ResponderCheck = field(init=False)

    def __post_init__(self) -> None:
        self.proposer = ProposerCheck(
            descriptor=self.node.descriptor,
            responder_key=self.node.verify_key,
            snapshot=self.node.reader(),
            proposer=self.proposer_name,
            strike_cells=self.strike,
            rng=DeterministicRng(self.seed),
        )
        self.responder = self.node.responder_check(self.proposer_name, self.seed + b"/responder")

    def query(self) -> Query:
        """The proposer's query as the responder receives it (through its encoding)."""
        return Query.decode(self.proposer.start().encode())

    def respond(self, query: Query, *, now: float = NOW) -> Response:
        """The responder's answer as the proposer receives it (through its encoding)."""
        self.responder.receive(query, now=now)
        return Response.decode(self.responder.respond(now=now).encode())

    def finish(
        self, response: Response, *, now: float = NOW, max_skew: float = CLOCK_SKEW_SECONDS
    ) -> CheckResult:
        """The proposer's verdict on ``response``, judged at ``now`` by its clock."""
        return self.proposer.finish(response, now=now, max_skew=max_skew)

    def run(self, *, now: float = NOW) -> CheckResult:
        return self.finish(self.respond(self.query(), now=now), now=now)


def run_check(
    node: ResponderNode, strike: Iterable[int], *, seed: bytes = b"proposer"
) -> CheckResult:
    return CheckPair(node, frozenset(strike), seed=seed).run()


@dataclass(frozen=True)
class Outcome:
    """What an honest check must report, derived from cell sets alone."""

    conflict: bool
    conflicting_tokens: frozenset[int]
    conflicting_cells: frozenset[int]


def expected_outcome(
    protected: Iterable[int], strike: Iterable[int], *, res: int, res_min: int
) -> Outcome:
    """The hits the hierarchy implies: query tokens with a protected cell inside them."""
    protected = frozenset(protected)
    tokens = query_tokens(strike, res=res, res_min=res_min)
    hits = frozenset(
        token
        for group in tokens.values()
        for token in group
        if cells_inside(token, res=res) & protected
    )
    cells = frozenset(cell for token in hits for cell in cells_inside(token, res=res))
    return Outcome(bool(hits), hits, cells)


def forged_response(
    node: ResponderNode,
    query: Query,
    *,
    proposer: str = PROPOSER,
    evaluate: Callable[[int, Sequence[bytes]], tuple[list[bytes], KeyPair]] | None = None,
    area_km2: float | None = None,
    issued_at: float = NOW,
    receipt_key: SigningKey | None = None,
    rng_seed: bytes = b"forger",
) -> Response:
    """A response built by a cheating responder that still signs a matching receipt.

    ``evaluate(resolution, elements)`` returns the evaluations it sends and the key it
    proves them with; by default the honest key. The receipt is signed over the
    real transcript, so only the part under test is wrong.
    """
    rng = DeterministicRng(rng_seed)
    keys: Mapping[int, KeyPair] = node.epoch.keys
    groups = []
    for group in query.groups:
        if evaluate is None:
            key = keys[group.resolution]
            evaluated = blind_evaluate(key, group.elements)
        else:
            evaluated, key = evaluate(group.resolution, group.elements)
        proof = generate_proof(key, group.elements, evaluated, Mode.VOPRF, rng)
        groups.append(EvaluatedGroup(group.resolution, tuple(evaluated), proof))
    evaluated_groups = tuple(groups)
    if area_km2 is None:
        area_km2 = query_area_km2(query.group_sizes(), node.descriptor.descriptor.res)
    receipt = Receipt(
        responder=node.descriptor.descriptor.node,
        proposer=proposer,
        epoch_id=node.descriptor.descriptor.epoch_id,
        session_id=query.session_id,
        issued_at=issued_at,
        area_km2=area_km2,
        transcript_hash=transcript_hash(
            descriptor_digest=node.descriptor.digest,
            proposer=proposer,
            query=query,
            groups=evaluated_groups,
        ),
    ).signed(receipt_key or node.signing_key)
    return Response(query.session_id, evaluated_groups, receipt)
