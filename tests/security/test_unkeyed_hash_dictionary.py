"""Why hexpsi never sends or stores an unkeyed hash of a cell: a theatre is enumerable.

A 100 km x 100 km theatre around At-Tanf (centred on the responder's garrison
and outposts) holds about 86,000 cells at
resolution 9, and a few thousand more at the coarser token resolutions. Hashing
every one of their tokens takes a fraction of a second on one core, so a
dictionary ``SHA-256(token) -> cell`` inverts any unkeyed hash of a protected
cell at once: a protocol that sent such hashes (or a snapshot of truncated
unkeyed hashes, however padded) would hand over the whole map. hexpsi's tokens
go through an OPRF whose key only the responder holds, so the same dictionary
finds nothing in a real capture of hexpsi traffic or in a real snapshot.

The timings are printed (``pytest -s``), never asserted. How the second test
was checked to fail without its protection: ``hexpsi.protocol.snapshot.build.evaluate_chunk``
made (temporarily) to truncate ``sha256(token)`` instead of the OPRF output,
and the recorded scenario rerun: the dictionary then inverted every responder
token from the real snapshot values, and the test failed.
"""

from __future__ import annotations

import hashlib
import math
import os
import time

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.crypto.keys import epoch_keys
from hexpsi.protocol.crypto.oprf import evaluate
from hexpsi.protocol.geo.tokens import token_bytes
from hexpsi.protocol.padding import pad_values
from hexpsi.protocol.snapshot.build import MODE
from hexpsi.server.node.epochs import EpochStore
from tests.security.leak_helpers import (
    HASH_PREFIX_MIN,
    RES,
    RES_MIN,
    RESPONDER_CELLS,
    UNKEYED_HASHES,
    Scenario,
    all_tokens,
    preimage_forms,
    truncate,
    with_ancestors,
)

THEATRE_KM = 100.0
KM_PER_DEGREE = 111.32


def theatre_cells() -> list[int]:
    """Every res-9 cell of a 100 km square centred on the responder's positions."""
    centres = [h3.cell_to_latlng(cell) for cell in RESPONDER_CELLS]
    lat = sum(c[0] for c in centres) / len(centres)
    lng = sum(c[1] for c in centres) / len(centres)
    half_lat = THEATRE_KM / 2 / KM_PER_DEGREE
    half_lng = half_lat / math.cos(math.radians(lat))
    square = h3.LatLngPoly(
        [
            (lat - half_lat, lng - half_lng),
            (lat - half_lat, lng + half_lng),
            (lat + half_lat, lng + half_lng),
            (lat + half_lat, lng - half_lng),
        ]
    )
    return list(h3.polygon_to_cells(square, RES))


@pytest.fixture(scope="module")
def dictionary() -> dict[bytes, int]:
    """SHA-256(token) -> cell for every token of the theatre, res_min..res."""
    started = time.perf_counter()
    cells = theatre_cells()
    tokens = with_ancestors(cells, RES_MIN)
    enumerated = time.perf_counter() - started
    started = time.perf_counter()
    table = {hashlib.sha256(token_bytes(t)).digest(): t for t in tokens}
    built = time.perf_counter() - started
    print(
        f"\ntheatre: {len(cells)} res-{RES} cells, {len(tokens)} tokens res {RES_MIN}..{RES}; "
        f"enumerated in {enumerated:.2f} s, dictionary built in {built:.2f} s"
    )
    return table


def test_the_theatre_is_enumerable_and_holds_the_protected_map(
    dictionary: dict[bytes, int],
) -> None:
    assert 80_000 < len(dictionary) < 120_000
    assert all_tokens(RESPONDER_CELLS) <= set(dictionary.values())


def test_a_dictionary_inverts_unkeyed_hashes_of_protected_cells(
    dictionary: dict[bytes, int],
) -> None:
    """A captured SHA-256 of each protected token, and a padded truncated 'snapshot' of them,
    both give the whole map back."""
    captured = [hashlib.sha256(token_bytes(c)).digest() for c in sorted(RESPONDER_CELLS)]
    started = time.perf_counter()
    inverted = {dictionary[digest] for digest in captured if digest in dictionary}
    lookup = time.perf_counter() - started
    print(f"\ninverted {len(inverted)} captured hashes in {lookup * 1e6:.0f} µs")
    assert inverted == RESPONDER_CELLS

    bits = 52
    tokens = all_tokens(RESPONDER_CELLS)
    naive = set(
        pad_values(
            [truncate(hashlib.sha256(token_bytes(t)).digest(), bits) for t in tokens],
            size=1024,
            bits=bits,
            rng=os.urandom,
        )
    )
    by_value = {truncate(digest, bits): cell for digest, cell in dictionary.items()}
    recovered = {by_value[v] for v in naive if v in by_value}
    assert recovered == tokens


def test_the_dictionary_finds_nothing_in_hexpsi_traffic_or_snapshots(
    dictionary: dict[bytes, int], recorded: Scenario
) -> None:
    prefixes = {digest[:HASH_PREFIX_MIN] for digest in dictionary}
    streams = [bytes(c.client) for c in recorded.connections]
    streams += [bytes(c.server) for c in recorded.connections]
    streams += [m for call in recorded.calls for m in (*call.requests, *call.responses)]
    for data in streams:
        windows = {data[i : i + HASH_PREFIX_MIN] for i in range(len(data) - HASH_PREFIX_MIN + 1)}
        assert windows.isdisjoint(prefixes)

    values, bits = recorded.cached_snapshot()
    assert {truncate(digest, bits) for digest in dictionary}.isdisjoint(values)


@pytest.mark.slow
def test_no_theatre_token_under_any_unkeyed_hash_or_proposer_key_is_in_the_snapshot(
    recorded: Scenario,
) -> None:
    """The longer variant: every theatre token, every preimage form and unkeyed hash, and
    the proposer's own keys (its epoch, and its master secret on the responder's epoch id)."""
    values, bits = recorded.cached_snapshot()
    tokens = sorted(with_ancestors(theatre_cells(), RES_MIN))
    for token in tokens:
        for data in preimage_forms(token).values():
            for digest in UNKEYED_HASHES.values():
                assert truncate(digest(data), bits) not in values, f"{token:x}"
    descriptor = recorded.checks[-1][1].descriptor.descriptor
    own = EpochStore(recorded.proposer).current()
    assert own is not None
    own.blocks.close()
    for epoch_id in (own.descriptor.descriptor.epoch_id, descriptor.epoch_id):
        keys = epoch_keys(recorded.proposer.oprf_master, epoch_id, res=RES, res_min=RES_MIN)
        for resolution, key in keys.items():
            group = [t for t in tokens if h3.get_resolution(t) == resolution]
            outputs = evaluate(key, [token_bytes(t) for t in group], MODE)
            assert {truncate(o, bits) for o in outputs}.isdisjoint(values)
