"""Every subcommand meets bad files and arguments with one clear line and a non-zero exit.

Missing, garbage and wrongly typed files, out-of-range numbers, unknown peers,
missing node directories and node files corrupted one at a time: ``main``
must return (or exit with) a non-zero code after writing exactly one line to
stderr, and never a traceback. The cases run ``main([...])`` in-process; the
nodes are made once per module and copied before a case damages them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h3.api.basic_int as h3
import pytest
from nacl.signing import SigningKey

from hexpsi.protocol.check.cell_opening import open_committed_cell
from hexpsi.protocol.geo.shapes import Circle, Feature
from hexpsi.protocol.geo.zone import StrikeZone
from hexpsi.protocol.rotation import ACCEPTANCE_LABEL, Rotation, SignedRotation
from hexpsi.server.cli.main import main
from hexpsi.server.clients.check import run_check
from hexpsi.server.demo.scenario import free_loopback_port
from hexpsi.server.node import tls
from hexpsi.server.node.config import CONFIG_FILE
from hexpsi.server.node.directory import (
    AUDIT_FILE,
    LEDGER_FILE,
    OPRF_MASTER_FILE,
    SIGNING_KEY_FILE,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
    Node,
)
from hexpsi.server.node.epochs import CURRENT_FILE, EPOCHS_DIR, EpochStore
from hexpsi.server.node.peers import PEERS_DIR
from hexpsi.server.node.rotate import rotate_keys
from tests.security.hostile_helpers import (
    RESPONDER,
    ServerThread,
    edit_config,
    make_epoch,
    make_nodes,
)
from tests.server.conftest import CENTER

LONELY = "lonely"
ROTATED = "alpha-rotated"
"""A copy of alpha rotated twice (both keys, then the signing key): its statements are
genuine rotations 1 and 2 of the alpha that bravo pins."""
FOLLOWED = "bravo-followed"
"""A copy of bravo that applied both of alpha's rotations."""
BOUNDED = "bounded"
"""A copy of bravo whose theatre (around Paris) holds none of the strikes."""
SEED_FILES = (
    "coalition_protected.geojson",
    "russia_protected.geojson",
    "strike_at_tanf.geojson",
    "strike_far.geojson",
)


@dataclass
class World:
    """Nodes and input files shared by the cases (never modified by them)."""

    root: Path

    def path(self, name: str) -> str:
        return str(self.root / name)

    def rotated_key(self) -> str:
        """The current signing key of the rotated copy of alpha (not its first)."""
        if not (self.root / ROTATED).exists():
            return "00" * 32
        return bytes(Node(self.root / ROTATED).signing_key.verify_key).hex()

    def node_copy(self, name: str, damage: Callable[[Path], object] | None = None) -> str:
        """A fresh copy of node ``name`` (a case may damage it)."""
        copy = self.root / "copies" / f"{name}-{time.monotonic_ns()}"
        shutil.copytree(self.root / name, copy)
        if damage is not None:
            damage(copy)
        return str(copy)


def _write_inputs(root: Path) -> None:
    files: dict[str, bytes] = {
        "garbage.bin": os.urandom(4096),
        "empty.txt": b"",
        "truncated.json": b'{"type": "FeatureCollection", "features": [',
        "list.json": b"[1, 2, 3]",
        "string.json": b'"a point"',
        "deep.json": b"[" * 200_000,
        "not-utf8.json": b'\xff\xfe{"type": "Point"}',
        "no-coordinates.json": b'{"type": "Point"}',
        "off-the-map.json": b'{"type": "Point", "coordinates": [999, 999]}',
        "nan.json": b'{"type": "Point", "coordinates": [NaN, 33.5]}',
        "bad-radius.json": json.dumps(
            {
                "type": "Feature",
                "properties": {"radius_m": "far"},
                "geometry": {"type": "Point", "coordinates": [38.6, 33.5]},
            }
        ).encode(),
        "negative-radius.json": json.dumps(
            {
                "type": "Feature",
                "properties": {"radius_m": -5},
                "geometry": {"type": "Point", "coordinates": [38.6, 33.5]},
            }
        ).encode(),
        "continent.json": json.dumps(
            {
                "type": "Feature",
                "properties": {"radius_m": 3_000_000},
                "geometry": {"type": "Point", "coordinates": [38.6, 33.5]},
            }
        ).encode(),
        "nothing.json": b'{"type": "FeatureCollection", "features": []}',
        "bad.csv": b"lat,lng\nnorth,east\n",
        "out-of-range.csv": b"lat,lng\n91,0\n",
        "overflow.csv": b"lat,lng\n1e400,0\n",
        "strike.csv": f"lat,lng\n{33.50},{38.62}\n".encode(),
        "radius-attribute.json": json.dumps(
            {
                "type": "Feature",
                "properties": {"fid": 1, "Radius_m": 3000},
                "geometry": {"type": "Point", "coordinates": [38.6, 33.5]},
            }
        ).encode(),
        "projected.json": json.dumps(
            {
                "type": "Point",
                "coordinates": [4297000.0, 3963000.0],
                "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}},
            }
        ).encode(),
        "no-header.csv": b"33.5;38.6\r\n33.6;38.7\r\n",
        "two-latitudes.csv": b"lat,lng,Y\n33.5,38.6,33.5\n",
        "theatre-point.json": b'{"type": "Point", "coordinates": [2.35, 48.85]}',
        "theatre-across.json": json.dumps(
            {"type": "Polygon", "coordinates": [[[170, -20], [-170, -20], [-170, -10], [170, -20]]]}
        ).encode(),
        "theatre-paris.json": json.dumps(
            {"type": "Polygon", "coordinates": [[[2, 48], [3, 48], [3, 49], [2, 49], [2, 48]]]}
        ).encode(),
        **_timed_inputs(),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "a-directory").mkdir()
    seeds = root / "garbage-seeds"
    seeds.mkdir()
    for name in SEED_FILES:
        (seeds / name).write_bytes(os.urandom(300))


