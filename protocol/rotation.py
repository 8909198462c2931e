"""Key rotation: a node hands its identity over to new keys with a statement signed by the old.

A node's identity, as its peers pin it, is a signing key and a TLS certificate.
When it makes new ones (``hexpsi rotate``) it signs a *rotation statement* with
its old signing key: the node's name, the rotation's sequence number (1 for its
first rotation), when, the old and new signing public keys, the old and new
certificate fingerprints (SHA-256 of the DER) and the new certificate itself.
The new signing key signs it too (under another label), so a node cannot hand
its identity over to a key it does not hold, such as another node's.

A peer that pinned the old identity accepts the new one on the strength of the
statement alone: the old signing key it names must be the pinned one (and then
its signature proves the pinned node said so), the certificate it names as old
must be the pinned one, the name must be the peer's. Statements chain: each is
signed by the key the one before handed over to, so a peer several rotations
behind follows them in sequence order (:func:`hand_over` for statements an
operator gives, :func:`follow` for the ones a node presents with its
descriptor). Sequence numbers only grow: a statement at or below one already
applied is a replay, and a *different* statement for a sequence already
applied means the old key signed two hand-overs. Keys and certificates are
never handed back to: a statement naming one the peer has seen before is
refused.

Encoding (``Writer``/``Reader``, big-endian, signed as is)::

    b"hexpsi/v1/rotation" | node (text) | sequence u64 | rotated_at f64 |
    old signing key (32) | new signing key (32) |
    old certificate sha256 (32) | new certificate sha256 (32) | new certificate DER (blob)

The old key signs those bytes; the new key signs ``b"hexpsi/v1/rotation-acceptance"``
followed by them. On the wire (the ``rotations`` of a descriptor response) a
statement travels as ``signature | new_key_signature | encoding``; on disk and
between operators as the JSON document of :meth:`SignedRotation.to_json`
(``"format": "hexpsi/v1/rotation"``), whose readable fields must match the
signed encoding it carries.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nacl.bindings import crypto_core_ed25519_is_valid_point
from nacl.signing import SigningKey, VerifyKey

from hexpsi.protocol.crypto.signing import signature_is_valid
from hexpsi.protocol.encoding import Reader, Writer
from hexpsi.protocol.errors import (
    InputError,
    LocalProtocolError,
    RemoteProtocolError,
    VerificationError,
)
from hexpsi.protocol.limits import DIGEST_SIZE, SIGNATURE_SIZE
from hexpsi.protocol.times import rfc3339

ROTATION_LABEL = b"hexpsi/v1/rotation"
ACCEPTANCE_LABEL = b"hexpsi/v1/rotation-acceptance"
ROTATION_FORMAT = "hexpsi/v1/rotation"
KEY_SIZE = 32
MAX_NODE_SIZE = 63
MAX_CERTIFICATE_SIZE = 16 * 1024
MAX_ROTATIONS = 64
"""The most statements a peer reads from one descriptor response."""
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"


def _short(key: bytes) -> str:
    return f"{key.hex()[:16]}..."


@dataclass(frozen=True, slots=True)
class Rotation:
    """What one rotation hands over: from which keys to which, for which node, when."""

    node: str
    sequence: int
    rotated_at: float
    old_signing_key: bytes
    new_signing_key: bytes
    old_certificate_sha256: bytes
    new_certificate_sha256: bytes
    new_certificate: bytes = field(repr=False)
    """The new TLS certificate, DER (equal to the old one when only the signing key changes)."""

    def __post_init__(self) -> None:
        node_size = len(self.node.encode("utf-8"))
        if not 1 <= node_size <= MAX_NODE_SIZE:
            raise LocalProtocolError(f"a node name must be 1..{MAX_NODE_SIZE} bytes")
        if isinstance(self.sequence, bool) or not 1 <= self.sequence < 1 << 64:
            raise LocalProtocolError(
                f"a rotation's sequence must be 1..2^64-1, got {self.sequence}"
            )
        if not math.isfinite(self.rotated_at):
            raise LocalProtocolError("a rotation's time must be finite")
        for what, key in (("old", self.old_signing_key), ("new", self.new_signing_key)):
            if len(key) != KEY_SIZE or not crypto_core_ed25519_is_valid_point(key):
                raise LocalProtocolError(f"the {what} signing key is not an Ed25519 public key")
        for what, digest in (
            ("old", self.old_certificate_sha256),
            ("new", self.new_certificate_sha256),
        ):
            if len(digest) != DIGEST_SIZE:
                raise LocalProtocolError(f"the {what} certificate fingerprint must be 32 bytes")
        if not 1 <= len(self.new_certificate) <= MAX_CERTIFICATE_SIZE:
            raise LocalProtocolError(
                f"the new certificate must be 1..{MAX_CERTIFICATE_SIZE} bytes of DER"
            )
        if hashlib.sha256(self.new_certificate).digest() != self.new_certificate_sha256:
            raise LocalProtocolError("the new certificate does not have the fingerprint named")
        if not (self.changes_signing_key or self.changes_certificate):
            raise LocalProtocolError("a rotation must change the signing key or the certificate")

    @property
    def changes_signing_key(self) -> bool:
        return self.old_signing_key != self.new_signing_key

    @property
    def changes_certificate(self) -> bool:
        return self.old_certificate_sha256 != self.new_certificate_sha256

    @property
    def what(self) -> str:
        """``signing key``, ``TLS certificate`` or ``signing key and TLS certificate``."""
        parts = [
            name
            for name, changed in (
                ("signing key", self.changes_signing_key),
                ("TLS certificate", self.changes_certificate),
            )
            if changed
        ]
        return " and ".join(parts)

    def encode(self) -> bytes:
        return (
            Writer()
            .fixed(ROTATION_LABEL, len(ROTATION_LABEL))
            .text(self.node)
            .u64(self.sequence)
            .f64(self.rotated_at)
            .fixed(self.old_signing_key, KEY_SIZE)
            .fixed(self.new_signing_key, KEY_SIZE)
            .fixed(self.old_certificate_sha256, DIGEST_SIZE)
            .fixed(self.new_certificate_sha256, DIGEST_SIZE)
            .blob(self.new_certificate)
            .getvalue()
        )

    @classmethod
    def decode(cls, data: bytes) -> Rotation:
        reader = Reader(data, what="rotation statement")
        reader.expect(ROTATION_LABEL)
        node = reader.text(max_size=MAX_NODE_SIZE)
        sequence = reader.u64()
        rotated_at = reader.f64()
        old_key = reader.fixed(KEY_SIZE)
        new_key = reader.fixed(KEY_SIZE)
        old_fingerprint = reader.fixed(DIGEST_SIZE)
        new_fingerprint = reader.fixed(DIGEST_SIZE)
        certificate = reader.blob(max_size=MAX_CERTIFICATE_SIZE)
        reader.end()
        try:
            return cls(
                node=node,
                sequence=sequence,
                rotated_at=rotated_at,
                old_signing_key=old_key,
                new_signing_key=new_key,
                old_certificate_sha256=old_fingerprint,
                new_certificate_sha256=new_fingerprint,
                new_certificate=certificate,
            )
        except LocalProtocolError as error:
            raise VerificationError(f"rotation statement is malformed: {error.message}") from None


def certificate_pem(der: bytes) -> str:
    """The PEM text of a DER certificate, 64 characters a line."""
    text = base64.b64encode(der).decode("ascii")
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return "\n".join([_PEM_BEGIN, *lines, _PEM_END]) + "\n"


@dataclass(frozen=True, slots=True)
class SignedRotation:
    """A rotation statement with the old key's signature and the new key's acceptance."""

    rotation: Rotation
    encoded: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    """The old signing key's signature over :attr:`encoded`."""
    new_key_signature: bytes = field(repr=False)
    """The new signing key's signature over ``ACCEPTANCE_LABEL`` + :attr:`encoded`."""

    @classmethod
    def sign(cls, rotation: Rotation, old_key: SigningKey, new_key: SigningKey) -> SignedRotation:
        """Sign ``rotation`` with the keys it names (refused if they are not those)."""
        if bytes(old_key.verify_key) != rotation.old_signing_key:
            raise LocalProtocolError("the old signing key is not the one the rotation names")
        if bytes(new_key.verify_key) != rotation.new_signing_key:
            raise LocalProtocolError("the new signing key is not the one the rotation names")
        encoded = rotation.encode()
        return cls(
            rotation,
            encoded,
            old_key.sign(encoded).signature,
            new_key.sign(ACCEPTANCE_LABEL + encoded).signature,
        )

    @classmethod
    def from_parts(
        cls, encoded: bytes, signature: bytes, new_key_signature: bytes
    ) -> SignedRotation:
        """Decode ``encoded`` and check both signatures against the keys it names.

        That makes the statement self-consistent, nothing more: whether its old key
        may hand anything over is for the caller, who compares it with the key it
        trusts (:meth:`check_hands_over`, :func:`hand_over`, :func:`follow`).
        """
        rotation = Rotation.decode(encoded)
        signed = cls(rotation, bytes(encoded), bytes(signature), bytes(new_key_signature))
        signed.verify()
        return signed

    def verify(self) -> None:
        """Raise :class:`VerificationError` unless both keys signed exactly this statement."""
        rotation = self.rotation
        if not signature_is_valid(
            VerifyKey(rotation.old_signing_key), self.encoded, self.signature
        ):
            raise VerificationError(
                f"rotation {rotation.sequence} of {rotation.node} is not signed by the old "
                f"signing key it names ({_short(rotation.old_signing_key)})"
            )
        if not signature_is_valid(
            VerifyKey(rotation.new_signing_key),
            ACCEPTANCE_LABEL + self.encoded,
            self.new_key_signature,
        ):
            raise VerificationError(
                f"rotation {rotation.sequence} of {rotation.node} is not accepted by the new "
                f"signing key it names ({_short(rotation.new_signing_key)})"
            )
        if Rotation.decode(self.encoded) != rotation:
            raise VerificationError("the rotation statement differs from its signed encoding")

    # -- the wire form

    @property
    def signed_message(self) -> bytes:
        """``signature | new_key_signature | encoding``: one self-verifying byte string."""
        return self.signature + self.new_key_signature + self.encoded

    @classmethod
    def from_signed_message(cls, data: bytes) -> SignedRotation:
        if len(data) <= 2 * SIGNATURE_SIZE:
            raise VerificationError("a signed rotation statement is shorter than its signatures")
        return cls.from_parts(
            data[2 * SIGNATURE_SIZE :],
            data[:SIGNATURE_SIZE],
            data[SIGNATURE_SIZE : 2 * SIGNATURE_SIZE],
        )

    # -- the JSON document

    def to_document(self) -> dict[str, Any]:
        rotation = self.rotation
        return {
            "format": ROTATION_FORMAT,
            "node": rotation.node,
            "sequence": rotation.sequence,
            "rotated_at": rfc3339(rotation.rotated_at),
            "old_signing_public_key": rotation.old_signing_key.hex(),
            "new_signing_public_key": rotation.new_signing_key.hex(),
            "old_certificate_sha256": rotation.old_certificate_sha256.hex(),
            "new_certificate_sha256": rotation.new_certificate_sha256.hex(),
            "new_tls_certificate": certificate_pem(rotation.new_certificate),
            "statement": self.encoded.hex(),
            "signature": self.signature.hex(),
            "new_key_signature": self.new_key_signature.hex(),
        }

    def to_json(self) -> bytes:
        return (json.dumps(self.to_document(), indent=2) + "\n").encode("ascii")

    @classmethod
    def from_document(cls, data: object, *, where: str = "rotation statement") -> SignedRotation:
        """Read a document back: the signed parts decide, the readable ones must agree."""
        if not isinstance(data, Mapping):
            raise InputError("a rotation statement must be a JSON object", where=where)
        if data.get("format") != ROTATION_FORMAT:
            raise InputError(
                f"not a rotation statement: its format is {json.dumps(data.get('format'))[:60]},"
                f" expected {ROTATION_FORMAT}",
                where=where,
            )
        expected = set(_DOCUMENT_KEYS)
        missing = sorted(expected - set(data))
        if missing:
            raise InputError(f"rotation statement is missing {missing[0]!r}", where=where)
        unknown = sorted(set(data) - expected)
        if unknown:
            raise InputError(f"rotation statement has unknown key {unknown[0]!r}", where=where)
        parts = [_hex_field(data, name, where) for name in _SIGNED_KEYS]
        try:
            signed = cls.from_parts(*parts)
        except RemoteProtocolError as error:
            raise InputError(error.message, where=where) from None
        readable = signed.to_document()
        for key in _DOCUMENT_KEYS:
            if not _same(key, data[key], readable[key]):
                raise InputError(
                    f"rotation statement's {key!r} does not match the signed statement",
                    where=where,
                )
        return signed

    @classmethod
    def from_json(cls, data: bytes, *, where: str = "rotation statement") -> SignedRotation:
        try:
            parsed = json.loads(data)
        except (UnicodeDecodeError, ValueError) as error:
            raise InputError(f"not valid JSON ({error})", where=where) from None
        except RecursionError:
            raise InputError("not usable JSON: nested too deeply", where=where) from None
        return cls.from_document(parsed, where=where)

    # -- judging a statement against what a peer pins

    def check_hands_over(self, pinned: Pinned) -> None:
        """Raise :class:`VerificationError` unless this statement hands over from ``pinned``.

        The name must be the pinned node's, the old signing key and certificate the
        pinned ones, the sequence above the newest already applied (the same
        sequence with other content means the old key signed two hand-overs), and
        the new key and certificate ones the peer has never used before. Both
        signatures are checked again.
        """
        rotation = self.rotation
        if rotation.node != pinned.node:
            raise VerificationError(
                f"this rotation statement is for node {rotation.node!r}, not {pinned.node!r}"
            )
        for applied in pinned.rotations:
            if applied.rotation.sequence != rotation.sequence:
                continue
            if applied.encoded == self.encoded:
                raise VerificationError(
                    f"rotation {rotation.sequence} of {pinned.node} was already applied: "
                    "a replayed statement"
                )
            raise VerificationError(
                f"rotation {rotation.sequence} of {pinned.node} differs from the one already "
                "applied: its old signing key signed two different hand-overs",
                hint="keep both statements as proof and ask the peer's operator which is real",
            )
        if rotation.sequence <= pinned.applied:
            raise VerificationError(
                f"rotation {rotation.sequence} of {pinned.node} is older than rotation "
                f"{pinned.applied} already applied: a replayed statement"
            )
        if rotation.old_signing_key != pinned.signing_key:
            raise VerificationError(
                f"rotation {rotation.sequence} hands over from signing key "
                f"{_short(rotation.old_signing_key)}, not from the one pinned for "
                f"{pinned.node} ({_short(pinned.signing_key)})",
                hint="apply the peer's earlier rotation statements first, in order",
            )
        if rotation.old_certificate_sha256 != pinned.certificate_sha256:
            raise VerificationError(
                f"rotation {rotation.sequence} hands over from certificate "
                f"{_short(rotation.old_certificate_sha256)}, not from the one pinned for "
                f"{pinned.node} ({_short(pinned.certificate_sha256)})",
                hint="apply the peer's earlier rotation statements first, in order",
            )
        self.verify()
        if rotation.changes_signing_key and rotation.new_signing_key in pinned.used_keys:
            raise VerificationError(
                f"rotation {rotation.sequence} hands {pinned.node} back to a signing key it "
                "used before; a rotated key is never used again"
            )
        if (
            rotation.changes_certificate
            and rotation.new_certificate_sha256 in pinned.used_certificates
        ):
            raise VerificationError(
                f"rotation {rotation.sequence} hands {pinned.node} back to a certificate it "
                "used before; a rotated certificate is never used again"
            )


