"""What the leakage tests share: a recording proxy, a gRPC-over-HTTP/2 reader, and a scanner
that knows every form a cell could take.

* :class:`RecordingProxy` forwards TCP on 127.0.0.1 and keeps every byte both ways.
  Plaintext (loopback) gRPC then shows its messages verbatim inside HTTP/2 DATA
  frames; :func:`grpc_calls` splits a connection into calls (the ``:path`` from
  HPACK, the length-prefixed messages each way), so a test can look at whole
  messages even where a frame boundary cuts one in two.
* :class:`Needles` holds every *form* of a set of cells: raw 64-bit ids in both byte
  orders, hex (both cases, with and without ``0x``, zero-padded), decimal, the H3
  string, the token bytes, the group elements an unkeyed hash puts them on (the
  OPRF's HashToGroup and the mutual check's H), and a dozen common unkeyed hashes
  of each of those byte strings, whole and cut to 8 or 16 bytes. ``find`` slides
  an 8-byte window over the haystack once, so a scan of a megabyte takes well
  under a second whatever the number of needles.
* :func:`decoded_views` turns the hex and base64 runs of a file into bytes, so a
  digest written as text into JSON or SQLite is found too.
* :func:`record_scenario` runs two real nodes (checks of several strikes, the same
  zone twice, and two mutual checks) through the proxy and returns everything the
  tests need: the captures, both node directories, and which cells each side holds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h3.api.basic_int as h3

from hexpsi.protocol.crypto.group import ELEMENT_SIZE, hash_to_group_many
from hexpsi.protocol.crypto.oprf import Mode, context_string
from hexpsi.protocol.epoch.descriptor import snapshot_params
from hexpsi.protocol.geo.tokens import query_tokens, responder_tokens, token_bytes
from hexpsi.protocol.mutual.sets import HASH_DST as MUTUAL_HASH_DST
from hexpsi.protocol.snapshot.gcs import GcsParams, decode_block
from hexpsi.server.clients.check import CheckReport, run_check
from hexpsi.server.clients.mutual import MutualReport, run_mutual
from hexpsi.server.demo.scenario import free_loopback_port
from hexpsi.server.node.directory import Node, init_node
from hexpsi.server.node.epochs import EpochStore
from hexpsi.server.node.snapshot_cache import CACHE_DIR
from hexpsi.server.rpc.hexpsi.v1 import check_pb2, mutual_pb2
from hexpsi.server.services.app import RunningServer, start_server

RES = 9
RES_MIN = 5
RESPONDER = "alpha"
PROPOSER = "bravo"
BIG_BUDGET_KM2 = 1e7

# ---------------------------------------------------------------- nodes


def make_nodes(root: Path, names: Iterable[str]) -> dict[str, Node]:
    """Nodes on free loopback ports, every one pinning every other with a large budget."""
    now = time.time()
    made = [
        init_node(root / name, name=name, listen=f"127.0.0.1:{free_loopback_port()}", now=now)
        for name in names
    ]
    for node in made:
        for other in made:
            if other is not node:
                node.add_peer(other.own_identity(), budget_km2=BIG_BUDGET_KM2)
    return {node.name: Node(node.directory) for node in made}


def make_epoch(node: Node, cells: Iterable[int]) -> int:
    epoch = EpochStore(node).create(cells, now=time.time(), workers=1)
    epoch.blocks.close()
    return epoch.sequence


def route_through(proposer: Node, responder: Node, port: int) -> Node:
    """Re-pin ``responder`` on ``proposer`` at the proxy's port; returns the reloaded node."""
    proposer.add_peer(
        responder.own_identity(),
        address=f"127.0.0.1:{port}",
        budget_km2=BIG_BUDGET_KM2,
        replace=True,
    )
    return Node(proposer.directory)


def with_ancestors(cells: Iterable[int], res_min: int = RES_MIN) -> frozenset[int]:
    """Each cell and all its ancestors down to ``res_min`` (a node's token hierarchy)."""
    result: set[int] = set()
    for cell in cells:
        for res in range(res_min, h3.get_resolution(cell) + 1):
            result.add(h3.cell_to_parent(cell, res))
    return frozenset(result)


