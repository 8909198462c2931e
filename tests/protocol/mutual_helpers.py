"""An in-memory mutual check: proposer and responder sessions talking through their encodings.

Like h11's ``ConnectionPair``: :class:`MutualPair` runs a :class:`ProposerMutual`
against a :class:`ResponderMutual`, passing every chunk through its packed bytes
and the statement through its canonical encoding, as the server does, and
records every message's size so tests can compare what an observer would see.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import h3.api.basic_int as h3
from nacl.signing import SigningKey

from hexpsi.protocol.epoch.descriptor import SignedDescriptor
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS
from hexpsi.protocol.mutual.messages import (
    ElementChunk,
    MutualFinish,
    MutualReceipt,
    MutualStatement,
)
from hexpsi.protocol.mutual.session import MutualResult, ProposerMutual, ResponderMutual
from tests.protocol.helpers import (
    NOW,
    PROPOSER,
    DeterministicRng,
    ResponderNode,
    make_responder,
    signing_key,
)

RES = 9
CENTER = h3.latlng_to_cell(33.50, 38.62, RES)
PROPOSER_EPOCH = b"proposer-epoch-1"


@functools.cache
def responder_node() -> ResponderNode:
    """One responder epoch at res 9 (its snapshot is irrelevant to the mutual check)."""
    return make_responder([CENTER], res=RES, res_min=RES)


def descriptor() -> SignedDescriptor:
    return responder_node().descriptor


def responder_signing_key() -> SigningKey:
    return responder_node().signing_key


def wire(chunk: ElementChunk) -> ElementChunk:
    """A chunk as the other side decodes it."""
    return ElementChunk.from_joined(chunk.index, chunk.joined())


def proposer_session(
    cells: Iterable[int], *, seed: bytes = b"proposer", **options: Any
) -> ProposerMutual:
    return ProposerMutual(
        descriptor=descriptor(),
        responder_key=responder_signing_key().verify_key,
        proposer=PROPOSER,
        signing_key=signing_key(PROPOSER),
        cells=cells,
        proposer_epoch_id=PROPOSER_EPOCH,
        rng=DeterministicRng(seed),
        **options,
    )


def responder_session(
    cells: Iterable[int], *, seed: bytes = b"responder", **options: Any
) -> ResponderMutual:
    return ResponderMutual(
        descriptor=descriptor(),
        signing_key=responder_signing_key(),
        proposer=PROPOSER,
        proposer_key=signing_key(PROPOSER).verify_key,
        cells=cells,
        rng=DeterministicRng(seed),
        **options,
    )


@dataclass
class MutualPair:
    """Both sessions and every message size, in the order each side sent them."""

    proposer: ProposerMutual
    responder: ResponderMutual
    proposer_sizes: list[int] = field(default_factory=list)
    responder_sizes: list[int] = field(default_factory=list)
    receipt: MutualReceipt | None = None

    def open(self) -> None:
        start = self.proposer.start()
        self.proposer_sizes.append(start.proposer_set_size)
        accept = self.responder.receive_start(start, now=NOW)
        self.responder_sizes.append(accept.responder_set_size)
        self.proposer.accept(accept)

    def exchange_sets(self) -> None:
        for chunk in self.proposer.outgoing_chunks():
            self.proposer_sizes.append(len(chunk.joined()))
            self.responder.receive_proposer_chunk(wire(chunk))
        for chunk in self.responder.own_chunks():
            self.responder_sizes.append(len(chunk.joined()))
            self.proposer.receive_responder_chunk(wire(chunk))

    def commit_and_answer(self) -> None:
        commitment = self.proposer.commit()
        self.proposer_sizes.append(len(commitment.digest))
        self.responder.receive_commitment(commitment)
        for chunk in self.responder.answer():
            self.responder_sizes.append(len(chunk.joined()))
            self.proposer.receive_double_chunk(wire(chunk))

    def reveal(self) -> None:
        for chunk in self.proposer.reveal():
            self.proposer_sizes.append(len(chunk.joined()))
            self.responder.receive_reveal_chunk(wire(chunk))

    def finish(self, *, now: float = NOW) -> MutualFinish:
        finish = self.proposer.finish(now=now)
        encoded = finish.statement.encode()
        self.proposer_sizes.append(len(encoded) + len(finish.signature))
        return MutualFinish(MutualStatement.decode(encoded), finish.signature)

    def run(self) -> MutualResult:
        self.open()
        self.exchange_sets()
        self.commit_and_answer()
        self.reveal()
        self.receipt = self.responder.countersign(
            self.finish(), now=NOW, max_skew=CLOCK_SKEW_SECONDS
        )
        self.responder_sizes.append(len(self.receipt.responder_signature))
        return self.proposer.complete(self.receipt.responder_signature)


def mutual_pair(
    proposer_cells: Iterable[int],
    responder_cells: Iterable[int],
    *,
    proposer_seed: bytes = b"proposer",
    responder_seed: bytes = b"responder",
    **options: Any,
) -> MutualPair:
    return MutualPair(
        proposer_session(proposer_cells, seed=proposer_seed, **options),
        responder_session(responder_cells, seed=responder_seed, **options),
    )


def disk(center: int, radius: int) -> frozenset[int]:
    return frozenset(h3.grid_disk(center, radius))
