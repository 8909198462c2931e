"""No form of any cell crosses the wire, in plaintext capture or under mutual TLS.

Two real nodes run five checks (four strikes, one of them twice) and two mutual
checks through :class:`RecordingProxy`, a TCP forwarder that keeps every byte
each way. The forbidden cells are both maps with all their ancestors down to
``res_min``, every strike cell and every compacted strike token; each in every
form :class:`Needles` knows (raw ids, hex, decimal, H3 strings, token bytes, the
unkeyed group hashes, a dozen unkeyed digests and their 8/16-byte prefixes). The
scan covers the raw TCP bytes and every gRPC message reassembled from its DATA
frames, so a form cut by a frame boundary is still seen.

How each was checked to fail without its protection (temporary edits in a copy
of the tree, reverted):

* blinding off (``hexpsi.protocol.crypto.oprf.blind`` using the scalar 1, so each blinded
  element is the unkeyed HashToGroup(token)): 212 ``oprf-hash-to-group(token)``
  hits, on the client side of the first connection onwards;
* mutual blinding off (the mutual session key fixed to the scalar 1): 592
  ``mutual-hash-to-group(token)`` hits in the mutual streams;
* raw ids on the wire (``PeerClient.evaluate`` adding each strike token's bytes
  to the EvaluateRequest as an unknown protobuf field, which the responder
  ignores): ``u64-be`` and ``token`` hits; the same with ``sha256(token)[:8]``:
  ``sha256(token)`` hits;
* TLS off (the TLS test run with ``plaintext=True`` on server, check and mutual):
  the method path, descriptor, receipt and proposer name all appeared.
"""

from __future__ import annotations

import os
from pathlib import Path

from hexpsi.server.clients.check import run_check
from hexpsi.server.clients.mutual import run_mutual
from hexpsi.server.services.app import start_server
from tests.security.leak_helpers import (
    EVALUATE,
    GET_SNAPSHOT,
    HASH_PREFIX_MIN,
    MUTUAL,
    PROPOSER,
    PROPOSER_CELLS,
    REPEATED_STRIKE,
    RESPONDER,
    RESPONDER_CELLS,
    STRIKES,
    UNKEYED_HASHES,
    Needles,
    RecordingProxy,
    Scenario,
    evaluate_elements,
    make_epoch,
    make_nodes,
    mutual_elements,
    preimage_forms,
    route_through,
    scan_bytes,
    strike_tokens,
    with_ancestors,
)


def wire_hits(scenario: Scenario, needles: Needles) -> list[object]:
    hits: list[object] = []
    for number, connection in enumerate(scenario.connections):
        hits += scan_bytes(needles, bytes(connection.client), f"connection {number} client")
        hits += scan_bytes(needles, bytes(connection.server), f"connection {number} server")
    for call in scenario.calls:
        for index, message in enumerate(call.requests):
            hits += scan_bytes(needles, message, f"{call.path} request {index}")
        for index, message in enumerate(call.responses):
            hits += scan_bytes(needles, message, f"{call.path} response {index}")
    return hits


def test_the_capture_holds_every_exchange(recorded: Scenario) -> None:
    """The scan below means something only if the proxy saw the whole protocol."""
    paths = [call.path for call in recorded.calls]
    assert paths.count(EVALUATE) == len(STRIKES) + 1
    assert paths.count(MUTUAL) == 2
    assert GET_SNAPSHOT in paths
    for call in recorded.calls:
        assert call.requests, call.path
        assert call.responses, call.path
    for (_, report), call in zip(recorded.checks, recorded.calls_to(EVALUATE), strict=True):
        sent, evaluated = evaluate_elements(call)
        assert len(sent) == len(evaluated) == report.result.elements_sent
    for mutual, call in zip(recorded.mutuals, recorded.calls_to(MUTUAL), strict=True):
        statement = mutual.result.receipt.statement
        sizes = statement.proposer_set_size + statement.responder_set_size
        assert len(mutual_elements(call)) == 2 * sizes


def test_no_form_of_any_cell_crosses_the_wire(recorded: Scenario) -> None:
    cells = recorded.every_cell
    assert with_ancestors(RESPONDER_CELLS) <= cells
    assert with_ancestors(PROPOSER_CELLS) <= cells
    assert strike_tokens(STRIKES[REPEATED_STRIKE]) <= cells
    needles = Needles(cells)
    assert wire_hits(recorded, needles) == []


def test_the_scan_finds_every_form_spliced_into_a_real_message(recorded: Scenario) -> None:
    """Control: each form of a strike cell, spliced into a copy of a real query, is found."""
    (call, *_) = recorded.calls_to(EVALUATE)
    cell = min(STRIKES[REPEATED_STRIKE])
    needles = Needles({cell})
    expected: dict[str, bytes] = dict(preimage_forms(cell))
    for name, data in preimage_forms(cell).items():
        for hash_name, digest in UNKEYED_HASHES.items():
            for cut in (HASH_PREFIX_MIN, 16, None):
                expected[f"{hash_name}({name})[:{cut}]"] = digest(data)[:cut]
    original = call.requests[0]
    half = len(original) // 2
    spliced = b"".join(os.urandom(3) + data for data in expected.values())
    message = original[:half] + spliced + original[half:]
    found = {(hit.cell, hit.form) for hit in scan_bytes(needles, message, "spliced")}
    for name in expected:
        form = name.rsplit("[", 1)[0]
        assert (cell, form) in found, name


async def test_an_observer_of_mutual_tls_sees_no_protocol_bytes(tmp_path: Path) -> None:
    """Over mutual TLS the capture holds no cell and none of the protocol's own bytes.

    The one name in clear is the responder's, in the ClientHello's server name
    (SNI): gRPC sends the pinned peer's name there, and an observer who sees the
    address could name the responder anyway. The proposer's certificate travels
    encrypted (TLS 1.3), so its name does not appear.
    """
    nodes = make_nodes(tmp_path, [RESPONDER, PROPOSER])
    responder, proposer = nodes[RESPONDER], nodes[PROPOSER]
    make_epoch(responder, RESPONDER_CELLS)
    make_epoch(proposer, PROPOSER_CELLS)
    server = await start_server(responder)
    proxy = RecordingProxy(server.port)
    try:
        proposer = route_through(proposer, responder, await proxy.start())
        report = await run_check(proposer, RESPONDER, STRIKES[REPEATED_STRIKE])
        await run_mutual(proposer, RESPONDER)
    finally:
        await server.stop(grace=1.0)
        await proxy.stop()
    assert report.result.conflict
    capture = b"".join(bytes(c.client) + bytes(c.server) for c in proxy.connections)
    assert len(capture) > 10_000
    markers = {
        "method path": b"hexpsi.v1",
        "descriptor": report.descriptor.encoded[:32],
        "proposer name": PROPOSER.encode(),
        "receipt": report.result.receipt.encode()[:32],
    }
    assert {name: capture.find(data) for name, data in markers.items()} == dict.fromkeys(
        markers, -1
    )
    cells = with_ancestors(RESPONDER_CELLS | PROPOSER_CELLS) | strike_tokens(report.strike_cells)
    assert scan_bytes(Needles(cells | report.strike_cells), capture, "tls") == []
