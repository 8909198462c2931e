"""A node's directory: keys, certificate, pinned peers (configuration: ``node.config``).

Layout (the directory itself is 0700)::

    config.toml      name, listen/advertised address, res, res_min, limits, budget
    signing.key      Ed25519 seed (32 bytes, 0600): signs descriptors, receipts, audit entries
    tls.key          ECDSA P-256 key, PKCS#8 PEM (0600)
    tls.crt          self-signed leaf certificate for this node (PEM)
    oprf.master      OPRF master secret (32 bytes, 0600): epoch keys are derived from it
    peers/<name>.json  a pinned peer: its identity, certificate fingerprint, overrides
    ledger.sqlite3   budgets and session ids (node.ledger)
    audit.sqlite3    the signed audit log (node.auditlog)
    epochs/          this node's epochs as a responder (node.epochs)
    receipts/        receipts this node issued (services.check)
    cache/           peers' snapshots this node downloaded (node.snapshot_cache)
    descriptors/<peer>/<sequence>.bin
                     every signed descriptor accepted from a peer (node.descriptors)
    equivocations/<peer>/<sequence>/first.bin, second.bin
                     two different descriptors a peer signed for one sequence: the proof
    checks/          this node's checks: receipt and evidence bundle (clients.check)
    mutual/          receipts of mutual checks, signed by both sides (node.mutual_records)
    theatre.geojson  optional (0600): the GeoJSON Polygon/MultiPolygon this node's positions
                     and strikes must lie in, a copy of the file the operator declared with
                     ``hexpsi init --theatre`` or ``hexpsi theatre``; absent, nothing is bounded

``init_node`` builds the whole directory under a temporary name next to it and
renames it into place, so an interrupted init leaves nothing half-made. Every
file is written atomically; secrets are owner-only from their first byte and a
secret that others can read is refused on load.

Pinning: a peer is trusted as exactly one certificate for exactly one name.
The gRPC server gets the pinned certificates as its client roots, and the
caller is then identified by the SHA-256 fingerprint of the certificate it
presented (:meth:`Node.peer_by_certificate`), never by the name inside it.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from cryptography import x509
from nacl.bindings import crypto_core_ed25519_is_valid_point
from nacl.signing import SigningKey, VerifyKey

from hexpsi.protocol.budget import Allowance
from hexpsi.protocol.errors import InputError, LocalProtocolError, Status
from hexpsi.protocol.geo.resolution import DEFAULT_RES, DEFAULT_RES_MIN
from hexpsi.protocol.geo.theatre import Theatre, read_theatre
from hexpsi.protocol.mutual.messages import BUCKET_MINIMUM as MIN_SET_SIZE
from hexpsi.protocol.mutual.messages import MAX_SET_SIZE
from hexpsi.server.node import tls
from hexpsi.server.node.auditlog import AuditLog
from hexpsi.server.node.config import (
    CONFIG_FILE,
    NodeConfig,
    check_name,
    load_config,
    parse_address,
)
from hexpsi.server.node.files import (
    PRIVATE_DIR_MODE,
    atomic_write,
    fsync_directory,
    make_private_dir,
    read_bytes,
    read_secret,
    write_secret,
)
from hexpsi.server.node.ledger import Allowances, Ledger, Operation

SIGNING_KEY_FILE = "signing.key"
TLS_KEY_FILE = "tls.key"
TLS_CERT_FILE = "tls.crt"
OPRF_MASTER_FILE = "oprf.master"
PEERS_DIR = "peers"
LEDGER_FILE = "ledger.sqlite3"
AUDIT_FILE = "audit.sqlite3"
THEATRE_FILE = "theatre.geojson"

THEATRE_MODE = 0o600
"""Where a node operates is the operator's business: owner-only, like the positions."""
IDENTITY_VERSION = 1
PEER_FILE_VERSION = 1
SEED_SIZE = 32
OPRF_MASTER_SIZE = 32


class UnknownPeer(InputError):
    """No peer of that name (or certificate) is pinned."""

    default_status = Status.NOT_FOUND


# ---------------------------------------------------------------- identities


