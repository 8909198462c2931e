"""Every epoch descriptor a proposer accepted from its peers, and the equivocations seen.

Layout inside the node directory::

    descriptors/<peer>/<sequence>.bin             a descriptor accepted from the peer
    equivocations/<peer>/<sequence>/first.bin     the one accepted first for that sequence
    equivocations/<peer>/<sequence>/second.bin    a different one the peer signed for it

Each ``.bin`` file is the Ed25519 signature followed by the signed descriptor
bytes (NaCl's signed-message layout), so it verifies on its own with the
peer's public signing key: ``VerifyKey(key).verify(data)`` in PyNaCl returns
the descriptor bytes.

A responder signs one descriptor per epoch sequence. Two different signed
descriptors with the same sequence are an *equivocation*: the responder showed
two maps as the same epoch (a forked node, a restored backup that went on
differently, or different maps for different proposers), and only the holder of
its signing key could have made both. So a different descriptor for a sequence
already accepted from that peer is refused (:class:`Equivocation`) and both are
kept as proof. A sequence with a recorded equivocation stays refused, whichever
of its descriptors comes back: nobody can tell which one was the real epoch. A
newer sequence is accepted as usual; :func:`equivocations` lists what was seen.

Replay protection is part of the same acceptance: the highest sequence accepted
(the snapshot cache's high-water mark, or the highest kept descriptor that
verifies with the peer's current key, if the cache was wiped) is the floor
below which a descriptor is refused as a replay (``SignedDescriptor.verify``'s
``newer_than``). Descriptors kept from an earlier identity of a peer (re-pinned
with new keys) do not verify with its key, so they neither count nor convict.

A peer that *rotated* its signing key (``protocol.rotation``) is still one
identity: :meth:`AcceptedDescriptors.accept` is given the keys it handed over
from (``earlier_keys``), a kept descriptor signed by one of them convicts a
different descriptor for the same sequence under the new key, and the same
descriptor re-signed with the new key simply replaces its old copy. Such a
proof's two files verify with two keys, tied together by the rotation
statement kept in the peer's file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import VerifyKey

from hexpsi.protocol.epoch.descriptor import SignedDescriptor, descriptor_digest
from hexpsi.protocol.errors import HexpsiError, VerificationError
from hexpsi.protocol.limits import SIGNATURE_SIZE
from hexpsi.server.node.files import atomic_write, ensure_private_dir, write_once
from hexpsi.server.node.snapshot_cache import SnapshotCache

log = logging.getLogger(__name__)

DESCRIPTORS_DIR = "descriptors"
EQUIVOCATIONS_DIR = "equivocations"
FIRST_FILE = "first.bin"
SECOND_FILE = "second.bin"
SUFFIX = ".bin"
EQUIVOCATION_AUDIT_KIND = "equivocation"
"""The proposer's audit entry when it first finds an equivocation."""


@dataclass(frozen=True, slots=True)
class EquivocationRecord:
    """Two different descriptors one peer signed for one sequence, as kept on disk."""

    peer: str
    sequence: int
    first: Path
    second: Path
    first_digest: bytes
    """:attr:`SignedDescriptor.digest` of each: what transcripts and receipts bind to."""
    second_digest: bytes

    @property
    def directory(self) -> Path:
        return self.first.parent


class Equivocation(VerificationError):
    """A peer signed a second, different descriptor for a sequence already accepted.

    ``newly_found`` is True the first time the pair is seen (when the proof was
    written), False when a sequence already known to be equivocated is served again.
    """

    def __init__(self, record: EquivocationRecord, *, newly_found: bool) -> None:
        super().__init__(
            f"peer {record.peer} signed two different epoch descriptors with sequence "
            f"{record.sequence}: an equivocation; refusing both, signed proof kept in "
            f"{record.directory}",
            hint="do not rely on this peer for that epoch; each file there verifies with "
            "its signing key, so show both to its operator",
        )
        self.record = record
        self.newly_found = newly_found


def _split(data: bytes) -> tuple[bytes, bytes]:
    """(signature, encoded descriptor) of a kept file."""
    return data[:SIGNATURE_SIZE], data[SIGNATURE_SIZE:]


def _verifies(data: bytes, verify_key: VerifyKey, peer: str) -> SignedDescriptor | None:
    try:
        return SignedDescriptor.from_signed_message(data, verify_key, expected_node=peer)
    except HexpsiError:
        return None


def _verifies_any(
    data: bytes, verify_keys: Sequence[VerifyKey], peer: str
) -> SignedDescriptor | None:
    for verify_key in verify_keys:
        signed = _verifies(data, verify_key, peer)
        if signed is not None:
            return signed
    return None