_SIGNED_KEYS = ("statement", "signature", "new_key_signature")
_HEX_KEYS = (
    "old_signing_public_key",
    "new_signing_public_key",
    "old_certificate_sha256",
    "new_certificate_sha256",
    *_SIGNED_KEYS,
)
_DOCUMENT_KEYS = (
    "format",
    "node",
    "sequence",
    "rotated_at",
    "old_signing_public_key",
    "new_signing_public_key",
    "old_certificate_sha256",
    "new_certificate_sha256",
    "new_tls_certificate",
    *_SIGNED_KEYS,
)


def _hex_field(data: Mapping[str, Any], name: str, where: str) -> bytes:
    value = data[name]
    try:
        if not isinstance(value, str):
            raise ValueError
        return bytes.fromhex(value)
    except ValueError:
        raise InputError(f"rotation statement's {name!r} must be hex", where=where) from None


def _same(key: str, given: object, expected: object) -> bool:
    if not isinstance(given, type(expected)) or isinstance(given, bool):
        return False
    if key == "new_tls_certificate":
        return str(given).strip() == str(expected).strip()
    if key in _HEX_KEYS:
        return str(given).lower() == expected
    return given == expected


# ---------------------------------------------------------------- following statements


@dataclass(frozen=True, slots=True)
class Pinned:
    """What a peer pins of a node: its keys now and the rotations that led there."""

    node: str
    signing_key: bytes
    certificate_sha256: bytes
    rotations: tuple[SignedRotation, ...] = ()
    """The statements applied so far, in order (empty when pinned from an identity)."""

    @property
    def applied(self) -> int:
        """The newest rotation sequence applied, 0 for none."""
        return max((s.rotation.sequence for s in self.rotations), default=0)

    @property
    def used_keys(self) -> frozenset[bytes]:
        """Signing keys rotated away from: never to be pinned again."""
        return frozenset(
            s.rotation.old_signing_key for s in self.rotations if s.rotation.changes_signing_key
        )

    @property
    def used_certificates(self) -> frozenset[bytes]:
        """Certificates rotated away from: never to be pinned again."""
        return frozenset(
            s.rotation.old_certificate_sha256
            for s in self.rotations
            if s.rotation.changes_certificate
        )

    def after(self, statement: SignedRotation) -> Pinned:
        """What is pinned once ``statement`` is applied."""
        rotation = statement.rotation
        return Pinned(
            node=self.node,
            signing_key=rotation.new_signing_key,
            certificate_sha256=rotation.new_certificate_sha256,
            rotations=(*self.rotations, statement),
        )