def strike_tokens(cells: Iterable[int]) -> frozenset[int]:
    """The compacted query tokens of a strike (what its query carries, blinded)."""
    tokens = query_tokens(cells, res=RES, res_min=RES_MIN)
    return frozenset(cell for group in tokens.values() for cell in group)


def all_tokens(cells: Iterable[int]) -> frozenset[int]:
    tokens = responder_tokens(cells, res=RES, res_min=RES_MIN)
    return frozenset(cell for group in tokens.values() for cell in group)


# ---------------------------------------------------------------- the recording proxy


@dataclass
class Connection:
    """Every byte one TCP connection carried, per direction."""

    client: bytearray = field(default_factory=bytearray)
    server: bytearray = field(default_factory=bytearray)


class RecordingProxy:
    """A TCP forwarder on 127.0.0.1 to ``target_port`` that records both directions."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections: list[Connection] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        if self._handlers:
            _, pending = await asyncio.wait(self._handlers, timeout=5.0)
            for task in pending:
                task.cancel()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        connection = Connection()
        self.connections.append(connection)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
            await asyncio.gather(
                _pump(reader, upstream_writer, connection.client),
                _pump(upstream_reader, writer, connection.server),
            )
        finally:
            self._handlers.discard(task)


async def _pump(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bytearray
) -> None:
    try:
        while data := await source.read(1 << 16):
            record += data
            sink.write(data)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        sink.close()


# ---------------------------------------------------------------- HTTP/2 and gRPC framing

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, CONTINUATION = 0x0, 0x1, 0x9
END_HEADERS, PADDED, PRIORITY = 0x4, 0x8, 0x20

_STATIC_NAMED = (
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    *((":status", code) for code in ("200", "204", "206", "304", "400", "404", "500")),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
)
_STATIC_NAMES_ONLY = """
    accept-language accept-ranges accept access-control-allow-origin age allow authorization
    cache-control content-disposition content-encoding content-language content-length
    content-location content-range content-type cookie date etag expect expires from host
    if-match if-modified-since if-none-match if-range if-unmodified-since last-modified link
    location max-forwards proxy-authenticate proxy-authorization range referer refresh
    retry-after server set-cookie strict-transport-security transfer-encoding user-agent vary
    via www-authenticate
"""
_STATIC_TABLE: tuple[tuple[str, str], ...] = (
    *_STATIC_NAMED,
    *((name, "") for name in _STATIC_NAMES_ONLY.split()),
)
"""RFC 7541 Appendix A (values only where a request could index them whole)."""
assert len(_STATIC_TABLE) == 61


class HpackDecoder:
    """Just enough HPACK (RFC 7541) to read request headers: no Huffman-coded strings.

    gRPC's C core writes header strings as plain literals, so a Huffman-coded one
    means the capture is not what these tests expect, and decoding stops loudly.
    """

    def __init__(self) -> None:
        self.dynamic: list[tuple[str, str]] = []
        self.max_size = 4096

    def _size(self) -> int:
        return sum(len(n) + len(v) + 32 for n, v in self.dynamic)

    def _insert(self, name: str, value: str) -> None:
        self.dynamic.insert(0, (name, value))
        while self.dynamic and self._size() > self.max_size:
            self.dynamic.pop()

    def _entry(self, index: int) -> tuple[str, str]:
        if 1 <= index <= len(_STATIC_TABLE):
            return _STATIC_TABLE[index - 1]
        return self.dynamic[index - len(_STATIC_TABLE) - 1]

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        pos = 0
        while pos < len(block):
            first = block[pos]
            if first & 0x80:
                index, pos = _hpack_int(block, pos, 7)
                headers.append(self._entry(index))
                continue
            if first & 0xE0 == 0x20:
                self.max_size, pos = _hpack_int(block, pos, 5)
                while self.dynamic and self._size() > self.max_size:
                    self.dynamic.pop()
                continue
            indexing = first & 0xC0 == 0x40
            index, pos = _hpack_int(block, pos, 6 if indexing else 4)
            if index:
                name = self._entry(index)[0]
            else:
                name, pos = _hpack_string(block, pos)
            value, pos = _hpack_string(block, pos)
            if indexing:
                self._insert(name, value)
            headers.append((name, value))
        return headers


def _hpack_int(data: bytes, pos: int, prefix: int) -> tuple[int, int]:
    limit = (1 << prefix) - 1
    value = data[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _hpack_string(data: bytes, pos: int) -> tuple[str, int]:
    huffman = data[pos] & 0x80
    length, pos = _hpack_int(data, pos, 7)
    if huffman:
        raise AssertionError("a Huffman-coded header string: this reader does not decode those")
    return data[pos : pos + length].decode("latin-1"), pos + length


def http2_frames(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """``(type, flags, stream id, payload)`` of every whole frame, preface skipped."""
    pos = len(PREFACE) if data.startswith(PREFACE) else 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos : pos + 3], "big")
        kind, flags = data[pos + 3], data[pos + 4]
        stream = int.from_bytes(data[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
        payload = data[pos + 9 : pos + 9 + length]
        if len(payload) < length:
            return
        yield kind, flags, stream, payload
        pos += 9 + length


def _unpadded(flags: int, payload: bytes) -> bytes:
    if flags & PADDED:
        return payload[1 : len(payload) - payload[0]]
    return payload


@dataclass
class GrpcCall:
    """One gRPC call seen on the wire: its method and its messages each way."""

    path: str
    requests: list[bytes] = field(default_factory=list)
    responses: list[bytes] = field(default_factory=list)
    request_bytes: int = 0
    response_bytes: int = 0
    """DATA payload bytes each way: the messages plus gRPC's 5-byte prefix per message."""


