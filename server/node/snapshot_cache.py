"""A proposer's cache of downloaded snapshots: resumable, verified, one per peer epoch.

Layout inside the node directory::

    cache/<peer>/latest            highest descriptor sequence accepted from the peer, and
                                   the signing key (hex) it was accepted under (moved up
                                   by ``node.descriptors``, which keeps every descriptor)
    cache/<peer>/<epoch>/blocks    downloaded blocks, back to back (appended as they arrive)
    cache/<peer>/<epoch>/offsets   u64 big-endian end offset of each stored block
    cache/<peer>/<epoch>/leaves    the blocks' Merkle leaf hashes, written once verified
    cache/<peer>/<epoch>/index     the verified values in ascending order, u64 little-endian
                                   (snapshots of λ ≤ 64 bits), written once verified
    cache/<peer>/<epoch>/complete  present once the whole snapshot matched its digest; holds
                                   the SHA-256 (hex) of ``index`` when there is one

Every block is checked (decodes, continues the sorted order) before it is
appended, and the whole set against the descriptor's digest before it is used;
a block read back later is checked against its Merkle leaf again. An
interrupted download resumes at the first missing block. A complete snapshot
is reopened from its leaf hashes (one Merkle root against the signed digest)
instead of decoding every block again, so a check against a cached million-value
snapshot starts at once; its value index comes back with it, so each lookup
is a binary search (an index that fails its SHA-256 is ignored and lookups decode
blocks instead). Older epochs of a peer are dropped once a newer one is
complete.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import struct
import sys
from array import array
from pathlib import Path

from hexpsi.protocol.epoch.descriptor import SignedDescriptor, snapshot_params
from hexpsi.protocol.errors import HexpsiError, VerificationError
from hexpsi.protocol.snapshot.gcs import SnapshotReader
from hexpsi.protocol.snapshot.merkle import leaf_hash
from hexpsi.server.node.files import atomic_write, ensure_private_dir

CACHE_DIR = "cache"
LEAF_SIZE = 32
_OFFSET = struct.Struct(">Q")


class CachedSnapshot:
    """One peer epoch's snapshot on disk, with the reader that verifies and queries it."""

    def __init__(self, directory: Path, descriptor: SignedDescriptor) -> None:
        self.directory = directory
        self.descriptor = descriptor
        self.params = snapshot_params(descriptor.descriptor)
        ensure_private_dir(directory)
        self._offsets: list[int] = [0]
        self.reader = SnapshotReader(self.params, self._read_block)
        self._load_existing()

    @property
    def complete(self) -> bool:
        return self.reader.verified

    @property
    def stored_bytes(self) -> int:
        return self._offsets[-1]

    def _read_block(self, index: int) -> bytes:
        start, end = self._offsets[index], self._offsets[index + 1]
        with (self.directory / "blocks").open("rb") as handle:
            handle.seek(start)
            return handle.read(end - start)

    def _load_existing(self) -> None:
        """Re-verify what an earlier (maybe interrupted) download stored."""
        blocks_path = self.directory / "blocks"
        offsets_path = self.directory / "offsets"
        if not blocks_path.exists() or not offsets_path.exists():
            self._reset()
            return
        raw = offsets_path.read_bytes()
        ends = [end for (end,) in _OFFSET.iter_unpack(raw[: len(raw) - len(raw) % _OFFSET.size])]
        if self._restore(ends):
            return
        data = blocks_path.read_bytes()
        try:
            start = 0
            for index, end in enumerate(ends):
                if end > len(data):
                    break
                self.reader.add_block(index, data[start:end])
                self._offsets.append(end)
                start = end
            if self.reader.complete:
                self.reader.finish(self.descriptor.descriptor.snapshot_root)
        except HexpsiError:
            self.discard()
            return
        # Drop anything after the last whole, verified block (a torn append).
        with blocks_path.open("r+b") as handle:
            handle.truncate(self._offsets[-1])
        atomic_write(offsets_path, b"".join(_OFFSET.pack(end) for end in self._offsets[1:]))

    def _restore(self, ends: list[int]) -> bool:
        """Reopen a complete snapshot from its stored leaves; False if that is not possible."""
        leaves_path = self.directory / "leaves"
        if not (self.directory / "complete").exists() or not leaves_path.exists():
            return False
        raw = leaves_path.read_bytes()
        leaves = [raw[i : i + LEAF_SIZE] for i in range(0, len(raw), LEAF_SIZE)]
        if len(ends) != len(leaves) or ends[-1:] != [(self.directory / "blocks").stat().st_size]:
            return False
        self._offsets = [0, *ends]
        data = (self.directory / "blocks").read_bytes()
        starts = self._offsets
        try:
            # Hashing every stored block against its leaf (milliseconds even for a
            # million values) catches a damaged cache before a check relies on it.
            for index, leaf in enumerate(leaves):
                if not hmac.compare_digest(
                    leaf_hash(index, data[starts[index] : starts[index + 1]]), leaf
                ):
                    raise VerificationError(f"cached snapshot block {index} is damaged")
            self.reader = SnapshotReader.restore(
                self.params,
                self._read_block,
                leaves,
                self.descriptor.descriptor.snapshot_root,
                self._stored_index(),
            )
        except HexpsiError:
            self._offsets = [0]
            self.reader = SnapshotReader(self.params, self._read_block)
            return False
        return True

    def _stored_index(self) -> array[int] | None:
        """The value index kept at verification, if it is there and its SHA-256 matches."""
        try:
            raw = (self.directory / "index").read_bytes()
            recorded = (self.directory / "complete").read_text().strip()
        except FileNotFoundError:
            return None
        if len(raw) != 8 * self.params.count or not hmac.compare_digest(
            hashlib.sha256(raw).hexdigest(), recorded
        ):
            return None
        index = array("Q")
        index.frombytes(raw)
        if sys.byteorder == "big":
            index.byteswap()
        return index

    def discard(self) -> None:
        """Forget every stored block: the next download starts from block 0."""
        self.reader = SnapshotReader(self.params, self._read_block)
        self._offsets = [0]
        self._reset()

    def _reset(self) -> None:
        for name in ("blocks", "offsets", "leaves", "index", "complete"):
            (self.directory / name).unlink(missing_ok=True)
        (self.directory / "blocks").touch()
        (self.directory / "offsets").touch()

    def append(self, first_index: int, blocks: list[bytes]) -> None:
        """Verify and store a streamed chunk of consecutive blocks."""
        with (
            (self.directory / "blocks").open("ab") as blocks_out,
            (self.directory / "offsets").open("ab") as offsets_out,
        ):
            for offset, block in enumerate(blocks):
                self.reader.add_block(first_index + offset, block)
                blocks_out.write(block)
                self._offsets.append(self._offsets[-1] + len(block))
                offsets_out.write(_OFFSET.pack(self._offsets[-1]))
            blocks_out.flush()
            os.fsync(blocks_out.fileno())
            offsets_out.flush()
            os.fsync(offsets_out.fileno())

    def finish(self) -> None:
        """Check the whole snapshot against the signed digest and mark it complete."""
        self.reader.finish(self.descriptor.descriptor.snapshot_root)
        atomic_write(self.directory / "leaves", b"".join(self.reader.leaf_hashes))
        checksum = b""
        if (index := self.reader.index) is not None:
            if sys.byteorder == "big":
                index = array("Q", index)
                index.byteswap()
            raw = index.tobytes()
            atomic_write(self.directory / "index", raw)
            checksum = hashlib.sha256(raw).hexdigest().encode()
        atomic_write(self.directory / "complete", checksum)


