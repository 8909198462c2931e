"""The peers a node pins: one file each, their overrides, and changes while a server runs.

``peers/<name>.json`` holds a peer's identity, its certificate fingerprint and
the overrides of the node's defaults (address, budget, window, largest mutual
set). Every change is one atomic file write or removal, so a server watching
the directory (:meth:`PeerBook.signature`) can reload the book at any moment
and see either the old peer or the new one, never half of either.

The file also keeps the peer's key rotations this node applied (``rotations``:
their signed statements, oldest first, the last handing over to the pinned
identity; ``node.peer_rotations``).
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hexpsi.protocol.errors import InputError, LocalProtocolError, Status
from hexpsi.protocol.mutual.messages import BUCKET_MINIMUM as MIN_SET_SIZE
from hexpsi.protocol.mutual.messages import MAX_SET_SIZE
from hexpsi.protocol.rotation import SignedRotation, check_chain
from hexpsi.server.node import tls
from hexpsi.server.node.config import NodeConfig, parse_address
from hexpsi.server.node.files import atomic_write, fsync_directory, read_bytes
from hexpsi.server.node.identity import Identity, identity_from_json

PEERS_DIR = "peers"
PEER_FILE_VERSION = 1


class UnknownPeer(InputError):
    """No peer of that name (or certificate) is pinned."""

    default_status = Status.NOT_FOUND


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
    budget_km2h: float = 0.0
    """Its space-time budget per window for timed elements (km²·h)."""
    rotations: tuple[SignedRotation, ...] = ()
    """The peer's rotation statements this node applied, oldest first."""

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


def peer_overrides(
    address: object,
    budget_km2: object,
    window_hours: object,
    max_set_size: object = None,
    *,
    where: str,
    budget_km2h: object = None,
) -> dict[str, str | float]:
    overrides: dict[str, str | float] = {}
    if budget_km2h is not None:
        overrides["budget_km2h"] = _check_override_number(
            budget_km2h, f"{where}: budget_km2h", allow_zero=True
        )
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