@dataclass(frozen=True, slots=True)
class Identity:
    """What a node hands its peers out of band: name, address, certificate, signing key."""

    name: str
    address: str
    certificate_pem: bytes
    signing_public_key: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return tls.load_certificate(self.certificate_pem)

    @property
    def certificate_sha256(self) -> str:
        return tls.certificate_sha256(self.certificate)

    @property
    def verify_key(self) -> VerifyKey:
        return VerifyKey(self.signing_public_key)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": IDENTITY_VERSION,
            "name": self.name,
            "address": self.address,
            "tls_certificate": self.certificate_pem.decode("ascii"),
            "signing_public_key": self.signing_public_key.hex(),
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2) + "\n").encode("ascii")


_IDENTITY_KEYS = {"version", "name", "address", "tls_certificate", "signing_public_key"}


def identity_from_json(data: object, *, where: str = "identity") -> Identity:
    """Validate a parsed identity object (see :func:`load_identity`)."""
    if not isinstance(data, dict):
        raise InputError("an identity must be a JSON object", where=where)
    if data.get("version") != IDENTITY_VERSION:
        raise InputError(
            f"identity version must be {IDENTITY_VERSION}, got {data.get('version')!r}", where=where
        )
    missing = sorted(_IDENTITY_KEYS - set(data))
    if missing:
        raise InputError(f"identity is missing {missing[0]!r}", where=where)
    unknown = sorted(set(data) - _IDENTITY_KEYS)
    if unknown:
        raise InputError(f"identity has unknown key {unknown[0]!r}", where=where)
    name = check_name(data["name"], where=where)
    address = data["address"]
    parse_address(address, where=where)
    key_hex = data["signing_public_key"]
    try:
        key = bytes.fromhex(key_hex) if isinstance(key_hex, str) else b""
    except ValueError:
        key = b""
    if len(key) != 32:
        raise InputError("signing_public_key must be 32 bytes as 64 hex digits", where=where)
    if not crypto_core_ed25519_is_valid_point(key):
        raise InputError("signing_public_key is not a valid Ed25519 public key", where=where)
    pem = data["tls_certificate"]
    if not isinstance(pem, str) or not pem.lstrip().startswith("-----BEGIN CERTIFICATE-----"):
        raise InputError("tls_certificate must be one PEM certificate", where=where)
    certificate = tls.load_certificate(pem, where=where)
    tls.check_peer_certificate(certificate, name, where=where)
    return Identity(name, address, tls.certificate_pem(certificate), key)


def load_identity(data: bytes, *, where: str = "identity") -> Identity:
    """Parse and fully check an identity file: PEM, key, name syntax, address."""
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"not valid JSON ({exc})", where=where) from None
    except RecursionError:
        raise InputError("not usable JSON: nested too deeply", where=where) from None
    return identity_from_json(parsed, where=where)


# ---------------------------------------------------------------- peers


@dataclass(frozen=True, slots=True)
class Peer:
    """A pinned peer with its effective address and budget (overrides or node defaults)."""

    identity: Identity
    certificate_sha256: str
    address: str
    budget_km2: float
    window_hours: float
    max_set_size: int
    overrides: Mapping[str, str | float]

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def window_seconds(self) -> float:
        return self.window_hours * 3600.0


def _check_override_number(value: object, what: str, *, allow_zero: bool) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number) and (number > 0 or (allow_zero and number == 0)):
            return number
    rule = ">= 0" if allow_zero else "> 0"
    raise InputError(f"{what} must be a finite number {rule}, got {value!r}")