def _streams(data: bytes, decoder: HpackDecoder | None) -> tuple[dict[int, bytes], dict[int, str]]:
    bodies: dict[int, bytearray] = {}
    paths: dict[int, str] = {}
    block = bytearray()
    for kind, flags, stream, payload in http2_frames(data):
        if kind == DATA:
            bodies.setdefault(stream, bytearray()).extend(_unpadded(flags, payload))
        elif kind in (HEADERS, CONTINUATION) and decoder is not None:
            fragment = _unpadded(flags, payload) if kind == HEADERS else payload
            if kind == HEADERS and flags & PRIORITY:
                fragment = fragment[5:]
            block += fragment
            if flags & END_HEADERS:
                for name, value in decoder.decode(bytes(block)):
                    if name == ":path":
                        paths[stream] = value
                block.clear()
    return {stream: bytes(body) for stream, body in bodies.items()}, paths


def grpc_messages(body: bytes) -> list[bytes]:
    """Split a stream's DATA into gRPC's length-prefixed messages (never compressed here)."""
    messages = []
    pos = 0
    while pos < len(body):
        flag, length = body[pos], int.from_bytes(body[pos + 1 : pos + 5], "big")
        assert flag == 0, "a compressed gRPC message: the scan would not see its contents"
        messages.append(body[pos + 5 : pos + 5 + length])
        pos += 5 + length
    return messages


def grpc_calls(connection: Connection) -> list[GrpcCall]:
    """The calls of one plaintext HTTP/2 connection, in the order the client opened them."""
    requests, paths = _streams(bytes(connection.client), HpackDecoder())
    responses, _ = _streams(bytes(connection.server), None)
    calls = []
    for stream in sorted(paths):
        call = GrpcCall(paths[stream])
        call.requests = grpc_messages(requests.get(stream, b""))
        call.responses = grpc_messages(responses.get(stream, b""))
        call.request_bytes = len(requests.get(stream, b""))
        call.response_bytes = len(responses.get(stream, b""))
        calls.append(call)
    return calls


EVALUATE = "/hexpsi.v1.CheckService/Evaluate"
GET_SNAPSHOT = "/hexpsi.v1.CheckService/GetSnapshot"
GET_DESCRIPTOR = "/hexpsi.v1.CheckService/GetDescriptor"
MUTUAL = "/hexpsi.v1.MutualService/Mutual"


