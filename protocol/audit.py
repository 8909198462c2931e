"""The audit log's hash chain and signatures, as pure logic.

Each entry is encoded canonically (versioned, fixed-width integers, length
prefixes, details as canonical JSON), hashed together with the previous entry's
hash, and the hash is signed with the node's Ed25519 key. Changing any field of
any entry changes its hash and breaks the link to the next one; dropping or
swapping entries breaks the sequence numbers; re-signing needs the node's key.

A chain alone cannot reveal that its newest entries were cut off: the shorter
chain is still valid. The log therefore also keeps a signed *head* (entry count
and newest hash). Cutting entries means rolling the head back too, which needs
an earlier copy of the head that someone kept; external anchors (receipts held
by peers, exported heads) cover that case.

Key rotation keeps one chain. A ``key-rotation`` entry is signed by the key in
force before it and carries the node's signed rotation statement
(``protocol.rotation``); the entries after it are signed by the key it hands
over to, and so is the head. :func:`verify_chain` starts from the node's first
signing key (or a list of the keys a verifier knows, first first) and follows
every rotation entry whose statement the key in force signed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey, VerifyKey

from hexpsi.protocol.crypto.signing import signature_is_valid
from hexpsi.protocol.errors import HexpsiError, InputError, VerificationError
from hexpsi.protocol.limits import DIGEST_SIZE
from hexpsi.protocol.rotation import SignedRotation

ENCODING_VERSION = 1
HASH_LABEL = b"hexpsi/v1/audit"
SIGNATURE_LABEL = b"hexpsi/v1/audit-entry-signature"
HEAD_LABEL = b"hexpsi/v1/audit-head"
GENESIS_HASH = bytes(DIGEST_SIZE)
"""The ``prev_hash`` of entry 1."""
ROTATION_KIND = "key-rotation"
"""The entry that hands the log over to the node's next signing key."""

KIND_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MAX_PEER_BYTES = 255
MAX_DETAILS_BYTES = 2**32 - 1


class ChainBroken(VerificationError):
    """The chain fails at entry ``seq`` (the first entry that does not verify)."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"audit entry {seq}: {reason}")
        self.seq = seq
        self.reason = reason


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """One byte string per JSON object: sorted keys, no spaces, ASCII, no NaN."""
    if not isinstance(value, Mapping):
        raise InputError(f"audit details must be a JSON object, got {type(value).__name__}")
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"audit details are not plain JSON: {exc}") from None
    return text.encode("ascii")


def _check_canonical_details(details: bytes) -> None:
    if not isinstance(details, bytes):
        raise InputError("details must be bytes")
    try:
        parsed = json.loads(details)
    except ValueError:
        raise InputError("details are not valid JSON") from None
    if not isinstance(parsed, dict) or canonical_json(parsed) != details:
        raise InputError("details are not a canonical JSON object")


def encode_entry(seq: int, time: float, kind: str, peer: str, details: bytes) -> bytes:
    """The signed content of an entry, one encoding per entry (version 1).

    ``version u8 | seq u64 | time f64 | kind (u8 len) | peer (u8 len) | details (u32 len)``,
    all big-endian, strings UTF-8.
    """
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq < 2**64:
        raise InputError(f"sequence number must be an integer 1..2^64-1, got {seq!r}")
    if isinstance(time, bool) or not isinstance(time, int | float) or not math.isfinite(time):
        raise InputError(f"time must be a finite number of Unix seconds, got {time!r}")
    if not isinstance(kind, str) or not KIND_PATTERN.fullmatch(kind):
        raise InputError(f"entry kind must match {KIND_PATTERN.pattern}, got {kind!r}")
    if not isinstance(peer, str):
        raise InputError(f"peer must be a string, got {type(peer).__name__}")
    peer_bytes = peer.encode("utf-8")
    if len(peer_bytes) > MAX_PEER_BYTES:
        raise InputError(f"peer name is longer than {MAX_PEER_BYTES} bytes")
    _check_canonical_details(details)
    if len(details) > MAX_DETAILS_BYTES:
        raise InputError("details are too large")
    kind_bytes = kind.encode("ascii")
    return b"".join(
        [
            struct.pack(">BQd", ENCODING_VERSION, seq, float(time)),
            struct.pack(">B", len(kind_bytes)),
            kind_bytes,
            struct.pack(">B", len(peer_bytes)),
            peer_bytes,
            struct.pack(">I", len(details)),
            details,
        ]
    )


def entry_hash(prev_hash: bytes, encoding: bytes) -> bytes:
    """``SHA-256(b"hexpsi/v1/audit" || prev_hash || encoding)``."""
    if len(prev_hash) != DIGEST_SIZE:
        raise InputError(f"previous hash must be {DIGEST_SIZE} bytes, got {len(prev_hash)}")
    return hashlib.sha256(HASH_LABEL + prev_hash + encoding).digest()


@dataclass(frozen=True, slots=True)
class Entry:
    """One audit record with its link, hash and signature."""

    seq: int
    time: float
    kind: str
    peer: str
    details: bytes
    prev_hash: bytes
    hash: bytes
    signature: bytes

    def details_object(self) -> dict[str, Any]:
        """The details parsed back into a dict."""
        parsed = json.loads(self.details)
        if not isinstance(parsed, dict):
            raise InputError(f"audit entry {self.seq}: details are not a JSON object")
        return parsed

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view (hashes and signature as hex) for export and display.

        Tolerates a tampered row (wrong types, unparseable details) so a damaged log
        can still be listed and inspected; :func:`verify_chain` is what judges it.
        """
        try:
            details: Any = self.details_object()
        except (ValueError, TypeError, InputError):
            details = _as_text(self.details)
        return {
            "seq": self.seq,
            "time": self.time,
            "kind": self.kind,
            "peer": self.peer,
            "details": details,
            "prev_hash": _as_text(self.prev_hash, hexadecimal=True),
            "hash": _as_text(self.hash, hexadecimal=True),
            "signature": _as_text(self.signature, hexadecimal=True),
        }