def _peer_overrides(
    address: object,
    budget_km2: object,
    window_hours: object,
    max_set_size: object = None,
    *,
    where: str,
) -> dict[str, str | float]:
    overrides: dict[str, str | float] = {}
    if address is not None:
        host, port = parse_address(address, where=where)
        overrides["address"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if budget_km2 is not None:
        overrides["budget_km2"] = _check_override_number(
            budget_km2, f"{where}: budget_km2", allow_zero=True
        )
    if window_hours is not None:
        overrides["window_hours"] = _check_override_number(
            window_hours, f"{where}: window_hours", allow_zero=False
        )
    if max_set_size is not None:
        if (
            isinstance(max_set_size, bool)
            or not isinstance(max_set_size, int)
            or not MIN_SET_SIZE <= max_set_size <= MAX_SET_SIZE
        ):
            raise InputError(
                f"{where}: max_set_size must be an integer {MIN_SET_SIZE}..{MAX_SET_SIZE}, "
                f"got {max_set_size!r}"
            )
        overrides["max_set_size"] = max_set_size
    return overrides


# ---------------------------------------------------------------- the node


class Node:
    """Everything a node keeps on disk, loaded and checked."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise InputError(
                f"{self.directory} is not a hexpsi node directory",
                hint=f"create one: hexpsi init {self.directory} --name NAME --listen HOST:PORT",
            )
        self.config = load_config(self.directory / CONFIG_FILE)
        self.signing_key = self._load_signing_key()
        self.tls_key_pem, self.tls_certificate_pem = self._load_tls()
        self.oprf_master = read_secret(self.directory / OPRF_MASTER_FILE, what="OPRF master secret")
        if len(self.oprf_master) != OPRF_MASTER_SIZE:
            raise InputError(
                f"OPRF master secret must be {OPRF_MASTER_SIZE} bytes, "
                f"found {len(self.oprf_master)}",
                where=OPRF_MASTER_FILE,
            )
        self._peers = self._load_peers()

    def __repr__(self) -> str:
        return f"Node(name={self.name!r}, directory={str(self.directory)!r})"

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def certificate_sha256(self) -> str:
        return tls.certificate_sha256(tls.load_certificate(self.tls_certificate_pem))

    @property
    def ledger_path(self) -> Path:
        return self.directory / LEDGER_FILE

    @property
    def audit_path(self) -> Path:
        return self.directory / AUDIT_FILE

    def open_ledger(self) -> Ledger:
        return Ledger(self.ledger_path)

    def open_audit_log(self) -> AuditLog:
        return AuditLog(self.audit_path, self.signing_key)

    # -- theatre

    @property
    def theatre_path(self) -> Path:
        return self.directory / THEATRE_FILE

    def theatre(self) -> Theatre | None:
        """The declared theatre, or None when this node bounds nothing."""
        if not self.theatre_path.exists():
            return None
        data = read_bytes(self.theatre_path, what="theatre")
        return read_theatre(data, source=str(self.theatre_path))

    def set_theatre(self, data: bytes, *, source: str) -> Theatre:
        """Check ``data`` (read from ``source``) as a theatre and keep a copy of it."""
        theatre = read_theatre(data, source=source)
        atomic_write(self.theatre_path, data, mode=THEATRE_MODE)
        return theatre

    def clear_theatre(self) -> bool:
        """Remove the declared theatre, readable or not; False if there was none."""
        try:
            self.theatre_path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise InputError(f"cannot remove {self.theatre_path}: {exc.strerror or exc}") from None
        fsync_directory(self.directory)
        return True

    def _load_signing_key(self) -> SigningKey:
        seed = read_secret(self.directory / SIGNING_KEY_FILE, what="signing key")
        if len(seed) != SEED_SIZE:
            raise InputError(
                f"expected a {SEED_SIZE}-byte Ed25519 seed, found {len(seed)} bytes",
                where=SIGNING_KEY_FILE,
            )
        return SigningKey(seed)

    def _load_tls(self) -> tuple[bytes, bytes]:
        key_pem = read_secret(self.directory / TLS_KEY_FILE, what="TLS private key")
        cert_pem = read_bytes(self.directory / TLS_CERT_FILE, what="TLS certificate")
        key = tls.load_private_key(key_pem, where=TLS_KEY_FILE)
        certificate = tls.load_certificate(cert_pem, where=TLS_CERT_FILE)
        tls.check_key_matches(key, certificate)
        tls.check_peer_certificate(certificate, self.config.name, where=TLS_CERT_FILE)
        return key_pem, cert_pem

    # -- identity

    def own_identity(self) -> Identity:
        return Identity(
            self.name,
            self.config.address,
            self.tls_certificate_pem,
            bytes(self.signing_key.verify_key),
        )

    def identity(self) -> dict[str, Any]:
        """The identity document to hand to peers (``hexpsi identity``)."""
        return self.own_identity().to_json()

    # -- peers

    def _load_peers(self) -> dict[str, Peer]:
        directory = self.directory / PEERS_DIR
        if not directory.is_dir():
            raise InputError("missing peers directory", where=PEERS_DIR)
        peers: dict[str, Peer] = {}
        for path in sorted(directory.glob("*.json")):
            peer = self._read_peer_file(path)
            peers[peer.name] = peer
        return peers

    def _read_peer_file(self, path: Path) -> Peer:
        where = f"{PEERS_DIR}/{path.name}"
        try:
            data = json.loads(read_bytes(path, what="peer file"))
        except ValueError as exc:
            raise InputError(f"not valid JSON ({exc})", where=where) from None
        except RecursionError:
            raise InputError("not usable JSON: nested too deeply", where=where) from None
        if not isinstance(data, dict) or data.get("version") != PEER_FILE_VERSION:
            raise InputError(f"not a version {PEER_FILE_VERSION} peer file", where=where)
        identity = identity_from_json(data.get("identity"), where=where)
        if path.stem != identity.name:
            raise InputError(f"holds the identity of {identity.name!r}", where=where)
        if data.get("certificate_sha256") != identity.certificate_sha256:
            raise InputError(
                "the pinned fingerprint does not match the stored certificate", where=where
            )
        overrides = _peer_overrides(
            data.get("address"),
            data.get("budget_km2"),
            data.get("window_hours"),
            data.get("max_set_size"),
            where=where,
        )
        return self._resolve_peer(identity, overrides)

    def _resolve_peer(self, identity: Identity, overrides: dict[str, str | float]) -> Peer:
        budget = self.config.budget
        return Peer(
            identity=identity,
            certificate_sha256=identity.certificate_sha256,
            address=str(overrides.get("address", identity.address)),
            budget_km2=float(overrides.get("budget_km2", budget.km2_per_window)),
            window_hours=float(overrides.get("window_hours", budget.window_hours)),
            max_set_size=int(overrides.get("max_set_size", self.config.limits.max_mutual_set_size)),
            overrides=overrides,
        )

    def allowances(self, peer: Peer, operation: Operation) -> Allowances:
        """What a request from (or about) ``peer`` is charged against.

        The peer's area budget and the node-wide one always; a peer's own mutual
        checks also count against its mutual-check allowance.
        """
        budget = self.config.budget
        mutual_calls = None
        if operation is Operation.MUTUAL:
            mutual_calls = Allowance(
                budget.mutual_checks_per_window,
                peer.window_seconds,
                name=f"{peer.name}'s mutual-check allowance",
                unit="checks",
            )
        return Allowances(
            peer=Allowance(peer.budget_km2, peer.window_seconds, name=f"{peer.name}'s area budget"),
            node=Allowance(
                budget.node_km2_per_window,
                budget.window_seconds,
                name=f"node {self.name}'s area budget for all peers together",
            ),
            mutual_calls=mutual_calls,
        )

    def add_peer(
        self,
        identity: Identity,
        *,
        address: str | None = None,
        budget_km2: float | None = None,
        window_hours: float | None = None,
        max_set_size: int | None = None,
        replace: bool = False,
    ) -> Peer:
        """Pin ``identity``'s certificate under its name, with optional overrides.

        Refuses this node's own name or certificate, a certificate or signing key
        already pinned for another name (callers must be identifiable), and
        re-pinning an existing name unless ``replace``.
        """
        overrides = _peer_overrides(address, budget_km2, window_hours, max_set_size, where="peer")
        fingerprint = identity.certificate_sha256
        if identity.name == self.name or fingerprint == self.certificate_sha256:
            raise InputError(f"{identity.name!r} is this node's own identity, not a peer")
        existing = self._peers.get(identity.name)
        if existing is not None and not replace:
            raise InputError(
                f"peer {identity.name} is already pinned "
                f"(certificate sha256 {existing.certificate_sha256[:16]}...)",
                hint="pass --replace to pin the new identity instead",
            )
        for other in self._peers.values():
            if other.name == identity.name:
                continue
            if other.certificate_sha256 == fingerprint:
                raise InputError(f"this certificate is already pinned for peer {other.name}")
            if other.identity.signing_public_key == identity.signing_public_key:
                raise InputError(f"this signing key is already pinned for peer {other.name}")
        record: dict[str, Any] = {
            "version": PEER_FILE_VERSION,
            "identity": identity.to_json(),
            "certificate_sha256": fingerprint,
            "address": overrides.get("address"),
            "budget_km2": overrides.get("budget_km2"),
            "window_hours": overrides.get("window_hours"),
            "max_set_size": overrides.get("max_set_size"),
        }
        path = self.directory / PEERS_DIR / f"{identity.name}.json"
        atomic_write(path, (json.dumps(record, indent=2) + "\n").encode("ascii"))
        peer = self._resolve_peer(identity, overrides)
        self._peers[peer.name] = peer
        return peer

    def peers(self) -> list[Peer]:
        """Pinned peers, by name."""
        return [self._peers[name] for name in sorted(self._peers)]

    def peer(self, name: str) -> Peer:
        try:
            return self._peers[name]
        except KeyError:
            known = ", ".join(sorted(self._peers)) or "none yet"
            raise UnknownPeer(
                f"unknown peer {name!r} (pinned peers: {known})",
                hint=f"pin it with: hexpsi peer add {self.directory} IDENTITY.json",
            ) from None

    def peer_by_certificate(self, certificate: bytes | str) -> Peer | None:
        """The peer pinned to exactly this certificate (PEM or DER), if any.

        For identifying a TLS caller from the certificate gRPC verified
        (``context.auth_context()["x509_pem_cert"][0]``).
        """
        fingerprint = tls.certificate_sha256(tls.load_certificate(certificate))
        for peer in self._peers.values():
            if secrets.compare_digest(peer.certificate_sha256, fingerprint):
                return peer
        return None

    def trusted_roots_pem(self) -> bytes:
        """Every pinned certificate, concatenated: the gRPC server's client roots."""
        if not self._peers:
            raise LocalProtocolError(
                "no peers are pinned, so no client could ever be accepted",
                hint=f"pin one with: hexpsi peer add {self.directory} IDENTITY.json",
            )
        return b"".join(peer.identity.certificate_pem for peer in self.peers())


# ---------------------------------------------------------------- init


def _check_target(directory: Path) -> None:
    if not directory.exists():
        return
    if not directory.is_dir():
        raise InputError(f"{directory} exists and is not a directory")
    if (directory / CONFIG_FILE).exists():
        raise InputError(f"{directory} already holds a hexpsi node; refusing to overwrite it")
    if any(directory.iterdir()):
        raise InputError(f"{directory} is not empty; refusing to initialise a node there")


def init_node(
    directory: Path | str,
    *,
    name: str,
    listen: str,
    res: int = DEFAULT_RES,
    res_min: int = DEFAULT_RES_MIN,
    now: float,
    address: str | None = None,
    theatre: bytes | None = None,
) -> Node:
    """Create a new node directory with fresh keys; refuses an existing node.

    ``address`` is what peers dial (defaults to ``listen``); it is required when
    listening on a wildcard address such as ``0.0.0.0``. An existing empty
    directory is accepted and replaced by the new node. ``theatre`` is a GeoJSON
    theatre's bytes, checked before anything is made and kept as ``theatre.geojson``.
    """
    if theatre is not None:
        read_theatre(theatre, source="the theatre")
    target = Path(directory)
    config = NodeConfig.from_dict(
        {
            "name": name,
            "listen": listen,
            "address": address if address is not None else listen,
            "res": res,
            "res_min": res_min,
        },
        where="",
    )
    _check_target(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {target}: {exc.strerror or exc}") from None
    staging = target.parent / f".{target.name}.init-{secrets.token_hex(8)}"
    make_private_dir(staging)
    try:
        _write_new_node(staging, config, now=now)
        if theatre is not None:
            atomic_write(staging / THEATRE_FILE, theatre, mode=THEATRE_MODE)
        try:
            os.replace(staging, target)
        except OSError as exc:
            raise InputError(f"cannot create {target}: {exc.strerror}") from None
        target.chmod(PRIVATE_DIR_MODE)
        fsync_directory(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Node(target)


def _write_new_node(directory: Path, config: NodeConfig, *, now: float) -> None:
    hosts = [parse_address(config.listen)[0], parse_address(config.address)[0]]
    key_pem, cert_pem = tls.make_tls_identity(config.name, hosts, now=now)
    write_secret(directory / SIGNING_KEY_FILE, bytes(SigningKey.generate()))
    write_secret(directory / TLS_KEY_FILE, key_pem)
    atomic_write(directory / TLS_CERT_FILE, cert_pem)
    write_secret(directory / OPRF_MASTER_FILE, os.urandom(OPRF_MASTER_SIZE))
    make_private_dir(directory / PEERS_DIR)
    atomic_write(directory / CONFIG_FILE, tomli_w.dumps(config.to_dict()).encode("utf-8"))