class AcceptedDescriptors:
    """The descriptors a node accepted from its peers: the replay floor and equivocations."""

    def __init__(self, node_directory: Path) -> None:
        self.root = node_directory / DESCRIPTORS_DIR
        self.proofs = node_directory / EQUIVOCATIONS_DIR
        self.cache = SnapshotCache(node_directory)

    def path(self, peer: str, sequence: int) -> Path:
        return self.root / peer / f"{sequence}{SUFFIX}"

    def newest(self, peer: str, verify_key: VerifyKey) -> int | None:
        """The highest sequence accepted from ``peer`` under its current signing key."""
        floors = [
            self.cache.latest_sequence(peer, bytes(verify_key)),
            self._newest_kept(peer, verify_key),
        ]
        known = [floor for floor in floors if floor is not None]
        return max(known) if known else None

    def newest_descriptor(self, peer: str, verify_key: VerifyKey) -> SignedDescriptor | None:
        """The newest descriptor kept from ``peer`` that verifies with its current key."""
        sequence = self._newest_kept(peer, verify_key)
        if sequence is None:
            return None
        return _verifies(self.path(peer, sequence).read_bytes(), verify_key, peer)

    def _newest_kept(self, peer: str, verify_key: VerifyKey) -> int | None:
        directory = self.root / peer
        if not directory.is_dir():
            return None
        sequences = sorted(
            (int(path.stem) for path in directory.glob(f"*{SUFFIX}") if path.stem.isdigit()),
            reverse=True,
        )
        for sequence in sequences:
            if _verifies(self.path(peer, sequence).read_bytes(), verify_key, peer):
                return sequence
        return None

    def accept(
        self,
        peer: str,
        descriptor: SignedDescriptor,
        verify_key: VerifyKey,
        earlier_keys: Sequence[VerifyKey] = (),
    ) -> None:
        """Keep ``descriptor`` (already verified) as accepted from ``peer``; refuse a second one.

        Raises :class:`Equivocation` when ``peer`` already had a different descriptor
        accepted for the same sequence, or when that sequence is a known
        equivocation. Otherwise the descriptor is kept (once) and the replay floor
        moves up to its sequence. ``earlier_keys`` are the signing keys the peer
        rotated away from: what they signed counts as the peer's too.
        """
        keys = (verify_key, *earlier_keys)
        sequence = descriptor.descriptor.sequence
        known = self._proof(peer, sequence, keys)
        if known is not None:
            raise Equivocation(known, newly_found=False)
        path = self.path(peer, sequence)
        data = descriptor.signed_message
        ensure_private_dir(self.root)
        ensure_private_dir(path.parent)
        if not write_once(path, data):
            kept_data = path.read_bytes()
            kept = _verifies_any(kept_data, keys, peer)
            if kept is None:
                # Signed by an earlier identity of the peer, or damaged: no proof of anything.
                log.warning("replacing %s: it does not verify with %s's current key", path, peer)
                atomic_write(path, data)
            elif kept.encoded != descriptor.encoded:
                raise Equivocation(
                    self._keep_proof(peer, sequence, kept_data, data), newly_found=True
                )
            elif kept.signature != descriptor.signature:
                # The same epoch, re-signed with the key the peer rotated to.
                atomic_write(path, data)
        self.cache.accept_sequence(peer, sequence, bytes(verify_key))

    def _keep_proof(
        self, peer: str, sequence: int, first: bytes, second: bytes
    ) -> EquivocationRecord:
        directory = self.proofs / peer / str(sequence)
        ensure_private_dir(self.proofs)
        ensure_private_dir(directory.parent)
        ensure_private_dir(directory)
        # Written once: a proof already there (another check found it first) is kept as is.
        write_once(directory / FIRST_FILE, first)
        write_once(directory / SECOND_FILE, second)
        return _record(peer, sequence, directory) or EquivocationRecord(
            peer=peer,
            sequence=sequence,
            first=directory / FIRST_FILE,
            second=directory / SECOND_FILE,
            first_digest=descriptor_digest(_split(first)[1]),
            second_digest=descriptor_digest(_split(second)[1]),
        )

    def _proof(
        self, peer: str, sequence: int, verify_keys: Sequence[VerifyKey]
    ) -> EquivocationRecord | None:
        """The recorded equivocation of ``peer`` at ``sequence``, if both files verify
        (each with one of the peer's keys)."""
        directory = self.proofs / peer / str(sequence)
        record = _record(peer, sequence, directory)
        if record is None:
            return None
        for path in (record.first, record.second):
            if _verifies_any(path.read_bytes(), verify_keys, peer) is None:
                return None
        return record


def _record(peer: str, sequence: int, directory: Path) -> EquivocationRecord | None:
    first, second = directory / FIRST_FILE, directory / SECOND_FILE
    try:
        first_data, second_data = first.read_bytes(), second.read_bytes()
    except FileNotFoundError:
        return None
    return EquivocationRecord(
        peer=peer,
        sequence=sequence,
        first=first,
        second=second,
        first_digest=descriptor_digest(_split(first_data)[1]),
        second_digest=descriptor_digest(_split(second_data)[1]),
    )


def equivocations(node_directory: Path) -> list[EquivocationRecord]:
    """Every equivocation this node has kept proof of, by peer and sequence.

    Read from the files alone (no keys needed): each record names the peer, the
    sequence, both files and both descriptors' digests.
    """
    root = node_directory / EQUIVOCATIONS_DIR
    if not root.is_dir():
        return []
    found = []
    for peer_dir in sorted(path for path in root.iterdir() if path.is_dir()):
        for sequence_dir in peer_dir.iterdir():
            if not sequence_dir.name.isdigit():
                continue
            record = _record(peer_dir.name, int(sequence_dir.name), sequence_dir)
            if record is not None:
                found.append(record)
    return sorted(found, key=lambda record: (record.peer, record.sequence))