def _as_text(value: object, *, hexadecimal: bool = False) -> str:
    if isinstance(value, bytes):
        return value.hex() if hexadecimal else value.decode("utf-8", errors="replace")
    return str(value)


@dataclass(frozen=True, slots=True)
class Head:
    """The signed newest position of a log: how many entries and the newest hash."""

    seq: int
    hash: bytes
    signature: bytes


def _signed_message(digest: bytes) -> bytes:
    # A label keeps an audit signature from being replayed as a signature over any
    # other 32-byte value the node signs (transcript hashes, descriptors).
    return SIGNATURE_LABEL + digest


def _head_message(seq: int, digest: bytes) -> bytes:
    return HEAD_LABEL + struct.pack(">Q", seq) + digest


def sign_entry(
    *,
    seq: int,
    time: float,
    kind: str,
    peer: str,
    details: bytes,
    prev_hash: bytes,
    signing_key: SigningKey,
) -> Entry:
    """Build entry ``seq`` following ``prev_hash``; ``details`` must be canonical JSON."""
    digest = entry_hash(prev_hash, encode_entry(seq, time, kind, peer, details))
    signature = signing_key.sign(_signed_message(digest)).signature
    return Entry(seq, float(time), kind, peer, details, prev_hash, digest, signature)


def sign_head(seq: int, digest: bytes, signing_key: SigningKey) -> Head:
    """Sign the log's newest position (``seq`` 0 with the genesis hash for an empty log)."""
    if len(digest) != DIGEST_SIZE:
        raise InputError(f"head hash must be {DIGEST_SIZE} bytes")
    return Head(seq, digest, signing_key.sign(_head_message(seq, digest)).signature)


def _verify_entry(entry: Entry, expected_seq: int, prev: bytes, verify_key: VerifyKey) -> None:
    if entry.seq != expected_seq:
        if isinstance(entry.seq, int) and entry.seq > expected_seq:
            raise ChainBroken(expected_seq, f"missing (the next entry found is {entry.seq})")
        raise ChainBroken(expected_seq, f"out of order (found entry {entry.seq!r} in its place)")
    if entry.prev_hash != prev:
        raise ChainBroken(entry.seq, "does not link to the previous entry's hash")
    try:
        digest = entry_hash(
            entry.prev_hash,
            encode_entry(entry.seq, entry.time, entry.kind, entry.peer, entry.details),
        )
    except InputError as exc:
        raise ChainBroken(entry.seq, f"malformed ({exc.message})") from None
    if digest != entry.hash:
        raise ChainBroken(entry.seq, "hash does not match its contents")
    if not signature_is_valid(verify_key, _signed_message(digest), entry.signature):
        raise ChainBroken(entry.seq, "signature does not verify")


def rotation_details(statement: SignedRotation) -> dict[str, Any]:
    """The details of the ``key-rotation`` entry that records ``statement``."""
    rotation = statement.rotation
    return {
        "rotation": rotation.sequence,
        "changed": rotation.what,
        "old_signing_key": rotation.old_signing_key.hex(),
        "new_signing_key": rotation.new_signing_key.hex(),
        "old_certificate_sha256": rotation.old_certificate_sha256.hex(),
        "new_certificate_sha256": rotation.new_certificate_sha256.hex(),
        "statement": statement.signed_message.hex(),
    }


