"""The coding attack on mutual proximity, in both directions, over real gRPC with mutual TLS.

A cheating side gives each candidate cell a distinct codeword of 3 keys out of
``KEYS`` and sends ``k_j * H(x)`` for each key of the codeword as its set.
Holding the other side's blinded set ``b * H(y)`` and the double-blinded copy of
its own (``b * k_j * H(x)``), it computes ``k_j * b * H(y)`` for every key and
looks each up: a shared cell matches under exactly its codeword, which names
it. So one mutual call reveals, for every candidate, whether it is in the
other's map: DH-based PSI-cardinality is only secure against peers that follow
the protocol.

What bounds it is the budget: each side charges the other's padded set size S
in cells at the agreed resolution before anything is revealed, so an attacker
learns about at most budget ÷ cell area cells per window, and a call its
budget cannot pay for is refused before a single element is exchanged.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import grpc
import h3.api.basic_int as h3
import pytest

import hexpsi.server.node.epochs
import hexpsi.server.services.app
from hexpsi.protocol.budget import cell_area_km2
from hexpsi.protocol.crypto.group import random_scalar, scalar_mult, scalar_mult_many
from hexpsi.protocol.errors import HexpsiError, Status
from hexpsi.protocol.mutual.messages import MutualAccept, MutualCommitment, MutualStart
from hexpsi.protocol.mutual.sets import mutual_points, split_chunks
from hexpsi.protocol.padding import size_bucket
from hexpsi.server.clients.mutual import run_mutual
from hexpsi.server.node.directory import Node
from hexpsi.server.node.ledger import Operation
from hexpsi.server.rpc.hexpsi.v1 import mutual_pb2, mutual_pb2_grpc
from hexpsi.server.rpc.mutual_convert import (
    accept_response,
    chunk_request,
    chunk_response,
    commitment_request,
    read_accept,
    read_commitment,
    read_request_chunk,
    read_response_chunk,
    read_start,
    start_request,
)
from hexpsi.server.services.app import RunningServer, start_server
from hexpsi.server.services.mutual import MutualServicer, ProposerStream
from tests.security.hostile_helpers import (
    PROPOSER,
    RES,
    RESPONDER,
    check_stub,
    current_descriptor,
    edit_config,
    make_epoch,
    make_pair,
    serving,
    tls_channel,
)

KEYS = 14
"""C(14, 3) = 364 codewords: enough for every candidate a test sets."""
CELL_KM2 = cell_area_km2(RES)
DAY = 24 * 3600.0
MAP = sorted(h3.grid_disk(h3.latlng_to_cell(33.50, 38.62, RES), 11))
"""397 protected cells: more than any budget below lets an attacker test."""
BATCH = 42
"""Candidates per call: 42 codewords of 3 keys fill the smallest padded set, 128."""


class Coder:
    """The attacker's keys and codewords."""

    def __init__(self) -> None:
        self.keys = [random_scalar(os.urandom) for _ in range(KEYS)]
        self.codes: dict[frozenset[int], int] = {}

    def encode(self, candidates: Sequence[int], set_size: int) -> list[bytes]:
        """``k_j * H(x)`` for each candidate and each key of its codeword, padded to size."""
        points = mutual_points(list(candidates))
        elements: list[bytes] = []
        for cell, point, code in zip(
            candidates, points, itertools.combinations(range(KEYS), 3), strict=False
        ):
            self.codes[frozenset(code)] = cell
            elements.extend(scalar_mult(self.keys[j], point) for j in code)
        assert len(elements) <= set_size
        while len(elements) < set_size:
            elements.append(scalar_mult(random_scalar(os.urandom), points[0]))
        return elements

    def decode(self, singles: Sequence[bytes], doubles: set[bytes]) -> set[int]:
        """The candidates whose codeword matched: cells in the other side's map."""
        found: set[int] = set()
        for single in singles:
            matched = frozenset(
                j for j, key in enumerate(self.keys) if scalar_mult(key, single) in doubles
            )
            if matched in self.codes:
                found.add(self.codes[matched])
        return found


def budget_for(cells: int) -> float:
    return cells * CELL_KM2


def with_room(root: Path, cells: int) -> Any:
    """Two nodes, each allowing the other ``cells`` cells' worth of area and many calls."""
    pair = make_pair(root, budget_km2=budget_for(cells), epoch=False)
    for node in (pair.responder, pair.proposer):
        edit_config(node.directory, budget={"mutual_checks_per_window": 1000})
    return type(pair)(Node(pair.responder.directory), Node(pair.proposer.directory), root)


# --- a cheating proposer against an honest responder ------------------------------------


