"""Who may talk to a node, and as whom: mutual TLS with pinned certificates, never names.

A caller is the peer whose pinned certificate it presented: not a name in its
metadata, its SNI or authority, or the subject of some other certificate. The
layers are tested one at a time, with the layer in front of them weakened, so
each would be caught missing on its own: the TLS handshake (pinned
certificates are the only roots, and they are leaves, so no pinned peer can
mint a certificate for another name), pinning (refuses CA certificates), and
the server's identification by exact fingerprint.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hexpsi.protocol.check.messages import Receipt
from hexpsi.protocol.errors import HexpsiError, InputError, Status, Unauthenticated
from hexpsi.server.clients.check import run_check
from hexpsi.server.node.directory import Node, load_identity
from hexpsi.server.rpc.hexpsi.v1 import check_pb2
from hexpsi.server.rpc.status import PEER_METADATA_KEY
from hexpsi.server.services.app import start_server
from hexpsi.server.services.gate import PeerGate
from tests.security.hostile_helpers import (
    OUTSIDER,
    PROPOSER,
    RESPONDER,
    STRIKES,
    audit_kinds,
    check_stub,
    current_descriptor,
    evaluate_request,
    make_epoch,
    make_nodes,
    outcome,
    plain_channel,
    refused,
    serving,
    target_of,
)


@pytest.fixture
def trio(tmp_path: Path) -> dict[str, Node]:
    """alpha serves; bravo and charlie are both pinned by it (and pin it)."""
    nodes = make_nodes(tmp_path, [RESPONDER, PROPOSER, OUTSIDER])
    make_epoch(nodes[RESPONDER])
    return nodes


def certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    ca: bool = False,
) -> bytes:
    """A P-256 certificate for ``name`` (self-signed unless ``issuer`` signs it), as PEM."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    built = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )
    return built.public_bytes(serialization.Encoding.PEM)