def check_chain(
    statements: Sequence[SignedRotation],
    *,
    node: str,
    signing_key: bytes | None = None,
    certificate_sha256: bytes | None = None,
) -> None:
    """Kept statements must read as one chain: raise :class:`InputError` where they do not.

    All for ``node``, in growing sequence order, each handing over from the keys
    the one before handed over to, each signed by both its keys, and (when given)
    the last ending at ``signing_key`` and ``certificate_sha256``: the keys a node
    has, or a peer pins, now.
    """
    before: Rotation | None = None
    for statement in statements:
        rotation = statement.rotation
        try:
            statement.verify()
        except VerificationError as error:
            raise InputError(error.message) from None
        if rotation.node != node:
            raise InputError(f"rotation {rotation.sequence} is of {rotation.node!r}, not {node!r}")
        if before is not None:
            if rotation.sequence <= before.sequence:
                raise InputError(
                    f"rotation {rotation.sequence} comes after rotation {before.sequence}"
                )
            if (rotation.old_signing_key, rotation.old_certificate_sha256) != (
                before.new_signing_key,
                before.new_certificate_sha256,
            ):
                raise InputError(
                    f"rotation {rotation.sequence} does not hand over from the keys rotation "
                    f"{before.sequence} handed over to"
                )
        before = rotation
    if before is None:
        return
    if signing_key is not None and before.new_signing_key != signing_key:
        raise InputError(
            f"rotation {before.sequence} hands over to a signing key that is not the current one"
        )
    if certificate_sha256 is not None and before.new_certificate_sha256 != certificate_sha256:
        raise InputError(
            f"rotation {before.sequence} hands over to a certificate that is not the current one"
        )