Call = grpc.aio.StreamStreamCall[mutual_pb2.MutualRequest, mutual_pb2.MutualResponse]


async def _response(call: Call) -> mutual_pb2.MutualResponse:
    message = await call.read()
    assert isinstance(message, mutual_pb2.MutualResponse), "the responder ended the call"
    return message


async def coded_call(
    channel: grpc.aio.Channel, digest: bytes, candidates: Sequence[int], set_size: int
) -> set[int]:
    """One mutual call as the attacker makes it; returns the candidates it recovered."""
    coder = Coder()
    elements = coder.encode(candidates, set_size)
    call: Call = mutual_pb2_grpc.MutualServiceStub(channel).Mutual(None, timeout=60)
    try:
        start = MutualStart(os.urandom(16), digest, os.urandom(16), set_size)
        await call.write(start_request(start))
        accept = read_accept(await _response(call))
        for chunk in split_chunks(elements, 4096):
            await call.write(chunk_request("blinded", chunk))
        singles: list[bytes] = []
        while len(singles) < accept.responder_set_size:
            singles.extend(read_response_chunk(await _response(call), "blinded").elements)
        await call.write(commitment_request(MutualCommitment(os.urandom(32))))
        doubles: list[bytes] = []
        while len(doubles) < set_size:
            chunk = read_response_chunk(await _response(call), "double_blinded")
            doubles.extend(chunk.elements)
    finally:
        call.cancel()
    return coder.decode(singles, set(doubles))


async def test_a_cheating_proposer_learns_no_more_cells_than_its_budget(tmp_path: Path) -> None:
    """With room for 300 cells, coded calls of 128 elements recover 42 cells each until
    the third is refused before anything is exchanged: at most budget ÷ cell area.

    Checked to fail without the protection: with the responder charging a mutual
    call nothing (``area_km2=0`` in ``MutualServicer._admit``), every call went
    through and the attacker recovered every cell of the map.
    """
    pair = with_room(tmp_path, 300)
    make_epoch(pair.responder, MAP)
    recovered: set[int] = set()
    refusal: grpc.aio.AioRpcError | None = None
    async with serving(pair.responder) as running:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            digest = (await current_descriptor(check_stub(channel), pair.responder)).digest
            for batch in range(10):
                candidates = MAP[batch * BATCH : (batch + 1) * BATCH]
                try:
                    recovered |= await coded_call(channel, digest, candidates, 128)
                except grpc.aio.AioRpcError as error:
                    refusal = error
                    break
        spent = running.ledger.spent(PROPOSER, now=time.time(), window_seconds=DAY)
    assert refusal is not None
    assert refusal.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "bravo's area budget" in (refusal.details() or "")
    assert recovered <= set(MAP), "the attack works: every cell it names is in the map"
    assert len(recovered) == 2 * BATCH
    assert len(recovered) <= budget_for(300) / CELL_KM2
    assert spent == pytest.approx(2 * 128 * CELL_KM2)
    charged = [e["area_km2"] for e in _mutual_entries(pair.responder)]
    assert charged == pytest.approx([128 * CELL_KM2] * 2), "audited at what it could reveal"


async def test_a_call_beyond_the_budget_is_refused_before_anything_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A set of 1,280 elements against room for 300 cells: refused at the start, with no
    element exchanged, nothing charged and the map never loaded."""
    loads: list[object] = []
    honest = hexpsi.server.node.epochs.ServedEpoch.mutual_inputs

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        loads.append(self)
        return honest(self, *args, **kwargs)

    monkeypatch.setattr(hexpsi.server.node.epochs.ServedEpoch, "mutual_inputs", counting)
    pair = with_room(tmp_path, 300)
    make_epoch(pair.responder, MAP)
    async with serving(pair.responder) as running:
        async with tls_channel(pair.responder, pair.proposer) as channel:
            digest = (await current_descriptor(check_stub(channel), pair.responder)).digest
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await coded_call(channel, digest, MAP, size_bucket(3 * len(MAP), minimum=128))
        assert running.ledger.sizes() == (0, 0)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "allows at all" in (caught.value.details() or "")
    assert loads == []


# --- a cheating responder against an honest proposer ------------------------------------


class CodingResponder(MutualServicer):
    """A responder that codes its own set and decodes the proposer's revealed copy."""

    candidates: ClassVar[list[int]] = []
    recovered: ClassVar[set[int]] = set()
    revealed_elements: ClassVar[list[int]] = []

    async def Mutual(  # type: ignore[override]
        self, request_iterator: AsyncIterator[mutual_pb2.MutualRequest], context: Any
    ) -> None:
        stream = ProposerStream(request_iterator, 30.0)
        start = read_start(await stream.next("the start"))
        coder = Coder()
        size = size_bucket(3 * len(self.candidates), minimum=128)
        elements = coder.encode(self.candidates, size)
        await context.write(accept_response(MutualAccept(start.session_id, size)))
        for chunk in split_chunks(elements, 4096):
            await context.write(chunk_response("blinded", chunk))
        singles: list[bytes] = []
        while len(singles) < start.proposer_set_size:
            singles.extend(read_request_chunk(await stream.next("A1"), "blinded").elements)
        read_commitment(await stream.next("the commitment"))
        answer = sorted(scalar_mult_many(random_scalar(os.urandom), singles))
        for chunk in split_chunks(answer, 4096):
            await context.write(chunk_response("double_blinded", chunk))
        revealed: list[bytes] = []
        while len(revealed) < size:
            revealed.extend(read_request_chunk(await stream.next("D_B"), "double_blinded").elements)
            type(self).revealed_elements.append(len(revealed))
        type(self).recovered |= coder.decode(singles, set(revealed))
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no countersignature")