def tls_key(node: Node) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(node.tls_key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@asynccontextmanager
async def channel_as(
    server: Node,
    *,
    key_pem: bytes | None,
    chain_pem: bytes | None,
    options: list[tuple[str, str]] | None = None,
) -> AsyncIterator[grpc.aio.Channel]:
    """A TLS channel to ``server`` (trusting its certificate) presenting the given client pair."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=server.tls_certificate_pem,
        private_key=key_pem,
        certificate_chain=chain_pem,
    )
    all_options = [("grpc.ssl_target_name_override", server.name), *(options or [])]
    channel = grpc.aio.secure_channel(target_of(server), credentials, all_options)
    try:
        yield channel
    finally:
        await channel.close(None)


async def evaluate_as(
    channel: grpc.aio.Channel, responder: Node, metadata: tuple[tuple[str, str], ...] = ()
) -> str:
    """Run one query on ``channel``; the proposer named in the signed receipt."""
    stub = check_stub(channel)
    descriptor = await current_descriptor(stub, responder, metadata=metadata)
    reply = await stub.Evaluate(evaluate_request(descriptor.digest), timeout=10, metadata=metadata)
    return Receipt.decode(reply.receipt).proposer


async def handshake_refused(channel: grpc.aio.Channel) -> None:
    code, _ = await outcome(
        check_stub(channel).GetDescriptor(check_pb2.GetDescriptorRequest(), timeout=10)
    )
    assert code == grpc.StatusCode.UNAVAILABLE


# ---------------------------------------------------------------- the handshake


async def test_no_client_certificate_fails_the_handshake(trio: dict[str, Node]) -> None:
    """Checked to fail without the protection: with ``require_client_auth=False`` in
    ``start_server`` the call reached the servicer (UNAUTHENTICATED, not UNAVAILABLE)."""
    alpha = trio[RESPONDER]
    async with serving(alpha) as running:
        async with channel_as(alpha, key_pem=None, chain_pem=None) as channel:
            await handshake_refused(channel)
        assert running.audit.entries() == []


async def test_unpinned_and_self_named_certificates_fail_the_handshake(
    tmp_path: Path, trio: dict[str, Node]
) -> None:
    """A stranger's own certificate; a certificate it made naming bravo; bravo's
    certificate presented with the stranger's key; charlie (pinned) minting a leaf
    for bravo with its own key.

    Checked to fail without the protection: with ``require_client_auth=False`` in
    ``start_server`` (no client certificate requested, so none verified), every
    one of these callers reached the servicer (UNAUTHENTICATED, not UNAVAILABLE).
    """
    alpha, bravo, charlie = trio[RESPONDER], trio[PROPOSER], trio[OUTSIDER]
    stranger = make_nodes(tmp_path / "outside", ["mallory"])["mallory"]
    mallory_key = tls_key(stranger)
    charlie_key = tls_key(charlie)
    charlie_cert = x509.load_pem_x509_certificate(charlie.tls_certificate_pem)
    minted = certificate(PROPOSER, mallory_key, issuer=(charlie_cert, charlie_key))
    presented = {
        "unpinned": (stranger.tls_key_pem, stranger.tls_certificate_pem),
        "self-made bravo": (stranger.tls_key_pem, certificate(PROPOSER, mallory_key)),
        "bravo's certificate, mallory's key": (stranger.tls_key_pem, bravo.tls_certificate_pem),
        "charlie mints bravo": (
            stranger.tls_key_pem,
            minted + charlie.tls_certificate_pem,
        ),
    }
    async with serving(alpha) as running:
        for name, (key_pem, chain_pem) in presented.items():
            async with channel_as(alpha, key_pem=key_pem, chain_pem=chain_pem) as channel:
                try:
                    await handshake_refused(channel)
                except AssertionError as failure:
                    raise AssertionError(name) from failure
        assert running.audit.entries() == []


# ---------------------------------------------------------------- identification


async def test_a_pinned_peer_is_itself_whatever_name_it_sends(trio: dict[str, Node]) -> None:
    """charlie's certificate with bravo's name in the metadata and in the authority:
    served, charged and receipted as charlie. (The SNI a client sends names the
    server it expects, alpha; the server identifies nobody by it either.)

    Checked to fail without the protection: with ``PeerGate.caller`` believing the
    ``hexpsi-peer`` metadata in TLS mode, the receipt named bravo.
    """
    alpha, charlie = trio[RESPONDER], trio[OUTSIDER]
    async with serving(alpha) as running:
        async with channel_as(
            alpha,
            key_pem=charlie.tls_key_pem,
            chain_pem=charlie.tls_certificate_pem,
            options=[("grpc.default_authority", PROPOSER)],
        ) as channel:
            named = await evaluate_as(channel, alpha, metadata=((PEER_METADATA_KEY, PROPOSER),))
        assert named == OUTSIDER
        (entry,) = running.audit.entries()
        assert entry.peer == OUTSIDER


async def test_a_certificate_the_tls_layer_wrongly_trusts_is_still_not_a_peer(
    trio: dict[str, Node],
) -> None:
    """The TLS layer weakened on purpose: charlie's pinned certificate replaced, in the
    server's roots only, by a CA certificate for the same key, so charlie's minted
    leaf for bravo passes the handshake. The servicer identifies callers by exact
    fingerprint, so the minted leaf is nobody: PERMISSION_DENIED, nothing charged.

    Checked to fail without the protection: with ``Node.peer_by_certificate``
    matching the certificate's DNS name instead of its fingerprint, the minted
    leaf was served as bravo.
    """
    alpha, charlie = trio[RESPONDER], trio[OUTSIDER]
    charlie_key = tls_key(charlie)
    charlie_ca = certificate(OUTSIDER, charlie_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate(
        PROPOSER, leaf_key, issuer=(x509.load_pem_x509_certificate(charlie_ca), charlie_key)
    )
    leaf_key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pinned_roots = alpha.trusted_roots_pem()
    alpha.trusted_roots_pem = lambda: pinned_roots + charlie_ca  # type: ignore[method-assign]
    async with serving(alpha) as running:
        async with channel_as(alpha, key_pem=leaf_key_pem, chain_pem=leaf + charlie_ca) as channel:
            error = await refused(
                check_stub(channel).GetDescriptor(check_pb2.GetDescriptorRequest(), timeout=10)
            )
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "not pinned here" in (error.details() or "")
        assert running.audit.entries() == []


def test_pinning_refuses_a_ca_certificate(trio: dict[str, Node]) -> None:
    """Checked to fail without the protection: with the CA test removed from
    ``check_peer_certificate``, the CA identity was pinned."""
    charlie = trio[OUTSIDER]
    identity = charlie.own_identity().to_json()
    identity["tls_certificate"] = certificate(OUTSIDER, tls_key(charlie), ca=True).decode()
    with pytest.raises(InputError, match="CA certificate"):
        load_identity(json.dumps(identity).encode())


def test_a_caller_without_a_certificate_is_unauthenticated(trio: dict[str, Node]) -> None:
    """The gate's own check behind the handshake (which never lets such a caller in)."""

    class NoCertificate:
        def auth_context(self) -> dict[str, list[bytes]]:
            return {}

    with pytest.raises(Unauthenticated):
        PeerGate(trio[RESPONDER]).caller(NoCertificate())  # type: ignore[arg-type]


async def test_a_pinned_peer_cannot_pose_as_another_server(trio: dict[str, Node]) -> None:
    """charlie, pinned by bravo, listens at alpha's address with its own certificate:
    bravo's check against alpha fails at the handshake and keeps nothing.

    Checked to fail without the protection: with ``PeerClient`` trusting every pinned
    certificate (not only the dialled peer's) and no name override, the handshake
    with charlie succeeded (the check then failed later, on the descriptor's
    signature, not as unreachable).
    """
    alpha, bravo, charlie = trio[RESPONDER], trio[PROPOSER], trio[OUTSIDER]
    make_epoch(charlie)
    async with serving(charlie, listen=alpha.config.listen):
        with pytest.raises(HexpsiError, match="unreachable") as caught:
            await run_check(bravo, RESPONDER, STRIKES["direct"])
    assert caught.value.status is Status.UNAVAILABLE
    assert "check" not in audit_kinds(bravo)


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """The real ``hexpsi`` in a process of its own, with gRPC's verbosity left to hexpsi."""
    environment = {k: v for k, v in os.environ.items() if k not in ("GRPC_VERBOSITY", "GRPC_TRACE")}
    return subprocess.run(
        [sys.executable, "-m", "hexpsi.server.cli", *argv],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


async def test_a_server_posing_as_the_peer_is_one_error_line_from_the_real_cli(
    trio: dict[str, Node], tmp_path: Path
) -> None:
    """charlie listens at alpha's address: ``hexpsi check`` fails its handshake and says
    so in one line; gRPC's own handshake report shows only with ``-v``.

    Checked to fail without the protection: without ``GRPC_VERBOSITY=NONE`` set by
    ``main``, grpcio's core printed ``ssl_transport_security.cc:… Handshake failed
    … CERTIFICATE_VERIFY_FAILED`` on stderr before hexpsi's error line.
    """
    alpha, bravo, charlie = trio[RESPONDER], trio[PROPOSER], trio[OUTSIDER]
    make_epoch(charlie)
    strike = tmp_path / "strike.geojson"
    strike.write_text('{"type": "Point", "coordinates": [38.62, 33.50]}')
    argv = ["check", str(bravo.directory), str(strike), "--peer", RESPONDER]
    async with serving(charlie, listen=alpha.config.listen):
        quiet, verbose = await asyncio.gather(
            asyncio.to_thread(_cli, *argv), asyncio.to_thread(_cli, "-v", *argv)
        )
    assert quiet.returncode == 1
    assert quiet.stderr.count("\n") == 1, quiet.stderr
    assert quiet.stderr.startswith("hexpsi: error: peer alpha is unreachable"), quiet.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in quiet.stderr  # the reason, inside the one line
    assert quiet.stdout == ""
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr
    assert "ssl_transport_security" in verbose.stderr  # gRPC's own line, shown with -v
    assert verbose.stderr.splitlines()[-1].startswith("hexpsi: error: peer alpha is unreachable")


# ---------------------------------------------------------------- plaintext


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:0", "10.1.2.3:0", "[::]:0", "[2001:db8::1]:0", "example.com:0"]
)
async def test_plaintext_off_loopback_is_refused_before_anything_opens(
    trio: dict[str, Node], listen: str
) -> None:
    """Checked to fail without the protection: with ``is_loopback`` always true,
    ``start_server`` bound (or tried to bind) the address instead of raising."""
    alpha = trio[RESPONDER]
    with pytest.raises(InputError, match="plaintext is only for loopback"):
        await start_server(alpha, plaintext=True, listen=listen)
    assert not alpha.ledger_path.exists()


async def test_plaintext_on_loopback_still_needs_a_pinned_name(trio: dict[str, Node]) -> None:
    alpha = trio[RESPONDER]
    async with serving(alpha, plaintext=True), plain_channel(alpha) as channel:
        stub = check_stub(channel)
        request = check_pb2.GetDescriptorRequest()
        cases = {
            (): grpc.StatusCode.UNAUTHENTICATED,
            ((PEER_METADATA_KEY, PROPOSER), (PEER_METADATA_KEY, OUTSIDER)): (
                grpc.StatusCode.UNAUTHENTICATED
            ),
            ((PEER_METADATA_KEY, "mallory"),): grpc.StatusCode.PERMISSION_DENIED,
            ((PEER_METADATA_KEY, RESPONDER),): grpc.StatusCode.PERMISSION_DENIED,
        }
        for metadata, code in cases.items():
            error = await refused(stub.GetDescriptor(request, timeout=10, metadata=metadata))
            assert error.code() == code, metadata
        named = ((PEER_METADATA_KEY, PROPOSER),)
        assert await evaluate_as(channel, alpha, metadata=named) == PROPOSER