class PeerBook:
    """The pinned peers of one node, read from ``peers/`` and kept in step with it."""

    def __init__(self, directory: Path, config: NodeConfig, *, node_directory: Path) -> None:
        self.directory = directory
        self.config = config
        self.node_directory = node_directory
        self._peers = self._load()

    def _load(self) -> dict[str, Peer]:
        directory = self.directory
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
        overrides = peer_overrides(
            data.get("address"),
            data.get("budget_km2"),
            data.get("window_hours"),
            data.get("max_set_size"),
            where=where,
            budget_km2h=data.get("budget_km2h"),
        )
        rotations = _read_rotations(data.get("rotations"), identity, where=where)
        return self._resolve_peer(identity, overrides, rotations)

    def _resolve_peer(
        self,
        identity: Identity,
        overrides: dict[str, str | float],
        rotations: tuple[SignedRotation, ...] = (),
    ) -> Peer:
        budget = self.config.budget
        return Peer(
            identity=identity,
            certificate_sha256=identity.certificate_sha256,
            address=str(overrides.get("address", identity.address)),
            budget_km2=float(overrides.get("budget_km2", budget.km2_per_window)),
            window_hours=float(overrides.get("window_hours", budget.window_hours)),
            max_set_size=int(overrides.get("max_set_size", self.config.limits.max_mutual_set_size)),
            overrides=overrides,
            budget_km2h=float(overrides.get("budget_km2h", budget.km2h_per_window)),
            rotations=rotations,
        )

    def signature(self) -> tuple[tuple[str, int, int], ...]:
        """Names, sizes and modification times of the peer files: changes when any does."""
        entries = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((path.name, stat.st_size, stat.st_mtime_ns))
        return tuple(entries)

    def reload(self) -> tuple[set[str], set[str], set[str]]:
        """Read ``peers/`` again; returns the names added, removed and changed.

        A peer file that does not load leaves the book as it was (the error is
        raised): a server keeps its last good view rather than drop every peer.
        """
        fresh = self._load()
        old = self._peers
        added = set(fresh) - set(old)
        removed = set(old) - set(fresh)
        changed = {name for name in set(fresh) & set(old) if fresh[name] != old[name]}
        self._peers = fresh
        return added, removed, changed

    def _write(
        self,
        identity: Identity,
        overrides: Mapping[str, str | float],
        rotations: tuple[SignedRotation, ...] = (),
    ) -> Peer:
        record: dict[str, Any] = {
            "version": PEER_FILE_VERSION,
            "identity": identity.to_json(),
            "certificate_sha256": identity.certificate_sha256,
            "address": overrides.get("address"),
            "budget_km2": overrides.get("budget_km2"),
            "window_hours": overrides.get("window_hours"),
            "max_set_size": overrides.get("max_set_size"),
            "rotations": [statement.to_document() for statement in rotations],
        }
        if "budget_km2h" in overrides:
            record["budget_km2h"] = overrides["budget_km2h"]
        path = self.directory / f"{identity.name}.json"
        atomic_write(path, (json.dumps(record, indent=2) + "\n").encode("ascii"))
        peer = self._resolve_peer(identity, dict(overrides), rotations)
        self._peers[peer.name] = peer
        return peer

    def add(
        self, identity: Identity, *, overrides: Mapping[str, str | float], replace: bool = False
    ) -> Peer:
        """Pin ``identity``'s certificate under its name, with optional overrides.

        Refuses a certificate or signing key already pinned for another name
        (callers must be identifiable), and re-pinning an existing name unless
        ``replace``. (The node refuses its own identity before it gets here.)
        """
        existing = self._peers.get(identity.name)
        if existing is not None and not replace:
            raise InputError(
                f"peer {identity.name} is already pinned "
                f"(certificate sha256 {existing.certificate_sha256[:16]}...)",
                hint="pass --replace to pin the new identity instead",
            )
        self._check_unique(identity)
        return self._write(identity, overrides)

    def _check_unique(self, identity: Identity) -> None:
        fingerprint = identity.certificate_sha256
        for other in self._peers.values():
            if other.name == identity.name:
                continue
            if other.certificate_sha256 == fingerprint:
                raise InputError(f"this certificate is already pinned for peer {other.name}")
            if other.identity.signing_public_key == identity.signing_public_key:
                raise InputError(f"this signing key is already pinned for peer {other.name}")

    def update(self, name: str, overrides: Mapping[str, str | float]) -> Peer:
        """Change a pinned peer's overrides (given keys replace, others stay)."""
        peer = self.peer(name)
        return self._write(peer.identity, {**peer.overrides, **overrides}, peer.rotations)

    def repin(self, identity: Identity, rotations: tuple[SignedRotation, ...]) -> Peer:
        """Pin the pinned peer ``identity.name`` to ``identity``, which ``rotations`` hand
        over to (checked by the caller, ``node.peer_rotations``); overrides stay."""
        peer = self.peer(identity.name)
        self._check_unique(identity)
        return self._write(identity, peer.overrides, rotations)

    def remove(self, name: str) -> Peer:
        """Unpin ``name``: its file goes, so it is no longer trusted or answered."""
        peer = self.peer(name)
        path = self.directory / f"{name}.json"
        try:
            path.unlink()
        except OSError as exc:
            raise InputError(f"cannot remove {path}: {exc.strerror or exc}") from None
        fsync_directory(self.directory)
        del self._peers[name]
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
                hint=f"pin it with: hexpsi peer add {self.node_directory} IDENTITY.json",
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
                hint=f"pin one with: hexpsi peer add {self.node_directory} IDENTITY.json",
            )
        return b"".join(peer.identity.certificate_pem for peer in self.peers())


def _read_rotations(data: object, identity: Identity, *, where: str) -> tuple[SignedRotation, ...]:
    """A peer file's ``rotations``: statements that chain to the pinned identity."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise InputError("rotations must be a list of rotation statements", where=where)
    rotations = tuple(SignedRotation.from_document(item, where=where) for item in data)
    try:
        check_chain(
            rotations,
            node=identity.name,
            signing_key=identity.signing_public_key,
            certificate_sha256=bytes.fromhex(identity.certificate_sha256),
        )
    except InputError as error:
        raise InputError(error.message, where=where) from None
    return rotations