def _timed_inputs() -> dict[str, bytes]:
    """Files whose times are wrong, each in one way."""
    route = [[38.6, 33.5], [38.61, 33.5], [38.62, 33.51]]
    six, seven = "2026-12-05T06:00:00Z", "2026-12-05T07:00:00Z"

    def feature(geometry: object, **properties: object) -> bytes:
        document = {"type": "Feature", "id": "f", "properties": properties, "geometry": geometry}
        return json.dumps(document).encode()

    line = {"type": "LineString", "coordinates": route}
    point = {"type": "Point", "coordinates": route[0]}
    cubic = {
        "type": "Feature",
        "id": "patrol",
        "geometry": None,
        "temporalGeometry": {
            "type": "MovingPoint",
            "coordinates": route,
            "datetimes": [six, seven, "2026-12-05T08:00:00Z"],
            "interpolation": "Cubic",
        },
    }
    return {
        "times-too-few.json": feature(line, times=[six, seven]),
        "times-backwards.json": feature(line, times=[six, "2026-12-05T08:00:00Z", seven]),
        "times-on-a-point.json": feature(point, times=[six]),
        "time-without-zone.json": feature(
            point, valid_from="2026-12-05T06:00:00", valid_until=seven
        ),
        "valid-from-alone.json": feature(point, valid_from=six),
        "moving-cubic.json": json.dumps(cubic).encode(),
        "strike-valid-from.json": feature(point, valid_from=six, valid_until=seven),
        "position-not-before.json": feature(point, not_before=six, not_after=seven),
        "bad-time-buffer.json": feature(
            point, valid_from=six, valid_until=seven, time_buffer_s=-60
        ),
    }


def _write_documents(root: Path, alpha: Node, bravo: Node) -> None:
    """A real CONFLICT check's evidence (bravo against alpha) and its spoiled copies."""
    zone = StrikeZone((Feature("garrison", (Circle(h3.cell_to_latlng(CENTER), 1000.0),)),))
    target = ServerThread(alpha)
    try:
        report = asyncio.run(run_check(bravo, RESPONDER, zone))
    finally:
        target.stop()
    epoch = EpochStore(alpha).current()
    assert epoch is not None
    try:
        opening = open_committed_cell(
            descriptor=epoch.descriptor,
            keys=epoch.keys,
            snapshot=epoch.verified_snapshot(),
            cell=CENTER,
            rng=os.urandom,
        )
    finally:
        epoch.blocks.close()
    honest = json.loads((report.directory / "evidence.json").read_text())
    response = bytearray(bytes.fromhex(honest["response"]))
    response[-40] ^= 1
    hits = report.result.conflicting_tokens
    v1 = {k: v for k, v in honest.items() if k not in ("zone", "received_at")}
    documents: dict[str, object] = {
        "evidence.json": honest,
        "evidence-tampered.json": {**honest, "response": response.hex()},
        "evidence-cut.json": {
            **honest,
            "positions": [p for p in honest["positions"] if int(p["cell"], 16) not in hits],
        },
        "evidence-empty.json": {**honest, "positions": []},
        "evidence-v1.json": {**v1, "format": "hexpsi/v1/evidence"},
        "evidence-v9.json": {**honest, "format": "hexpsi/v9/evidence"},
    }
    for name, document in documents.items():
        (root / name).write_text(json.dumps(document))
    (root / "opening-v1.json").write_bytes(opening.opening.to_json())


def _forged(victim: Node, signer: SigningKey, *, names_pinned_key: bool) -> SignedRotation:
    """A hand-over of ``victim`` to ``signer``'s key, signed by ``signer``: naming the
    victim's pinned key as old (a bad signature), or its own (not the pinned key)."""
    der = tls.certificate_der(tls.load_certificate(victim.tls_certificate_pem))
    fingerprint = bytes.fromhex(victim.certificate_sha256)
    other = SigningKey.generate()
    old = victim.signing_key.verify_key if names_pinned_key else signer.verify_key
    rotation = Rotation(
        node=victim.name,
        sequence=1,
        rotated_at=time.time(),
        old_signing_key=bytes(old),
        new_signing_key=bytes(other.verify_key),
        old_certificate_sha256=fingerprint,
        new_certificate_sha256=fingerprint,
        new_certificate=der,
    )
    encoded = rotation.encode()
    return SignedRotation(
        rotation,
        encoded,
        signer.sign(encoded).signature,
        other.sign(ACCEPTANCE_LABEL + encoded).signature,
    )