def split_elements(joined: bytes) -> list[bytes]:
    assert len(joined) % ELEMENT_SIZE == 0
    return [joined[i : i + ELEMENT_SIZE] for i in range(0, len(joined), ELEMENT_SIZE)]


def evaluate_elements(call: GrpcCall) -> tuple[list[bytes], list[bytes]]:
    """The blinded elements a check sent and the evaluations it got back."""
    assert call.path == EVALUATE
    (request,) = (check_pb2.EvaluateRequest.FromString(m) for m in call.requests)
    (response,) = (check_pb2.EvaluateResponse.FromString(m) for m in call.responses)
    sent_groups = [*request.groups, *request.timed_groups]
    got_groups = [*response.groups, *response.timed_groups]
    sent = [e for g in sent_groups for e in split_elements(g.elements)]
    got = [e for g in got_groups for e in split_elements(g.elements)]
    return sent, got


def mutual_elements(call: GrpcCall) -> list[bytes]:
    """Every group element of a mutual session, both sets and both double-blinded sets."""
    assert call.path == MUTUAL
    messages: list[mutual_pb2.MutualRequest | mutual_pb2.MutualResponse] = [
        mutual_pb2.MutualRequest.FromString(raw) for raw in call.requests
    ]
    messages += [mutual_pb2.MutualResponse.FromString(raw) for raw in call.responses]
    elements = []
    for message in messages:
        for name in ("blinded", "double_blinded"):
            if message.HasField(name):
                elements += split_elements(getattr(message, name).elements)
    return elements


# ---------------------------------------------------------------- forms of a cell


def _blake2b_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


UNKEYED_HASHES: dict[str, Callable[[bytes], bytes]] = {
    name: (lambda data, name=name: hashlib.new(name, data).digest())
    for name in (
        "md5", "sha1", "sha224", "sha256", "sha384", "sha512",
        "sha3_224", "sha3_256", "sha3_384", "sha3_512", "blake2b", "blake2s",
    )
} | {"blake2b-256": _blake2b_256}  # fmt: skip
"""Common unkeyed hashes; a digest counts as found whole or cut to its first 8 or 16 bytes."""
HASH_PREFIX_MIN = 8
OPRF_HASH_DST = b"HashToGroup-" + context_string(Mode.VOPRF)


def preimage_forms(cell: int) -> dict[str, bytes]:
    """The byte strings a careless implementation could send or store for a cell."""
    lower = f"{cell:x}"
    return {
        "u64-be": cell.to_bytes(8, "big"),
        "u64-le": cell.to_bytes(8, "little"),
        "hex": lower.encode(),
        "HEX": lower.upper().encode(),
        "0xhex": f"0x{lower}".encode(),
        "0xHEX": f"0x{lower.upper()}".encode(),
        "hex16": f"{cell:016x}".encode(),
        "HEX16": f"{cell:016X}".encode(),
        "decimal": str(cell).encode(),
        "h3-string": h3.int_to_str(cell).encode(),
        "token": token_bytes(cell),
    }


@dataclass(frozen=True, slots=True)
class Hit:
    cell: int
    form: str
    offset: int
    where: str = ""


class Needles:
    """Every form of every cell, indexed by its first 8 bytes."""

    def __init__(self, cells: Iterable[int]) -> None:
        self.cells = frozenset(cells)
        self._index: dict[bytes, list[tuple[bytes, int, int, str]]] = {}
        ordered = sorted(self.cells)
        oprf_points = hash_to_group_many([token_bytes(c) for c in ordered], OPRF_HASH_DST)
        mutual_points = hash_to_group_many([token_bytes(c) for c in ordered], MUTUAL_HASH_DST)
        for cell, oprf_point, mutual_point in zip(ordered, oprf_points, mutual_points, strict=True):
            forms = preimage_forms(cell)
            for name, data in forms.items():
                self._add(data, len(data), cell, name)
            self._add(oprf_point, len(oprf_point), cell, "oprf-hash-to-group(token)")
            self._add(mutual_point, len(mutual_point), cell, "mutual-hash-to-group(token)")
            for name, data in forms.items():
                for hash_name, digest in UNKEYED_HASHES.items():
                    self._add(digest(data), HASH_PREFIX_MIN, cell, f"{hash_name}({name})")

    def _add(self, data: bytes, min_length: int, cell: int, form: str) -> None:
        self._index.setdefault(data[:HASH_PREFIX_MIN], []).append((data, min_length, cell, form))

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._index.values())

    def find(self, haystack: bytes, where: str = "") -> list[Hit]:
        """Every place a form (or a digest's 8/16-byte prefix) occurs in ``haystack``."""
        data = bytes(haystack)
        windows = {data[i : i + HASH_PREFIX_MIN] for i in range(len(data) - HASH_PREFIX_MIN + 1)}
        hits = []
        for prefix in windows.intersection(self._index):
            start = data.find(prefix)
            while start != -1:
                for needle, min_length, cell, form in self._index[prefix]:
                    if data.startswith(needle[:min_length], start):
                        hits.append(Hit(cell, form, start, where))
                start = data.find(prefix, start + 1)
        return hits


