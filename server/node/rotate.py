"""Making a key rotation: new keys, the statement the old key signs, the switch.

``hexpsi rotate`` calls :func:`rotate_keys`. A signing-key rotation makes a
fresh Ed25519 key and re-signs the node's stored epochs with it (the same
descriptor bytes under a new signature: the epoch being served stays the same
epoch, and a peer that already accepted it sees no second descriptor for its
sequence). A TLS rotation makes a fresh P-256 key and self-signed certificate
for the same name and hosts. The statement (``protocol.rotation``) is signed by
the old signing key and accepted by the new one; the switch itself is decided
and finished by ``node.rotations.commit_rotation``, so it is all or nothing.
The keys replaced are kept in ``rotated/<n>/`` and never used again.

A process that loaded the node before the rotation (``hexpsi serve``) still
holds the old keys: restart it. Its next audit entry is refused until then,
since the log's head is the new key's (``node.auditlog``).
"""

from __future__ import annotations

import logging

from nacl.signing import SigningKey

from hexpsi.protocol.epoch.descriptor import SignedDescriptor
from hexpsi.protocol.errors import HexpsiError, InputError
from hexpsi.protocol.rotation import Rotation, SignedRotation
from hexpsi.server.node import tls
from hexpsi.server.node.config import parse_address
from hexpsi.server.node.directory import Node
from hexpsi.server.node.epochs import EPOCHS_DIR
from hexpsi.server.node.files import SECRET_MODE
from hexpsi.server.node.keyfiles import SIGNING_KEY_FILE, TLS_CERT_FILE, TLS_KEY_FILE
from hexpsi.server.node.rotations import commit_rotation, next_sequence

log = logging.getLogger(__name__)

EPOCH_DESCRIPTOR_FILE = "descriptor"
EPOCH_SIGNATURE_FILE = "signature"


def _mode(path_mode: int) -> int:
    return path_mode & 0o777


def _resigned_epochs(
    node: Node, old_key: SigningKey, new_key: SigningKey
) -> list[tuple[str, bytes, int]]:
    """``(path, new signature, mode)`` for every stored epoch the old key signed."""
    root = node.directory / EPOCHS_DIR
    if not root.is_dir():
        return []
    replacements = []
    for directory in sorted(path for path in root.iterdir() if path.name.isdigit()):
        descriptor_path = directory / EPOCH_DESCRIPTOR_FILE
        signature_path = directory / EPOCH_SIGNATURE_FILE
        try:
            encoded = descriptor_path.read_bytes()
            signature = signature_path.read_bytes()
            SignedDescriptor.verify_without_freshness(
                encoded, signature, old_key.verify_key, expected_node=node.name
            )
        except (OSError, HexpsiError) as error:
            log.warning("epoch %s is not re-signed: it does not load (%s)", directory.name, error)
            continue
        replacements.append(
            (
                f"{EPOCHS_DIR}/{directory.name}/{EPOCH_SIGNATURE_FILE}",
                new_key.sign(encoded).signature,
                _mode(signature_path.stat().st_mode),
            )
        )
    return replacements


def rotate_keys(node: Node, *, signing: bool, tls_identity: bool, now: float) -> SignedRotation:
    """Rotate ``node``'s signing key, TLS identity or both; returns the signed statement.

    ``node`` is stale afterwards: load the directory again for the new keys.
    """
    if not (signing or tls_identity):
        raise InputError("a rotation must change the signing key, the TLS identity or both")
    history = node.rotations()
    sequence = next_sequence(node.directory, node.name)
    old_key = node.signing_key
    new_key = SigningKey.generate() if signing else old_key
    old_certificate = tls.load_certificate(node.tls_certificate_pem)
    if tls_identity:
        hosts = [
            parse_address(node.config.listen)[0],
            parse_address(node.config.address)[0],
        ]
        key_pem, certificate_pem = tls.make_tls_identity(node.name, hosts, now=now)
    else:
        key_pem, certificate_pem = node.tls_key_pem, node.tls_certificate_pem
    certificate = tls.load_certificate(certificate_pem)
    used_keys = {bytes(key) for key in node.signing_keys()}
    used_certificates = {
        s.rotation.old_certificate_sha256 for s in history if s.rotation.changes_certificate
    }
    if signing and bytes(new_key.verify_key) in used_keys:
        raise InputError("the new signing key was used before; rotate again")
    if tls_identity and bytes.fromhex(tls.certificate_sha256(certificate)) in used_certificates:
        raise InputError("the new certificate was used before; rotate again")
    rotation = Rotation(
        node=node.name,
        sequence=sequence,
        rotated_at=now,
        old_signing_key=bytes(old_key.verify_key),
        new_signing_key=bytes(new_key.verify_key),
        old_certificate_sha256=bytes.fromhex(tls.certificate_sha256(old_certificate)),
        new_certificate_sha256=bytes.fromhex(tls.certificate_sha256(certificate)),
        new_certificate=tls.certificate_der(certificate),
    )
    statement = SignedRotation.sign(rotation, old_key, new_key)
    old_files: dict[str, bytes] = {}
    replacements: list[tuple[str, bytes, int]] = []
    if signing:
        old_files[SIGNING_KEY_FILE] = bytes(old_key)
        replacements.append((SIGNING_KEY_FILE, bytes(new_key), SECRET_MODE))
        replacements.extend(_resigned_epochs(node, old_key, new_key))
    if tls_identity:
        old_files[TLS_KEY_FILE] = node.tls_key_pem
        old_files[TLS_CERT_FILE] = node.tls_certificate_pem
        cert_mode = _mode((node.directory / TLS_CERT_FILE).stat().st_mode)
        replacements.append((TLS_KEY_FILE, key_pem, SECRET_MODE))
        replacements.append((TLS_CERT_FILE, certificate_pem, cert_mode))
    commit_rotation(
        node.directory,
        statement,
        old_files=old_files,
        replacements=replacements,
        audit_path=node.audit_path,
    )
    return statement