def _write_rotations(root: Path) -> None:
    """alpha's genuine rotations (made on a copy), forged and spoiled ones, and a copy of
    bravo that already applied the genuine ones."""
    shutil.copytree(root / RESPONDER, root / ROTATED)
    first = rotate_keys(Node(root / ROTATED), signing=True, tls_identity=True, now=time.time())
    second = rotate_keys(Node(root / ROTATED), signing=True, tls_identity=False, now=time.time())
    shutil.copytree(root / "bravo", root / FOLLOWED)
    Node(root / FOLLOWED).apply_rotation(RESPONDER, [first, second], now=time.time())
    alpha = Node(root / RESPONDER)
    forger = SigningKey.generate()
    statements = {
        "rotation-1.json": first,
        "rotation-2.json": second,
        "rotation-forged.json": _forged(alpha, forger, names_pinned_key=True),
        "rotation-outsider.json": _forged(alpha, forger, names_pinned_key=False),
    }
    for name, statement in statements.items():
        (root / name).write_bytes(statement.to_json())
    document = json.loads(first.to_json())
    spoiled = {
        "rotation-edited.json": {**document, "new_signing_public_key": "11" * 32},
        "rotation-v9.json": {**document, "format": "hexpsi/v9/rotation"},
        "rotation-unsigned.json": {k: v for k, v in document.items() if k != "signature"},
    }
    for name, data in spoiled.items():
        (root / name).write_text(json.dumps(data))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("cli")
    nodes = make_nodes(root, [RESPONDER, "bravo"])
    make_epoch(nodes[RESPONDER])
    make_nodes(root, [LONELY])
    _write_inputs(root)
    shutil.copytree(root / "bravo", root / BOUNDED)
    Node(root / BOUNDED).set_theatre(
        (root / "theatre-paris.json").read_bytes(), source="theatre-paris.json"
    )
    for name in (RESPONDER, "bravo"):
        (root / f"{name}.json").write_bytes(Node(root / name).own_identity().to_bytes())
    _write_documents(root, nodes[RESPONDER], Node(root / "bravo"))
    identity = json.loads((root / "bravo.json").read_text())
    variants = {
        "identity-bad-key.json": {**identity, "signing_public_key": "00" * 31},
        "identity-bad-cert.json": {**identity, "tls_certificate": "-----BEGIN CERTIFICATE-----"},
        "identity-bad-name.json": {**identity, "name": "Bravo_1"},
        "identity-bad-address.json": {**identity, "address": "bravo"},
        "identity-number-name.json": {**identity, "name": 7},
        "identity-version-2.json": {**identity, "version": 2},
        "identity-extra-key.json": {**identity, "comment": "hi"},
    }
    for name, data in variants.items():
        (root / name).write_text(json.dumps(data))
    _write_rotations(root)
    return World(root)


# ---------------------------------------------------------------- damage to a node


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    def damage(node: Path) -> None:
        path = node / name
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
        path.write_bytes(data)
        path.chmod(mode)

    return damage


def _remove(name: str) -> Callable[[Path], None]:
    def damage(node: Path) -> None:
        path = node / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()

    return damage


def _chmod(name: str, mode: int) -> Callable[[Path], None]:
    return lambda node: (node / name).chmod(mode)


def _interrupted_rotation(node: Path) -> None:
    """A decided rotation whose plan of file moves is not a list: it cannot be finished."""
    pending = node / "rotating"
    pending.mkdir(mode=0o700)
    shutil.copy(node.parent.parent / "rotation-1.json", pending / "statement.json")
    (pending / "moves.json").write_text('{"not": "a list"}')


def _edit_peer_file(node: Path, **changes: object) -> None:
    path = node / PEERS_DIR / "bravo.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _config(**settings: object) -> Callable[[Path], None]:
    return lambda node: edit_config(node, **settings)


NODE_DAMAGE: dict[str, Callable[[Path], object]] = {
    "config garbage": _write(CONFIG_FILE, os.urandom(200)),
    "config not toml": _write(CONFIG_FILE, b"name = \n"),
    "config missing": _remove(CONFIG_FILE),
    "config unknown key": _config(colour="red"),
    "config res as text": _config(res="nine"),
    "config res out of range": _config(res=16),
    "config negative budget": _config(budget={"km2_per_window": -1.0}),
    "config zero message limit": _config(limits={"max_message_bytes": 0}),
    "config listen garbage": _config(listen="nowhere"),
    "signing key short": _write(SIGNING_KEY_FILE, b"\x00" * 5),
    "signing key missing": _remove(SIGNING_KEY_FILE),
    "signing key readable by others": _chmod(SIGNING_KEY_FILE, 0o644),
    "tls key garbage": _write(TLS_KEY_FILE, b"-----BEGIN PRIVATE KEY-----\nxx\n"),
    "tls certificate garbage": _write(TLS_CERT_FILE, os.urandom(300)),
    "tls certificate of another node": lambda node: shutil.copy(
        node.parent.parent / "bravo" / TLS_CERT_FILE, node / TLS_CERT_FILE
    ),
    "oprf master short": _write(OPRF_MASTER_FILE, b"\x01" * 31),
    "peers directory missing": _remove(PEERS_DIR),
    "peer file garbage": _write(f"{PEERS_DIR}/bravo.json", b"{not json"),
    "peer file of another name": lambda node: shutil.copy(
        node / PEERS_DIR / "bravo.json", node / PEERS_DIR / "zulu.json"
    ),
    "peer file with rotations that are no list": lambda node: _edit_peer_file(
        node, rotations="many"
    ),
    "peer file with another node's rotation": lambda node: _edit_peer_file(
        node, rotations=[json.loads((node.parent.parent / "rotation-1.json").read_text())]
    ),
    "rotation record of another node's keys": lambda node: shutil.copytree(
        node.parent.parent / ROTATED / "rotations", node / "rotations"
    ),
    "rotation interrupted with a garbage plan": _interrupted_rotation,
    "peer file with a bad budget": lambda node: (node / PEERS_DIR / "bravo.json").write_text(
        json.dumps(
            {**json.loads((node / PEERS_DIR / "bravo.json").read_text()), "budget_km2": "lots"}
        )
    ),
}


