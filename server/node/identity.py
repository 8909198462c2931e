"""A node's identity as its peers pin it: name, address, TLS certificate, signing key.

This is the document ``hexpsi identity`` prints and ``hexpsi peer add`` reads;
it holds no secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from nacl.bindings import crypto_core_ed25519_is_valid_point
from nacl.signing import VerifyKey

from hexpsi.protocol.errors import InputError
from hexpsi.server.node import tls
from hexpsi.server.node.config import check_name, parse_address

IDENTITY_VERSION = 1


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
