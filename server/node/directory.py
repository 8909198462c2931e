"""A node's directory: keys, certificate, pinned peers (configuration: ``node.config``).

Layout (the directory itself is 0700)::

    config.toml      name, listen/advertised address, res, res_min, limits, budget
    signing.key      Ed25519 seed (32 bytes, 0600): signs descriptors, receipts, audit entries
    tls.key          ECDSA P-256 key, PKCS#8 PEM (0600)
    tls.crt          self-signed leaf certificate for this node (PEM)
    oprf.master      OPRF master secret (32 bytes, 0600): epoch keys are derived from it
    rotations/<n>.json, rotated/<n>/
                     this node's key rotations: the signed statements, the retired keys
                     (node.rotations; made by node.rotate)
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

import logging
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tomli_w
from nacl.signing import SigningKey, VerifyKey

from hexpsi.protocol.budget import VOLUME_UNIT, Allowance
from hexpsi.protocol.errors import HexpsiError, InputError
from hexpsi.protocol.geo.resolution import DEFAULT_RES, DEFAULT_RES_MIN
from hexpsi.protocol.geo.theatre import Theatre, read_theatre
from hexpsi.protocol.rotation import SignedRotation, check_chain
from hexpsi.server.node import peer_rotations, tls
from hexpsi.server.node.auditlog import AuditLog
from hexpsi.server.node.config import (
    CONFIG_FILE,
    NodeConfig,
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
from hexpsi.server.node.identity import Identity, identity_from_json, load_identity
from hexpsi.server.node.keyfiles import SEED_SIZE, SIGNING_KEY_FILE, TLS_CERT_FILE, TLS_KEY_FILE
from hexpsi.server.node.ledger import Allowances, Ledger, Operation
from hexpsi.server.node.peers import PEERS_DIR, Peer, PeerBook, UnknownPeer, peer_overrides
from hexpsi.server.node.rotations import (
    ROTATIONS_DIR,
    finish_pending,
    own_rotations,
    signing_key_history,
)

__all__ = [
    "SEED_SIZE",
    "SIGNING_KEY_FILE",
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
    "Identity",
    "Node",
    "Peer",
    "UnknownPeer",
    "identity_from_json",
    "init_node",
    "load_identity",
]

OPRF_MASTER_FILE = "oprf.master"
LEDGER_FILE = "ledger.sqlite3"
AUDIT_FILE = "audit.sqlite3"
THEATRE_FILE = "theatre.geojson"

THEATRE_MODE = 0o600
"""Where a node operates is the operator's business: owner-only, like the positions."""
OPRF_MASTER_SIZE = 32
log = logging.getLogger(__name__)


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
        # A key rotation that was decided but not finished (a crash) is finished first.
        finish_pending(self.directory, audit_path=self.directory / AUDIT_FILE)
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
        self.book = PeerBook(self.directory / PEERS_DIR, self.config, node_directory=self.directory)
        self._rotations: list[SignedRotation] | None = None
        self.rotations()

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

    # -- key rotations

    def rotations(self) -> list[SignedRotation]:
        """This node's rotation statements, 1 to n, the last handing over to its keys now."""
        if self._rotations is None:
            statements = own_rotations(self.directory, self.name)
            try:
                check_chain(
                    statements,
                    node=self.name,
                    signing_key=bytes(self.signing_key.verify_key),
                    certificate_sha256=bytes.fromhex(self.certificate_sha256),
                )
            except InputError as error:
                raise InputError(error.message, where=ROTATIONS_DIR) from None
            self._rotations = statements
        return list(self._rotations)

    def signing_keys(self) -> list[VerifyKey]:
        """Every signing key this node has had, first first: what its audit log verifies with."""
        return signing_key_history(self.rotations(), self.signing_key.verify_key)

    # -- peers

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
            peer_volume=Allowance(
                peer.budget_km2h,
                peer.window_seconds,
                name=f"{peer.name}'s space-time budget",
                unit=VOLUME_UNIT,
            ),
            node_volume=Allowance(
                budget.node_km2h_per_window,
                budget.window_seconds,
                name=f"node {self.name}'s space-time budget for all peers together",
                unit=VOLUME_UNIT,
            ),
        )

    def peers(self) -> list[Peer]:
        """Pinned peers, by name."""
        return self.book.peers()

    def peer(self, name: str) -> Peer:
        return self.book.peer(name)

    def peer_by_certificate(self, certificate: bytes | str) -> Peer | None:
        """The peer pinned to exactly this certificate (PEM or DER), if any."""
        return self.book.peer_by_certificate(certificate)

    def trusted_roots_pem(self) -> bytes:
        """Every pinned certificate, concatenated: the gRPC server's client roots."""
        return self.book.trusted_roots_pem()

    def add_peer(
        self,
        identity: Identity,
        *,
        address: str | None = None,
        budget_km2: float | None = None,
        window_hours: float | None = None,
        max_set_size: int | None = None,
        replace: bool = False,
        budget_km2h: float | None = None,
    ) -> Peer:
        """Pin ``identity``'s certificate under its name (see :meth:`PeerBook.add`)."""
        if identity.name == self.name or identity.certificate_sha256 == self.certificate_sha256:
            raise InputError(f"{identity.name!r} is this node's own identity, not a peer")
        overrides = peer_overrides(
            address, budget_km2, window_hours, max_set_size, where="peer", budget_km2h=budget_km2h
        )
        return self.book.add(identity, overrides=overrides, replace=replace)

    def update_peer(
        self,
        name: str,
        *,
        address: str | None = None,
        budget_km2: float | None = None,
        window_hours: float | None = None,
        max_set_size: int | None = None,
        budget_km2h: float | None = None,
    ) -> Peer:
        """Change what is given of a pinned peer's address, budgets, window and largest set."""
        changes = peer_overrides(
            address, budget_km2, window_hours, max_set_size, where="peer", budget_km2h=budget_km2h
        )
        if not changes:
            raise InputError(
                "nothing to update",
                hint="give --budget-km2, --budget-km2h, --window-hours, --address or "
                "--max-set-size",
            )
        return self.book.update(name, changes)

    def apply_rotation(
        self, name: str, statements: Sequence[SignedRotation], *, now: float
    ) -> Peer:
        """Re-pin ``name`` through ``statements`` (all of them, in order), and log it.

        ``hexpsi peer update DIR NAME --rotation FILE``; refused, with nothing changed,
        unless each statement hands over from what is pinned by then
        (``node.peer_rotations``).
        """
        peer, applied = peer_rotations.apply_statements(self.book, name, statements)
        self._log_peer_rotations(peer.name, applied, now, via="statement")
        return peer

    def follow_rotations(self, name: str, presented: Sequence[bytes], *, now: float) -> Peer:
        """Re-pin ``name`` as far as the statements it presented with its descriptor lead."""
        peer, applied = peer_rotations.follow_statements(self.book, name, presented)
        if applied:
            log.warning(
                "peer %s rotated its signing key: re-pinned on the strength of rotation %s",
                name,
                ", ".join(str(s.rotation.sequence) for s in applied),
            )
            self._log_peer_rotations(peer.name, applied, now, via="descriptor")
        return peer

    def _log_peer_rotations(
        self, name: str, applied: Sequence[SignedRotation], now: float, *, via: str
    ) -> None:
        try:
            with self.open_audit_log() as audit:
                for statement in applied:
                    details = peer_rotations.audit_details(statement, via=via)
                    audit.append(peer_rotations.PEER_ROTATION_AUDIT_KIND, name, details, now)
        except HexpsiError:
            # The peer is re-pinned (its file says so, statements included); say why the
            # log lacks it rather than hide the re-pin behind this error.
            log.exception("could not log the key rotation of peer %s", name)

    def remove_peer(self, name: str) -> Peer:
        """Unpin ``name``: a running server refuses its next call and ends its open ones."""
        return self.book.remove(name)


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