# ---------------------------------------------------------------- text encodings on disk

_HEX_RUN = re.compile(rb"[0-9a-fA-F]{16,}")
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{16,}={0,2}")


def decoded_views(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Bytes hidden in text: hex runs (both alignments) and base64 runs (both alphabets)."""
    for match in _HEX_RUN.finditer(data):
        run = match.group()
        for shift in (0, 1):
            part = run[shift:]
            yield f"hex@{match.start() + shift}", binascii.unhexlify(part[: len(part) // 2 * 2])
    for match in _BASE64_RUN.finditer(data):
        run = match.group().rstrip(b"=")
        run = run[: len(run) // 4 * 4]
        if not run:
            continue
        standard = run.replace(b"-", b"+").replace(b"_", b"/")
        yield f"base64@{match.start()}", base64.b64decode(standard)


def scan_bytes(needles: Needles, data: bytes, where: str) -> list[Hit]:
    """Hits in ``data`` itself and in every hex or base64 text inside it."""
    hits = needles.find(data, where)
    for view, decoded in decoded_views(data):
        hits += needles.find(decoded, f"{where} ({view})")
    return hits


def scan_tree(needles: Needles, root: Path) -> list[Hit]:
    """Every regular file under ``root`` (SQLite files, WAL, receipts, keys, caches)."""
    hits = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            hits += scan_bytes(needles, path.read_bytes(), str(path.relative_to(root)))
    return hits


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ---------------------------------------------------------------- snapshot values


def stored_values(blocks: bytes, offsets: list[int], params: GcsParams) -> list[int]:
    """Decode a snapshot stored as blocks back to back with ``offsets`` (start 0, then ends)."""
    values = []
    for index in range(len(offsets) - 1):
        values += decode_block(blocks[offsets[index] : offsets[index + 1]], params, index)
    return values


def u64_list(raw: bytes) -> list[int]:
    return [int.from_bytes(raw[i : i + 8], "big") for i in range(0, len(raw), 8)]


def truncate(digest: bytes, bits: int) -> int:
    """The first ``bits`` bits of a digest, as the snapshot truncates OPRF outputs."""
    size = (bits + 7) // 8
    return int.from_bytes(digest[:size], "big") >> (8 * size - bits)


# ---------------------------------------------------------------- the recorded scenario


def _at(lat: float, lng: float) -> int:
    return int(h3.latlng_to_cell(lat, lng, RES))


GARRISON_CENTER = _at(33.50, 38.62)
"""At-Tanf; the responder's garrison and three outposts lie in four different res-5 cells.

No strike comes near the west and south outposts: whatever the proposer's disk holds
about them could only have leaked."""
OUTPOST_NORTH = _at(33.78, 38.95)
OUTPOST_WEST = _at(33.25, 38.30)
OUTPOST_SOUTH = _at(33.05, 38.75)
BRAVO_BASE = _at(33.56, 38.71)
FAR = _at(34.20, 39.50)

RESPONDER_CELLS = (
    frozenset(h3.grid_disk(GARRISON_CENTER, 2))
    | frozenset(h3.grid_disk(OUTPOST_NORTH, 1))
    | frozenset(h3.grid_disk(OUTPOST_WEST, 1))
    | frozenset(h3.grid_disk(OUTPOST_SOUTH, 2))
)
SHARED_CELLS = frozenset(sorted(h3.grid_ring(GARRISON_CENTER, 2))[:3])
"""The proposer's own map overlaps the garrison in these cells (the mutual count)."""
PROPOSER_CELLS = frozenset(h3.grid_disk(BRAVO_BASE, 2)) | SHARED_CELLS


def _strikes() -> dict[str, frozenset[int]]:
    north7 = h3.cell_to_parent(OUTPOST_NORTH, 7)
    return {
        "at-garrison": frozenset(h3.grid_disk(GARRISON_CENTER, 3)),
        "near-miss": frozenset(h3.grid_ring(GARRISON_CENTER, 5)),
        "outpost-res7": frozenset(h3.cell_to_children(north7, RES)),
        "far": frozenset(h3.grid_disk(FAR, 2)),
    }


STRIKES = _strikes()
REPEATED_STRIKE = "at-garrison"
"""Checked twice: the same zone must not look the same on the wire."""


@dataclass
class Scenario:
    """Two nodes after several checks and two mutual checks through the recording proxy."""

    responder: Node
    proposer: Node
    checks: list[tuple[str, CheckReport]]
    mutuals: list[MutualReport]
    connections: list[Connection]
    serving_copy: Path
    """Both node directories copied while the servers still ran (SQLite WAL files included)."""

    @property
    def calls(self) -> list[GrpcCall]:
        return [call for connection in self.connections for call in grpc_calls(connection)]

    def calls_to(self, path: str) -> list[GrpcCall]:
        return [call for call in self.calls if call.path == path]

    @property
    def strike_cells(self) -> frozenset[int]:
        return frozenset(c for _, report in self.checks for c in report.strike_cells)

    @property
    def strike_tokens(self) -> frozenset[int]:
        return frozenset(t for _, report in self.checks for t in strike_tokens(report.strike_cells))

    def cached_snapshot(self) -> tuple[set[int], int]:
        """The responder's snapshot values as the proposer cached them, and λ."""
        descriptor = self.checks[-1][1].descriptor.descriptor
        params = snapshot_params(descriptor)
        cached = self.proposer.directory / CACHE_DIR / RESPONDER / descriptor.epoch_id.hex()
        ends = u64_list((cached / "offsets").read_bytes())
        values = stored_values((cached / "blocks").read_bytes(), [0, *ends], params)
        assert len(values) == params.count
        return set(values), params.bits

    @property
    def every_cell(self) -> frozenset[int]:
        """Both maps with all ancestors down to res_min, every strike cell and token."""
        return (
            with_ancestors(RESPONDER_CELLS)
            | with_ancestors(PROPOSER_CELLS)
            | self.strike_cells
            | self.strike_tokens
        )


async def run_scenario(root: Path, strikes: Mapping[str, frozenset[int]] = STRIKES) -> Scenario:
    nodes = make_nodes(root, [RESPONDER, PROPOSER])
    responder, proposer = nodes[RESPONDER], nodes[PROPOSER]
    make_epoch(responder, RESPONDER_CELLS)
    make_epoch(proposer, PROPOSER_CELLS)
    server: RunningServer = await start_server(responder, plaintext=True)
    proxy = RecordingProxy(server.port)
    try:
        proposer = route_through(proposer, responder, await proxy.start())
        checks = []
        for name in [*strikes, REPEATED_STRIKE]:
            report = await run_check(proposer, RESPONDER, strikes[name], plaintext=True)
            checks.append((name, report))
        mutuals = [await run_mutual(proposer, RESPONDER, plaintext=True) for _ in range(2)]
        serving_copy = root / "while-serving"
        for node in (responder, proposer):
            shutil.copytree(node.directory, serving_copy / node.name)
    finally:
        await server.stop(grace=1.0)
        await proxy.stop()
    return Scenario(responder, proposer, checks, mutuals, proxy.connections, serving_copy)


def record_scenario(root: Path) -> Scenario:
    return asyncio.run(run_scenario(root))
