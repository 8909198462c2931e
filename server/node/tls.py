"""Self-signed X.509 certificates for mutual TLS between pinned peers.

Every node has one ECDSA P-256 key and one self-signed certificate, used both
as its server certificate and as its client certificate. There is no CA: each
side trusts exactly the certificates it pinned (``hexpsi peer add``).

Choices, checked against gRPC's TLS stack (BoringSSL) on loopback:

- ECDSA P-256, not Ed25519: gRPC's handshake fails with Ed25519 certificates
  (``NO_COMMON_SIGNATURE_ALGORITHMS``).
- ``CA:FALSE``: with ``CA:TRUE`` a pinned peer could sign a certificate for any
  other name with its key and the TLS layer would accept it, because a pinned
  certificate is a trust root. A leaf certificate cannot issue others, so the
  pinned certificate itself is the only one that verifies. The server still
  identifies callers by the exact fingerprint (``Node.peer_by_certificate``).
- The subject alternative names hold the node name (DNS) and its address host.
  A client reaching ``127.0.0.1:port`` passes the peer's *name* as
  ``grpc.ssl_target_name_override`` so hostname checking matches the pinned
  name rather than however the address happens to be spelled.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hexpsi.protocol.errors import InputError

DEFAULT_VALIDITY_DAYS = 3650
CLOCK_SKEW = datetime.timedelta(hours=1)
"""Certificates start an hour in the past so a peer whose clock lags still accepts them."""


def _utc(now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now, tz=datetime.UTC)


def _address_name(host: str) -> x509.GeneralName | None:
    """A SAN entry for an address host; None for wildcard listen addresses."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return x509.DNSName(host)
    return None if ip.is_unspecified else x509.IPAddress(ip)


def make_tls_identity(
    name: str, hosts: list[str], *, now: float, validity_days: int = DEFAULT_VALIDITY_DAYS
) -> tuple[bytes, bytes]:
    """A fresh P-256 key and self-signed leaf certificate for node ``name``.

    Returns ``(key_pem, certificate_pem)``; the key is PKCS#8 PEM, unencrypted (the
    caller stores it owner-only). ``hosts`` are the address hosts to add to the
    subject alternative names.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    alt_names: list[x509.GeneralName] = [x509.DNSName(name)]
    for host in hosts:
        entry = _address_name(host)
        if entry is not None and entry not in alt_names:
            alt_names.append(entry)
    start = _utc(now)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + datetime.timedelta(days=validity_days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


def load_certificate(data: bytes | str, *, where: str = "certificate") -> x509.Certificate:
    """Parse one certificate given as PEM (text or bytes) or DER."""
    raw = data.encode("ascii", errors="replace") if isinstance(data, str) else bytes(data)
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError as exc:
        raise InputError(f"not a valid X.509 certificate ({exc})", where=where) from None


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def certificate_der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def certificate_sha256(certificate: x509.Certificate) -> str:
    """Hex SHA-256 of the DER encoding: the fingerprint a peer is pinned by."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def certificate_dns_names(certificate: x509.Certificate) -> list[str]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return extension.value.get_values_for_type(x509.DNSName)


def check_peer_certificate(certificate: x509.Certificate, name: str, *, where: str) -> None:
    """A pinnable certificate: self-signed, a leaf, ECDSA P-256, naming ``name``."""
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InputError("certificate key must be ECDSA P-256", where=where)
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        raise InputError("certificate is not self-signed by its own key", where=where) from None
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.value.ca:
        raise InputError(
            "certificate is a CA certificate; a pinned peer must present a leaf (CA:FALSE)",
            where=where,
            hint="a CA certificate would let that peer mint certificates for other names",
        )
    if name not in certificate_dns_names(certificate):
        raise InputError(
            f"certificate does not name {name!r} in its subject alternative names", where=where
        )


def load_private_key(data: bytes, *, where: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"not a readable PEM private key ({exc})", where=where) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InputError("TLS key must be an ECDSA P-256 key", where=where)
    return key


def check_key_matches(key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
    """The node's TLS key and certificate must belong together or every handshake fails."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != certificate.public_key().public_bytes(der, spki):
        raise InputError("tls.key does not match the public key in tls.crt", where="tls.crt")


def certificate_expires(certificate: x509.Certificate) -> float:
    return certificate.not_valid_after_utc.timestamp()