def rotation_of(entry: Entry) -> SignedRotation:
    """The rotation statement a ``key-rotation`` entry carries, checked against its details.

    The statement's own signatures are checked (by the old and the new key it
    names); whether the old one was the key in force is :func:`verify_chain`'s
    business.
    """
    details = entry.details_object()
    text = details.get("statement")
    try:
        raw = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        raw = b""
    if not raw:
        raise InputError("its statement is not hex")
    statement = SignedRotation.from_signed_message(raw)
    if details != rotation_details(statement):
        raise InputError("its details do not match the statement it carries")
    return statement


@dataclass(slots=True)
class _Keys:
    """The signing key in force while a chain is read, and the keys a verifier knows."""

    known: list[VerifyKey]
    current: VerifyKey
    changes: int = 0
    last_rotation: int = 0

    def rotate(self, entry: Entry) -> None:
        try:
            statement = rotation_of(entry)
        except (HexpsiError, ValueError, TypeError) as error:
            reason = error.message if isinstance(error, HexpsiError) else str(error)
            raise ChainBroken(entry.seq, f"malformed key rotation ({reason})") from None
        rotation = statement.rotation
        if rotation.old_signing_key != bytes(self.current):
            raise ChainBroken(
                entry.seq, "key rotation hands over from a key other than the one in force"
            )
        if rotation.sequence <= self.last_rotation:
            raise ChainBroken(
                entry.seq,
                f"key rotation {rotation.sequence} does not follow rotation {self.last_rotation}",
            )
        self.last_rotation = rotation.sequence
        if not rotation.changes_signing_key:
            return
        self.changes += 1
        new = VerifyKey(rotation.new_signing_key)
        if self.changes < len(self.known) and bytes(self.known[self.changes]) != bytes(new):
            raise ChainBroken(
                entry.seq,
                f"key rotation hands over to {rotation.new_signing_key.hex()[:16]}..., not to "
                f"the known signing key {self.changes + 1} "
                f"({bytes(self.known[self.changes]).hex()[:16]}...)",
            )
        self.current = new


def verify_chain(
    entries: Iterable[Entry],
    verify_keys: VerifyKey | Sequence[VerifyKey],
    *,
    head: Head | None = None,
) -> VerifyKey:
    """Check an entire log from entry 1; raise :class:`ChainBroken` at the first bad entry.

    Catches edited fields, broken links, bad signatures, gaps and reordering. With
    ``head`` (the signed newest position) it also catches entries cut off the end.

    ``verify_keys`` is the node's first signing key, or the signing keys a
    verifier knows it by, first first. Entry 1 must be signed by the first; each
    ``key-rotation`` entry, signed by the key in force and carrying a statement
    that key signed, hands the rest of the log over to the new key it names, which
    must be the next known key if there is one. A log that ends before it reaches
    the last known key is refused. The head is signed by the key in force at the
    end, which is returned.
    """
    known = [verify_keys] if isinstance(verify_keys, VerifyKey) else list(verify_keys)
    if not known:
        raise InputError("verifying an audit log needs the node's first signing key")
    keys = _Keys(known=known, current=known[0])
    prev = GENESIS_HASH
    last_seq = 0
    for entry in entries:
        _verify_entry(entry, last_seq + 1, prev, keys.current)
        if entry.kind == ROTATION_KIND:
            keys.rotate(entry)
        prev = entry.hash
        last_seq = entry.seq
    if head is not None:
        _verify_head(head, last_seq, prev, keys.current)
    if keys.changes + 1 < len(known):
        missing = known[keys.changes + 1]
        raise ChainBroken(
            last_seq + 1,
            f"missing: the log ends before it hands over to the known signing key "
            f"{keys.changes + 2} ({bytes(missing).hex()[:16]}...)",
        )
    return keys.current


def head_is_signed_by(head: Head, verify_key: VerifyKey) -> bool:
    """Whether ``head`` carries ``verify_key``'s signature (False for a malformed head)."""
    try:
        message = _head_message(head.seq, bytes(head.hash))
    except (struct.error, TypeError):
        return False
    return signature_is_valid(verify_key, message, head.signature)


def _verify_head(head: Head, last_seq: int, prev: bytes, verify_key: VerifyKey) -> None:
    if not head_is_signed_by(head, verify_key):
        raise ChainBroken(max(last_seq, 1), "the signed head of the log does not verify")
    if head.seq > last_seq:
        raise ChainBroken(
            last_seq + 1, f"missing (the signed head records {head.seq} entries, found {last_seq})"
        )
    if head.seq < last_seq:
        raise ChainBroken(head.seq + 1, "written after the signed head of the log")
    if head.hash != prev:
        raise ChainBroken(max(last_seq, 1), "differs from the hash recorded in the signed head")