@pytest.mark.parametrize("damage", sorted(NODE_DAMAGE))
@pytest.mark.parametrize("command", ["identity", "peer-list", "audit"])
def test_a_damaged_node_fails_in_one_line(
    world: World, capsys: pytest.CaptureFixture[str], damage: str, command: str
) -> None:
    node = world.node_copy(RESPONDER, NODE_DAMAGE[damage])
    argv = {"identity": ["identity", node], "peer-list": ["peer", "list", node]}.get(
        command, ["audit", node, "--verify"]
    )
    one_line_failure(argv, capsys)


EPOCH_DAMAGE: dict[str, Callable[[Path], object]] = {
    "current garbage": _write(f"{EPOCHS_DIR}/{CURRENT_FILE}", b"seven\n"),
    "current names a missing epoch": _write(f"{EPOCHS_DIR}/{CURRENT_FILE}", b"99\n"),
    "descriptor flipped": lambda node: _flip(node / EPOCHS_DIR / "000001" / "descriptor"),
    "signature garbage": _write(f"{EPOCHS_DIR}/000001/signature", b"\x00" * 64),
    "cells missing": _remove(f"{EPOCHS_DIR}/000001/cells"),
    "cells truncated": _write(f"{EPOCHS_DIR}/000001/cells", b"\x00" * 13),
    "offsets truncated": _write(f"{EPOCHS_DIR}/000001/offsets", b"\x00" * 3),
    "ledger garbage": _write(LEDGER_FILE, b"not a database at all" * 100),
    "audit log garbage": _write(AUDIT_FILE, b"not a database at all" * 100),
}


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", sorted(EPOCH_DAMAGE))
def test_a_damaged_epoch_or_database_fails_in_one_line(
    world: World, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    """The commands that read a node's own epoch and databases: mutual (its own map),
    audit, and serve (which must fail before it starts serving).

    Checked to fail without the protection: before ``BlockFile`` checked its offsets
    file, a truncated one ended in a ``struct.error`` traceback.
    """
    node = world.node_copy(RESPONDER, EPOCH_DAMAGE[damage])
    if "audit" in damage:
        one_line_failure(["audit", node, "--verify"], capsys)
    elif "ledger" in damage:
        one_line_failure(["serve", node], capsys)
    else:
        one_line_failure(["mutual", node, "--peer", "bravo"], capsys)


# ---------------------------------------------------------------- every subcommand


def cases(w: World) -> dict[str, list[str]]:
    """Bad invocations of every subcommand, by name."""
    alpha, bravo, lonely = w.path(RESPONDER), w.path("bravo"), w.path(LONELY)
    bounded = w.path(BOUNDED)
    missing = w.path("no-such-node")
    a_file = w.path("empty.txt")
    strike = w.path("strike.csv")

    def init(directory: str, *options: str) -> list[str]:
        given = dict(zip(options[::2], options[1::2], strict=True))
        named = {"--name": "n", "--listen": "127.0.0.1:7000", **given}
        return ["init", w.path(directory), *(part for item in named.items() for part in item)]

    return {
        # encode
        "encode missing file": ["encode", w.path("nope.geojson")],
        "encode a directory": ["encode", w.path("a-directory")],
        "encode garbage": ["encode", w.path("garbage.bin")],
        "encode empty": ["encode", w.path("empty.txt")],
        "encode truncated json": ["encode", w.path("truncated.json")],
        "encode json list": ["encode", w.path("list.json")],
        "encode json string": ["encode", w.path("string.json")],
        "encode deeply nested json": ["encode", w.path("deep.json")],
        "encode not utf-8": ["encode", w.path("not-utf8.json")],
        "encode no coordinates": ["encode", w.path("no-coordinates.json")],
        "encode off the map": ["encode", w.path("off-the-map.json")],
        "encode nan coordinate": ["encode", w.path("nan.json")],
        "encode radius as text": ["encode", w.path("bad-radius.json")],
        "encode negative radius": ["encode", w.path("negative-radius.json")],
        "encode continent-sized": ["encode", w.path("continent.json")],
        "encode csv words": ["encode", w.path("bad.csv")],
        "encode csv latitude 91": ["encode", w.path("out-of-range.csv")],
        "encode csv overflow": ["encode", w.path("overflow.csv")],
        "encode res 16": ["encode", strike, "--res", "16"],
        "encode res -1": ["encode", strike, "--res", "-1"],
        "encode res as text": ["encode", strike, "--res", "nine"],
        "encode radius nan": ["encode", strike, "--radius-m", "nan"],
        "encode radius inf": ["encode", strike, "--radius-m", "inf"],
        "encode radius negative": ["encode", strike, "--radius-m", "-1"],
        "encode max cells 0": ["encode", strike, "--max-cells", "0"],
        "encode unknown format": ["encode", strike, "--format", "kml"],
        "encode output in a missing directory": ["encode", strike, "-o", w.path("no/such/x")],
        "encode output onto a directory": ["encode", strike, "-o", w.path("a-directory")],
        "encode unknown option": ["encode", strike, "--colour", "red"],
        "encode radius under another name": ["encode", w.path("radius-attribute.json")],
        "encode projected crs": ["encode", w.path("projected.json")],
        "encode csv without header": ["encode", w.path("no-header.csv")],
        "encode csv with two latitudes": ["encode", w.path("two-latitudes.csv")],
        "encode stdin twice": ["encode", "-", "-"],
        "encode a file twice": ["encode", strike, strike],
        "encode radius field in km": ["encode", strike, "--radius-field", "radius_km"],
        "encode empty id field": ["encode", strike, "--id-field", ""],
        "encode without input": ["encode"],
        "encode time buffer in words": ["encode", strike, "--time-buffer", "ten minutes"],
        "encode time buffer in months": ["encode", strike, "--time-buffer", "P1M"],
        "encode negative time buffer": ["encode", strike, "--time-buffer", "-5"],
        "encode window": ["encode", strike, "--window", "PT2H/2026-12-05T08:00:00Z"],
        "encode times shorter than the route": ["encode", w.path("times-too-few.json")],
        "encode times out of order": ["encode", w.path("times-backwards.json")],
        "encode times on a point": ["encode", w.path("times-on-a-point.json")],
        "encode time without a zone": ["encode", w.path("time-without-zone.json")],
        "encode valid_from alone": ["encode", w.path("valid-from-alone.json")],
        "encode moving point with cubic interpolation": ["encode", w.path("moving-cubic.json")],
        "encode negative time_buffer_s": ["encode", w.path("bad-time-buffer.json")],
        # init
        "init existing node": ["init", alpha, "--name", "alpha", "--listen", "127.0.0.1:7001"],
        "init bad name": init("n1", "--name", "Bad_Name"),
        "init listen without port": init("n2", "--listen", "here"),
        "init port out of range": init("n3", "--listen", "1.2.3.4:99999"),
        "init wildcard without address": init("n4", "--listen", "0.0.0.0:7000"),
        "init res 16": init("n5", "--res", "16"),
        "init res_min above res": init("n6", "--res", "7", "--res-min", "8"),
        "init res as text": init("n7", "--res", "x"),
        "init inside a file": init("empty.txt/n8"),
        "init missing name": ["init", w.path("n9"), "--listen", "127.0.0.1:1"],
        "init theatre a point": init("n10", "--theatre", w.path("theatre-point.json")),
        "init theatre across the antimeridian": init(
            "n11", "--theatre", w.path("theatre-across.json")
        ),
        "init missing theatre": init("n12", "--theatre", w.path("nope.json")),
        "init garbage theatre": init("n13", "--theatre", w.path("garbage.bin")),
        # theatre
        "theatre missing node": ["theatre", missing, w.path("theatre-paris.json")],
        "theatre missing file": ["theatre", alpha, w.path("nope.json")],
        "theatre a point": ["theatre", alpha, w.path("theatre-point.json")],
        "theatre across the antimeridian": ["theatre", alpha, w.path("theatre-across.json")],
        "theatre garbage": ["theatre", alpha, w.path("garbage.bin")],
        "theatre deeply nested json": ["theatre", alpha, w.path("deep.json")],
        "theatre projected": ["theatre", alpha, w.path("projected.json")],
        "theatre file and clear": ["theatre", alpha, w.path("theatre-paris.json"), "--clear"],
        "theatre of a damaged node": ["theatre", w.path("a-directory")],
        # identity
        "identity missing node": ["identity", missing],
        "identity of a file": ["identity", a_file],
        "identity output in a missing directory": ["identity", alpha, "-o", w.path("no/x.json")],
        # peer
        "peer add missing node": ["peer", "add", missing, w.path("bravo.json")],
        "peer add missing identity": ["peer", "add", alpha, w.path("nope.json")],
        "peer add garbage identity": ["peer", "add", alpha, w.path("garbage.bin")],
        "peer add identity list": ["peer", "add", alpha, w.path("list.json")],
        "peer add deeply nested identity": ["peer", "add", alpha, w.path("deep.json")],
        "peer add its own identity": ["peer", "add", alpha, w.path("alpha.json")],
        "peer add again": ["peer", "add", alpha, w.path("bravo.json")],
        "peer add negative budget": [
            *("peer", "add", lonely, w.path("bravo.json"), "--budget-km2", "-1"),
        ],
        "peer add nan budget": ["peer", "add", lonely, w.path("bravo.json"), "--budget-km2", "nan"],
        "peer add inf budget": ["peer", "add", lonely, w.path("bravo.json"), "--budget-km2", "inf"],
        "peer add budget as text": [
            *("peer", "add", lonely, w.path("bravo.json"), "--budget-km2", "lots"),
        ],
        "peer add zero window": [
            *("peer", "add", lonely, w.path("bravo.json"), "--window-hours", "0"),
        ],
        "peer add bad address": [
            *("peer", "add", lonely, w.path("bravo.json"), "--address", "bravo:port"),
        ],
        **{
            f"peer add {name.removesuffix('.json')}": ["peer", "add", lonely, w.path(name)]
            for name in (
                "identity-bad-key.json",
                "identity-bad-cert.json",
                "identity-bad-name.json",
                "identity-bad-address.json",
                "identity-number-name.json",
                "identity-version-2.json",
                "identity-extra-key.json",
            )
        },
        "peer without action": ["peer", alpha],
        "peer update unknown peer": ["peer", "update", alpha, "zulu", "--budget-km2", "5"],
        "peer update nothing to change": ["peer", "update", alpha, "bravo"],
        "peer update negative budget": ["peer", "update", alpha, "bravo", "--budget-km2", "-2"],
        "peer update bad address": ["peer", "update", alpha, "bravo", "--address", "nowhere"],
        "peer update missing node": ["peer", "update", missing, "bravo", "--budget-km2", "5"],
        "peer remove unknown peer": ["peer", "remove", alpha, "zulu"],
        "peer remove missing node": ["peer", "remove", missing, "bravo"],
        # status
        "status missing node": ["status", missing],
        "status of a file": ["status", a_file],
        **{
            f"peer update --rotation {case}": ["peer", "update", *target, "--rotation", w.path(f)]
            for case, target, f in (
                ("of an unknown peer", (bravo, "zulu"), "rotation-1.json"),
                ("on a missing node", (missing, RESPONDER), "rotation-1.json"),
                ("missing file", (bravo, RESPONDER), "nope.json"),
                ("garbage", (bravo, RESPONDER), "garbage.bin"),
                ("truncated json", (bravo, RESPONDER), "truncated.json"),
                ("json list", (bravo, RESPONDER), "list.json"),
                ("deeply nested json", (bravo, RESPONDER), "deep.json"),
                ("an identity instead", (bravo, RESPONDER), "alpha.json"),
                ("an evidence bundle instead", (bravo, RESPONDER), "evidence.json"),
                ("signed by the wrong key", (bravo, RESPONDER), "rotation-forged.json"),
                ("from a key never pinned", (bravo, RESPONDER), "rotation-outsider.json"),
                ("for another node", (alpha, "bravo"), "rotation-1.json"),
                ("whose old key is not the pinned one", (bravo, RESPONDER), "rotation-2.json"),
                ("replayed", (w.path(FOLLOWED), RESPONDER), "rotation-2.json"),
                ("older than the one applied", (w.path(FOLLOWED), RESPONDER), "rotation-1.json"),
                ("with an edited field", (bravo, RESPONDER), "rotation-edited.json"),
                ("of another format", (bravo, RESPONDER), "rotation-v9.json"),
                ("without its signature", (bravo, RESPONDER), "rotation-unsigned.json"),
            )
        },
        "peer update --rotation from stdin twice": [
            *("peer", "update", bravo, RESPONDER, "--rotation", "-", "--rotation", "-"),
        ],
        "peer update --rotation with a bad budget": [
            *("peer", "update", bravo, RESPONDER, "--rotation", w.path("rotation-1.json")),
            *("--budget-km2", "-1"),
        ],
        # rotate
        "rotate missing node": ["rotate", missing],
        "rotate a file": ["rotate", a_file],
        "rotate output in a missing directory": ["rotate", alpha, "-o", w.path("no/such/x")],
        "rotate output onto a directory": ["rotate", alpha, "-o", w.path("a-directory")],
        "rotate unknown option": ["rotate", alpha, "--oprf"],
        "peer list missing node": ["peer", "list", missing],
        # positions
        "positions missing node": ["positions", missing, strike],
        "positions missing file": ["positions", alpha, w.path("nope.csv")],
        "positions garbage": ["positions", alpha, w.path("garbage.bin")],
        "positions negative radius": ["positions", alpha, strike, "--radius-m", "-3"],
        "positions radius as text": ["positions", alpha, strike, "--radius-m", "far"],
        "positions continent-sized": ["positions", alpha, w.path("continent.json")],
        "positions points without radius": ["positions", alpha, strike],
        "positions radius under another name": [
            *("positions", alpha, w.path("radius-attribute.json"), "--radius-m", "0"),
        ],
        "positions outside the theatre": ["positions", bounded, strike, "--radius-m", "0"],
        "positions stdin twice": ["positions", alpha, "-", "-", "--radius-m", "0"],
        "positions valid-from in words": [
            *("positions", alpha, strike, "--radius-m", "0", "--valid-from", "soon"),
        ],
        "positions valid-until without a zone": [
            *("positions", alpha, strike, "--radius-m", "0"),
            *("--valid-until", "2030-01-01T00:00:00"),
        ],
        "positions with a strike window": [
            *("positions", alpha, w.path("position-not-before.json"), "--radius-m", "0"),
        ],
        "positions times out of order": [
            *("positions", alpha, w.path("times-backwards.json"), "--radius-m", "0"),
        ],
        "positions valid-until in the past": [
            *("positions", alpha, strike, "--radius-m", "0"),
            *("--valid-until", "2001-01-01T00:00:00Z"),
        ],
        # serve
        "serve missing node": ["serve", missing],
        "serve a node that pinned no one": ["serve", lonely],
        "serve health off loopback": ["serve", alpha, "--health-listen", "0.0.0.0:1"],
        "serve health on the ipv6 wildcard": ["serve", alpha, "--health-listen", "[::]:9400"],
        "serve health on a hostname": ["serve", alpha, "--health-listen", "example.com:9400"],
        "serve metrics off loopback": ["serve", alpha, "--metrics-listen", "10.1.2.3:9464"],
        "serve health malformed": ["serve", alpha, "--health-listen", "nowhere"],
        "serve health without a port": ["serve", alpha, "--health-listen", "127.0.0.1:"],
        "serve metrics port out of range": ["serve", alpha, "--metrics-listen", "127.0.0.1:99999"],
        "serve metrics without an address": ["serve", alpha, "--metrics-listen"],
        # probe
        "probe malformed address": ["probe", "nowhere"],
        "probe nothing listening": ["probe", "127.0.0.1:1"],
        "probe zero timeout": ["probe", "127.0.0.1:1", "--timeout", "0"],
        "probe timeout as text": ["probe", "127.0.0.1:1", "--timeout", "soon"],
        # check
        "check missing node": ["check", missing, strike, "--peer", RESPONDER],
        "check unknown peer": ["check", bravo, strike, "--peer", "zulu"],
        "check missing strike": ["check", bravo, w.path("nope.csv"), "--peer", RESPONDER],
        "check garbage strike": ["check", bravo, w.path("garbage.bin"), "--peer", RESPONDER],
        "check radius nan": ["check", bravo, strike, "--peer", RESPONDER, "--radius-m", "nan"],
        "check without peer": ["check", bravo, strike],
        "check unreachable peer": ["check", bravo, strike, "--peer", RESPONDER],
        "check outside the theatre": ["check", bounded, strike, "--peer", RESPONDER],
        "check radius under another name": [
            *("check", bravo, w.path("radius-attribute.json"), "--peer", RESPONDER),
        ],
        "check projected crs": ["check", bravo, w.path("projected.json"), "--peer", RESPONDER],
        "check a strike twice": ["check", bravo, strike, strike, "--peer", RESPONDER],
        "check window in words": ["check", bravo, strike, "--peer", RESPONDER, "--window", "soon"],
        "check window without a zone": [
            *("check", bravo, strike, "--peer", RESPONDER),
            *("--window", "2026-12-05T06:00:00/PT2H"),
        ],
        "check window out of order": [
            *("check", bravo, strike, "--peer", RESPONDER),
            *("--window", "2026-12-05T08:00:00Z/2026-12-05T06:00:00Z"),
        ],
        "check window in months": [
            *("check", bravo, strike, "--peer", RESPONDER, "--window", "2026-12-05T06:00:00Z/P1M"),
        ],
        "check window of two durations": [
            *("check", bravo, strike, "--peer", RESPONDER, "--window", "PT1H/PT2H"),
        ],
        "check time buffer in words": [
            *("check", bravo, strike, "--peer", RESPONDER, "--time-buffer", "a while"),
        ],
        "check strike with valid_from": [
            *("check", bravo, w.path("strike-valid-from.json"), "--peer", RESPONDER),
        ],
        "check moving point as a strike": [
            *("check", bravo, w.path("moving-cubic.json"), "--peer", RESPONDER),
        ],
        # mutual
        "mutual missing node": ["mutual", missing, "--peer", RESPONDER],
        "mutual unknown peer": ["mutual", alpha, "--peer", "zulu"],
        "mutual without own positions": ["mutual", bravo, "--peer", RESPONDER],
        "mutual unreachable peer": ["mutual", alpha, "--peer", "bravo"],
        # audit
        "audit missing node": ["audit", missing],
        "audit of a file": ["audit", a_file],
        "audit signing key not hex": ["audit", alpha, "--verify", "--signing-key", "xyz"],
        "audit signing key not a point": ["audit", alpha, "--verify", "--signing-key", "ff" * 32],
        "audit signing key without verify": ["audit", alpha, "--signing-key", w.rotated_key()],
        "audit verify from a later key": [
            *("audit", w.path(ROTATED), "--verify", "--signing-key", w.rotated_key()),
        ],
        # evidence
        **{
            f"evidence verify {case}": [
                *("evidence", "verify", w.path(document), "--responder", w.path(identity))
            ]
            for case, document, identity in (
                ("missing file", "nope.json", "alpha.json"),
                ("a directory", "a-directory", "alpha.json"),
                ("garbage", "garbage.bin", "alpha.json"),
                ("empty file", "empty.txt", "alpha.json"),
                ("json list", "list.json", "alpha.json"),
                ("deeply nested json", "deep.json", "alpha.json"),
                ("geojson instead", "no-coordinates.json", "alpha.json"),
                ("wrong format label", "evidence-v9.json", "alpha.json"),
                ("identity of another node", "evidence.json", "bravo.json"),
                ("tampered bundle", "evidence-tampered.json", "alpha.json"),
                ("bundle cut to hide the conflict", "evidence-cut.json", "alpha.json"),
                ("bundle without positions", "evidence-empty.json", "alpha.json"),
                ("v1 bundle", "evidence-v1.json", "alpha.json"),
                ("v1 cell opening", "opening-v1.json", "alpha.json"),
                ("missing identity", "evidence.json", "nope.json"),
                ("garbage identity", "evidence.json", "garbage.bin"),
                ("identity with a bad key", "evidence.json", "identity-bad-key.json"),
            )
        },
        "evidence verify as json, tampered": [
            *("evidence", "verify", w.path("evidence-tampered.json")),
            *("--responder", w.path("alpha.json"), "--json"),
        ],
        "evidence verify without responder": ["evidence", "verify", w.path("evidence.json")],
        "evidence without action": ["evidence"],
        "evidence open missing node": ["evidence", "open", missing, f"{CENTER:x}"],
        "evidence open not a cell": ["evidence", "open", alpha, "zz"],
        "evidence open a number too large": ["evidence", "open", alpha, "f" * 40],
        "evidence open a cell outside the epoch": [
            *("evidence", "open", alpha, f"{h3.cell_to_parent(CENTER, 0):x}"),
        ],
        "evidence open without an epoch": ["evidence", "open", bravo, f"{CENTER:x}"],
        "evidence open output in a missing directory": [
            *("evidence", "open", alpha, f"{CENTER:x}", "-o", w.path("no/such/x")),
        ],
        # demo
        "demo missing seeds": ["demo", "--seeds", w.path("no-seeds")],
        "demo garbage seeds": ["demo", "--seeds", w.path("garbage-seeds")],
        # bench
        "bench unknown workload": ["bench", "--only", "no_such_workload"],
        "bench zero runs": ["bench", "--runs", "0", "--only", "no_such_workload"],
        "bench runs as text": ["bench", "--runs", "many"],
        # the command line itself
        "no command": [],
        "unknown log format": ["--log-format", "xml", "encode", strike],
        "unknown command": ["strike"],
    }


def one_line_failure(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``hexpsi argv``: non-zero exit, exactly one line on stderr, no traceback."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code not in (0, None), (argv, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1, lines
    assert lines[0].startswith("hexpsi"), lines[0]
    return lines[0]


CASE_NAMES = sorted(cases(World(Path("/"))))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_subcommand_refuses_bad_input_in_one_line(
    world: World, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """Checked to fail without the protection: before the fixes this suite brought,
    every usage mistake argparse caught printed a usage block and an error line
    (two or more lines), a deeply nested identity and a directory inside a file
    ended in tracebacks (RecursionError, FileExistsError), and the continent-sized
    positions and strike ran for minutes building a cover of 263 million cells.
    """
    line = one_line_failure(cases(world)[case], capsys)
    assert len(line) < 600, line


ROTATION_CASES = [
    case for case in CASE_NAMES if case.startswith(("peer update --rotation", "rotate "))
]


def _node_files(world: World) -> dict[str, bytes]:
    """Every file of the nodes a rotation case could touch, but the databases."""
    files = {}
    for name in (RESPONDER, "bravo", ROTATED, FOLLOWED):
        for path in sorted((world.root / name).rglob("*")):
            if path.is_file() and ".sqlite3" not in path.name:
                files[str(path.relative_to(world.root))] = path.read_bytes()
    return files


@pytest.mark.parametrize("case", ROTATION_CASES)
def test_a_refused_rotation_changes_nothing(
    world: World, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """No key, peer file, rotation record or epoch changes when a rotation is refused.

    Checked to fail without the protection: with the settings checked after the re-pin
    in ``hexpsi peer update`` (``--rotation`` with ``--budget-km2 -1``), the peer was
    re-pinned to alpha's rotated keys before the budget was refused.
    """
    before = _node_files(world)
    one_line_failure(cases(world)[case], capsys)
    assert _node_files(world) == before


def test_serve_on_a_port_in_use_fails_in_one_line(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    node = world.node_copy(RESPONDER)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        edit_config(Path(node), listen=address, address=address)
        one_line_failure(["serve", node], capsys)


@pytest.mark.parametrize("option", ["--health-listen", "--metrics-listen"])
def test_serve_with_a_monitoring_port_in_use_fails_in_one_line(
    world: World, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    node = world.node_copy(RESPONDER)
    address = f"127.0.0.1:{free_loopback_port()}"
    edit_config(Path(node), listen=address, address=address)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        line = one_line_failure(
            ["serve", node, "--health-listen", "127.0.0.1:0", option, busy], capsys
        )
    assert f"cannot listen on {busy} ({option})" in line


def test_a_second_serve_of_one_node_fails_in_one_line(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two servers of one node on one address would both bind it (and split its calls)."""
    node = Node(world.node_copy(RESPONDER))
    target = ServerThread(node)
    try:
        line = one_line_failure(["serve", str(node.directory)], capsys)
    finally:
        target.stop()
    assert f"a server for this node already listens on {node.config.listen}" in line
    assert "stop it first" in line


def test_plaintext_serve_off_loopback_fails_in_one_line(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    node = world.node_copy(RESPONDER)
    edit_config(Path(node), listen="10.1.2.3:7443", address="10.1.2.3:7443")
    line = one_line_failure(["serve", node, "--plaintext"], capsys)
    assert "only for loopback" in line


def test_a_continent_sized_strike_is_refused_before_it_is_covered(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """alpha serving over mutual TLS, so the strike gets as far as being covered at the
    resolution of alpha's descriptor; a 3,000 km radius is refused there, at once.

    Checked to fail without the protection: without the estimate in
    ``cover_features`` the check ran for minutes building the cover.
    """
    alpha = Node(world.node_copy(RESPONDER))
    bravo = world.node_copy("bravo")
    target = ServerThread(alpha)
    try:
        started = time.monotonic()
        line = one_line_failure(
            ["check", bravo, world.path("continent.json"), "--peer", RESPONDER], capsys
        )
    finally:
        target.stop()
    assert "would cover more than 5,000,000 cells" in line
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    "argv",
    [
        ["nope"],
        ["zz"],
        [f"{h3.cell_to_parent(CENTER, 0):x}"],
    ],
    ids=["missing node", "not a cell", "outside the epoch"],
)
def test_a_refused_evidence_open_writes_nothing(
    world: World, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    node = world.path("nope") if argv == ["nope"] else world.path(RESPONDER)
    cell = f"{CENTER:x}" if argv == ["nope"] else argv[0]
    out = world.root / "opening-out.json"
    one_line_failure(["evidence", "open", node, cell, "-o", str(out)], capsys)
    assert not out.exists()


def test_a_refused_bundle_as_json_says_why_on_stdout(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evidence", "verify", world.path("evidence-cut.json")]
    capsys.readouterr()
    assert main([*argv, "--responder", world.path("alpha.json"), "--json"]) == 1
    captured = capsys.readouterr()
    answer = json.loads(captured.out)
    assert answer["valid"] is False
    assert "lacks" in answer["reason"]
    assert len(captured.err.strip().splitlines()) == 1
