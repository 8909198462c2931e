"""Node certificates work for gRPC mutual TLS with pinning, and nothing unpinned gets in.

The gRPC tests run a real grpc.aio server on 127.0.0.1 with the standard health
service. Clients dial ``127.0.0.1:port`` and set ``grpc.ssl_target_name_override``
to the server node's *name*: with self-signed pinned certificates that is what
the client checks the server's certificate against.
"""

from __future__ import annotations

import datetime
import ipaddress
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from grpc_health.v1 import _async as health_aio  # what grpc_health.v1.health.aio names
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hexpsi.protocol.errors import InputError
from hexpsi.server.node import tls
from hexpsi.server.node.directory import Node, init_node, load_identity

NOW = time.time()


def test_certificate_names_the_node_and_its_address() -> None:
    key_pem, cert_pem = tls.make_tls_identity("alpha", ["127.0.0.1", "alpha.example"], now=NOW)
    certificate = tls.load_certificate(cert_pem)
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["alpha", "alpha.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alpha"
    key = tls.load_private_key(key_pem, where="tls.key")
    assert isinstance(key.curve, ec.SECP256R1)
    tls.check_key_matches(key, certificate)
    tls.check_peer_certificate(certificate, "alpha", where="test")


def test_certificate_is_a_long_lived_leaf() -> None:
    _, cert_pem = tls.make_tls_identity("alpha", ["0.0.0.0"], now=NOW)
    certificate = tls.load_certificate(cert_pem)
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is False
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime > datetime.timedelta(days=5 * 365)
    assert certificate.not_valid_before_utc.timestamp() < NOW
    # A wildcard listen address is not a name anyone can verify, so it is left out.
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == []


def test_der_and_pem_give_the_same_fingerprint() -> None:
    _, cert_pem = tls.make_tls_identity("alpha", [], now=NOW)
    certificate = tls.load_certificate(cert_pem)
    der = certificate.public_bytes(serialization.Encoding.DER)
    fingerprint = tls.certificate_sha256(tls.load_certificate(der))
    assert fingerprint == tls.certificate_sha256(certificate)
    assert len(fingerprint) == 64


def _self_signed(name: str, *, ca: bool, key: object = None) -> x509.Certificate:
    private = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())  # type: ignore[attr-defined]
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    algorithm = None if isinstance(private, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(private, algorithm)  # type: ignore[arg-type]


def test_pinnable_certificates_are_checked() -> None:
    with pytest.raises(InputError, match="CA certificate"):
        tls.check_peer_certificate(_self_signed("bravo", ca=True), "bravo", where="t")
    with pytest.raises(InputError, match="does not name 'charlie'"):
        tls.check_peer_certificate(_self_signed("bravo", ca=False), "charlie", where="t")
    certificate = _self_signed("bravo", ca=False, key=ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(InputError, match="P-256"):
        tls.check_peer_certificate(certificate, "bravo", where="t")


def test_garbage_is_not_a_certificate() -> None:
    with pytest.raises(InputError, match=r"not a valid X\.509"):
        tls.load_certificate(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(InputError, match=r"not a valid X\.509"):
        tls.load_certificate(b"\x30\x03\x02\x01\x01")


# ------------------------------------------------------------------ real gRPC


class RecordingHealth(health_aio.HealthServicer):  # type: ignore[misc]
    """Health service that remembers which pinned peer each caller was."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.node = node
        self.callers: list[str | None] = []

    async def Check(self, request, context):
        (pem,) = context.auth_context()["x509_pem_cert"]
        peer = self.node.peer_by_certificate(pem)
        self.callers.append(peer.name if peer else None)
        return await super().Check(request, context)


@pytest.fixture
def nodes(tmp_path: Path) -> dict[str, Node]:
    made = {
        name: init_node(tmp_path / name, name=name, listen=f"127.0.0.1:{port}", now=NOW)
        for name, port in (("alpha", 7001), ("bravo", 7002), ("mallory", 7003))
    }
    # alpha and bravo pin each other; mallory is known to nobody.
    made["alpha"].add_peer(load_identity(made["bravo"].own_identity().to_bytes()))
    made["bravo"].add_peer(load_identity(made["alpha"].own_identity().to_bytes()))
    return made


@pytest.fixture
async def alpha_server(nodes: dict[str, Node]) -> AsyncIterator[tuple[int, RecordingHealth]]:
    alpha = nodes["alpha"]
    server = grpc.aio.server()
    servicer = RecordingHealth(alpha)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [(alpha.tls_key_pem, alpha.tls_certificate_pem)],
        root_certificates=alpha.trusted_roots_pem(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    yield port, servicer
    await server.stop(None)


async def _check(
    port: int, *, key: bytes, chain: bytes, server_cert: bytes, target_name: str
) -> grpc.StatusCode:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=server_cert, private_key=key, certificate_chain=chain
    )
    options = [("grpc.ssl_target_name_override", target_name)]
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def test_a_pinned_peer_connects_and_is_identified(
    nodes: dict[str, Node], alpha_server: tuple[int, RecordingHealth]
) -> None:
    port, servicer = alpha_server
    bravo = nodes["bravo"]
    pinned_alpha = bravo.peer("alpha").identity.certificate_pem
    code = await _check(
        port,
        key=bravo.tls_key_pem,
        chain=bravo.tls_certificate_pem,
        server_cert=pinned_alpha,
        target_name="alpha",
    )
    assert code is grpc.StatusCode.OK
    assert servicer.callers == ["bravo"]


async def test_an_unpinned_client_is_refused(
    nodes: dict[str, Node], alpha_server: tuple[int, RecordingHealth]
) -> None:
    port, servicer = alpha_server
    mallory = nodes["mallory"]
    code = await _check(
        port,
        key=mallory.tls_key_pem,
        chain=mallory.tls_certificate_pem,
        server_cert=nodes["alpha"].tls_certificate_pem,
        target_name="alpha",
    )
    assert code is grpc.StatusCode.UNAVAILABLE
    assert servicer.callers == []


async def test_a_client_expecting_another_name_refuses_the_server(
    nodes: dict[str, Node], alpha_server: tuple[int, RecordingHealth]
) -> None:
    port, servicer = alpha_server
    bravo = nodes["bravo"]
    code = await _check(
        port,
        key=bravo.tls_key_pem,
        chain=bravo.tls_certificate_pem,
        server_cert=nodes["alpha"].tls_certificate_pem,
        target_name="charlie",
    )
    assert code is grpc.StatusCode.UNAVAILABLE
    assert servicer.callers == []


async def test_a_pinned_peer_cannot_mint_certificates_for_other_names(
    nodes: dict[str, Node], alpha_server: tuple[int, RecordingHealth]
) -> None:
    """bravo signs a 'charlie' certificate with its own key; its leaf certificate cannot issue."""
    port, servicer = alpha_server
    bravo = nodes["bravo"]
    bravo_key = tls.load_private_key(bravo.tls_key_pem, where="tls.key")
    bravo_cert = tls.load_certificate(bravo.tls_certificate_pem)
    charlie_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "charlie")])
    start = datetime.datetime.now(datetime.UTC)
    minted = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(bravo_cert.subject)
        .public_key(charlie_key.public_key())
        .serial_number(2)
        .not_valid_before(start - datetime.timedelta(hours=1))
        .not_valid_after(start + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("charlie")]), critical=False)
        .sign(bravo_key, hashes.SHA256())
    )
    code = await _check(
        port,
        key=charlie_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        chain=tls.certificate_pem(minted) + bravo.tls_certificate_pem,
        server_cert=nodes["alpha"].tls_certificate_pem,
        target_name="alpha",
    )
    assert code is grpc.StatusCode.UNAVAILABLE
    assert servicer.callers == []