@asynccontextmanager
async def coding_responder(node: Node, candidates: list[int]) -> AsyncIterator[RunningServer]:
    CodingResponder.candidates = candidates
    CodingResponder.recovered = set()
    CodingResponder.revealed_elements = []
    honest = getattr(hexpsi.server.services.app, "MutualServicer")  # noqa: B009
    setattr(hexpsi.server.services.app, "MutualServicer", CodingResponder)  # noqa: B010
    try:
        running = await start_server(node)
    finally:
        setattr(hexpsi.server.services.app, "MutualServicer", honest)  # noqa: B010
    try:
        yield running
    finally:
        await running.stop(grace=0.5)


async def test_a_cheating_responder_learns_no_more_cells_than_the_proposers_budget(
    tmp_path: Path,
) -> None:
    """An honest ``hexpsi mutual`` reveals its double-blinded copy only after charging the
    responder's set size to its own budget for that peer: two coded calls of 128
    elements fit in room for 300 cells (42 cells each), the third is refused before
    the proposer sends anything.

    Checked to fail without the protection: with ``_admit_responder_set`` in the
    mutual client charging nothing, every call revealed and all 210 candidates were
    recovered.
    """
    pair = with_room(tmp_path, 300)
    make_epoch(pair.responder, MAP[:1])
    make_epoch(pair.proposer, MAP)
    recovered: set[int] = set()
    refusal: HexpsiError | None = None
    for batch in range(5):
        async with coding_responder(pair.responder, MAP[batch * BATCH : (batch + 1) * BATCH]):
            try:
                await run_mutual(pair.proposer, RESPONDER)
            except HexpsiError as error:
                if error.status is Status.RESOURCE_EXHAUSTED:
                    refusal = error
                    break
            finally:
                recovered |= CodingResponder.recovered
    assert refusal is not None, "the proposer never refused"
    assert "could expose up to" in refusal.message
    assert "alpha's area budget" in refusal.message
    assert CodingResponder.revealed_elements == [], "the refused call revealed nothing"
    assert recovered <= set(MAP)
    assert len(recovered) == 2 * BATCH
    assert len(recovered) <= budget_for(300) / CELL_KM2
    with pair.proposer.open_ledger() as ledger:
        spent = ledger.spent(RESPONDER, now=time.time(), window_seconds=DAY)
        assert (
            ledger.calls(RESPONDER, Operation.MUTUAL_OUT, now=time.time(), window_seconds=DAY) == 2
        )
    assert spent == pytest.approx(2 * 128 * CELL_KM2)


async def test_an_oversized_responder_set_is_refused_before_the_proposer_sends_anything(
    tmp_path: Path,
) -> None:
    pair = with_room(tmp_path, 300)
    make_epoch(pair.responder, MAP[:1])
    make_epoch(pair.proposer, MAP)
    async with coding_responder(pair.responder, MAP):
        with pytest.raises(HexpsiError, match="allows at all") as caught:
            await run_mutual(pair.proposer, RESPONDER)
    assert caught.value.status is Status.RESOURCE_EXHAUSTED
    assert CodingResponder.revealed_elements == []
    assert CodingResponder.recovered == set()
    with pair.proposer.open_ledger() as ledger:
        assert ledger.sizes() == (0, 0)


def _mutual_entries(node: Node) -> list[dict[str, Any]]:
    with node.open_audit_log() as audit:
        return [e.details_object() for e in audit.entries() if e.kind == "mutual"]