class SnapshotCache:
    """All cached snapshots of a node, by peer."""

    def __init__(self, node_directory: Path) -> None:
        self.root = node_directory / CACHE_DIR

    def _peer_dir(self, peer: str) -> Path:
        directory = self.root / peer
        ensure_private_dir(self.root)
        ensure_private_dir(directory)
        return directory

    def _read_latest(self, peer: str) -> tuple[int, str] | None:
        try:
            fields = (self.root / peer / "latest").read_text().split()
        except FileNotFoundError:
            return None
        if not fields or not fields[0].isdigit():
            return None
        return int(fields[0]), fields[1] if len(fields) > 1 else ""

    def latest_sequence(self, peer: str, signer: bytes = b"") -> int | None:
        """The newest descriptor sequence accepted from ``peer``.

        Sequences only mean something per signing key: given ``signer`` (the peer's
        pinned verify key), a sequence recorded under another key does not count,
        so a peer that was rebuilt with new keys (and re-pinned) starts again at 1.
        A replayed descriptor of the old identity fails its signature anyway.
        """
        latest = self._read_latest(peer)
        if latest is None:
            return None
        sequence, recorded_signer = latest
        if signer and recorded_signer and recorded_signer != signer.hex():
            return None
        return sequence

    def accept_sequence(self, peer: str, sequence: int, signer: bytes = b"") -> None:
        """Remember the newest descriptor seen, so an older one is refused as a replay."""
        latest = self.latest_sequence(peer, signer)
        if latest is None or sequence > latest:
            atomic_write(self._peer_dir(peer) / "latest", f"{sequence} {signer.hex()}".encode())

    def open(self, peer: str, descriptor: SignedDescriptor) -> CachedSnapshot:
        epoch = descriptor.descriptor.epoch_id.hex()
        cached = CachedSnapshot(self._peer_dir(peer) / epoch, descriptor)
        if cached.complete:
            self._drop_others(peer, keep=epoch)
        return cached

    def _drop_others(self, peer: str, *, keep: str) -> None:
        for path in (self.root / peer).iterdir():
            if path.is_dir() and path.name != keep:
                shutil.rmtree(path, ignore_errors=True)