def _in_order(statements: Iterable[SignedRotation]) -> list[SignedRotation]:
    return sorted(statements, key=lambda s: s.rotation.sequence)


def hand_over(pinned: Pinned, statements: Sequence[SignedRotation]) -> Pinned:
    """Apply every statement an operator gives, in sequence order, each from the last.

    Strict: any statement that does not hand over from where the one before left
    off is refused with the reason (:meth:`SignedRotation.check_hands_over`).
    """
    if not statements:
        raise InputError("no rotation statement given")
    state = pinned
    for statement in _in_order(statements):
        statement.check_hands_over(state)
        state = state.after(statement)
    return state


def follow(
    pinned: Pinned, statements: Sequence[SignedRotation], *, certificate_may_change: bool
) -> Pinned:
    """Follow the statements a node presents from what is pinned, as far as they lead.

    Lenient about what does not concern this peer: statements already applied, and
    ones from before it pinned this node (their old keys are not where it stands),
    are passed over. A statement that does hand over from the pinned keys is judged
    in full and refused if anything is wrong with it. A node presents its
    statements over a connection authenticated with the certificate pinned here,
    so a statement moving away from that certificate is refused unless
    ``certificate_may_change``.
    """
    if len(statements) > MAX_ROTATIONS:
        raise VerificationError(
            f"{pinned.node} presents {len(statements)} rotation statements (at most "
            f"{MAX_ROTATIONS} are read)"
        )
    state = pinned
    for statement in _in_order(statements):
        rotation = statement.rotation
        if rotation.node != pinned.node:
            raise VerificationError(
                f"{pinned.node} presents a rotation statement for node {rotation.node!r}"
            )
        if rotation.sequence <= state.applied:
            known = [s for s in state.rotations if s.rotation.sequence == rotation.sequence]
            if known and known[0].encoded != statement.encoded:
                statement.check_hands_over(state)  # raises: two hand-overs for one sequence
            continue
        if (
            rotation.old_signing_key != state.signing_key
            or rotation.old_certificate_sha256 != state.certificate_sha256
        ):
            continue
        if rotation.changes_certificate and not certificate_may_change:
            raise VerificationError(
                f"rotation {rotation.sequence} of {pinned.node} changes its TLS certificate, "
                "which a connection made with the pinned certificate cannot hand over",
                hint=f"apply it with: hexpsi peer update DIR {pinned.node} --rotation FILE",
            )
        statement.check_hands_over(state)
        state = state.after(statement)
    return state
