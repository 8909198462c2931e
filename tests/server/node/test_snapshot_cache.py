"""The proposer's snapshot cache on disk: verified appends, resume after a tear, re-checks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hexpsi.protocol.epoch.descriptor import snapshot_params
from hexpsi.protocol.errors import RemoteProtocolError, VerificationError
from hexpsi.protocol.snapshot.gcs import decode_block
from hexpsi.server.node.epochs import EpochStore, ServedEpoch
from hexpsi.server.node.snapshot_cache import CachedSnapshot, SnapshotCache
from tests.server.conftest import PROTECTED, RESPONDER, make_nodes


@pytest.fixture
def epoch(tmp_path: Path) -> Iterator[ServedEpoch]:
    node = make_nodes(tmp_path / "nodes", [RESPONDER, "bravo"])[RESPONDER]
    served = EpochStore(node).create(PROTECTED, now=time.time(), workers=1)
    assert served.blocks.count >= 3
    yield served
    served.blocks.close()


def blocks_of(epoch: ServedEpoch) -> list[bytes]:
    return [epoch.blocks.get(i) for i in range(epoch.blocks.count)]


def downloaded(tmp_path: Path, epoch: ServedEpoch) -> tuple[Path, CachedSnapshot]:
    """The whole snapshot appended, verified and marked complete in a fresh cache directory."""
    directory = tmp_path / "epoch"
    cached = CachedSnapshot(directory, epoch.descriptor)
    cached.append(0, blocks_of(epoch))
    cached.finish()
    return directory, cached


def test_a_whole_download_is_verified_marked_and_reused(tmp_path: Path, epoch: ServedEpoch) -> None:
    directory = tmp_path / "epoch"
    cached = CachedSnapshot(directory, epoch.descriptor)
    blocks = blocks_of(epoch)
    cached.append(0, blocks[:2])
    cached.append(2, blocks[2:])
    assert cached.stored_bytes == epoch.descriptor.descriptor.snapshot_bytes
    assert not (directory / "complete").exists()
    cached.finish()
    assert cached.complete
    assert (directory / "complete").exists()
    again = CachedSnapshot(directory, epoch.descriptor)
    assert again.complete
    assert again.reader.next_index == len(blocks)
    assert (directory / "blocks").read_bytes() == b"".join(blocks)


def test_a_torn_append_resumes_after_the_last_whole_block(
    tmp_path: Path, epoch: ServedEpoch
) -> None:
    directory = tmp_path / "epoch"
    blocks = blocks_of(epoch)
    CachedSnapshot(directory, epoch.descriptor).append(0, blocks[:2])
    # A crash mid-append: half of block 2 written, its offset written, and a torn offset.
    with (directory / "blocks").open("ab") as out:
        out.write(blocks[2][: len(blocks[2]) // 2])
    end = len(blocks[0]) + len(blocks[1]) + len(blocks[2])
    with (directory / "offsets").open("ab") as out:
        out.write(end.to_bytes(8, "big") + b"\x00\x00\x01")
    resumed = CachedSnapshot(directory, epoch.descriptor)
    assert resumed.reader.next_index == 2
    assert resumed.stored_bytes == len(blocks[0]) + len(blocks[1])
    assert (directory / "blocks").stat().st_size == resumed.stored_bytes
    assert len((directory / "offsets").read_bytes()) == 16
    resumed.append(2, blocks[2:])
    resumed.finish()
    assert resumed.complete


def test_a_block_out_of_order_is_refused_and_not_stored(tmp_path: Path, epoch: ServedEpoch) -> None:
    directory = tmp_path / "epoch"
    cached = CachedSnapshot(directory, epoch.descriptor)
    blocks = blocks_of(epoch)
    cached.append(0, blocks[:1])
    with pytest.raises(RemoteProtocolError, match="block 2 arrived where block 1 was due"):
        cached.append(2, blocks[2:3])
    assert cached.stored_bytes == len(blocks[0])
    assert (directory / "blocks").read_bytes() == blocks[0]


def test_a_short_snapshot_fails_to_finish(tmp_path: Path, epoch: ServedEpoch) -> None:
    cached = CachedSnapshot(tmp_path / "c", epoch.descriptor)
    cached.append(0, blocks_of(epoch)[:-1])
    with pytest.raises(RemoteProtocolError, match="snapshot ended after"):
        cached.finish()
    assert not (tmp_path / "c" / "complete").exists()


def test_a_corrupted_complete_cache_is_dropped_on_open(tmp_path: Path, epoch: ServedEpoch) -> None:
    directory, _ = downloaded(tmp_path, epoch)
    data = bytearray((directory / "blocks").read_bytes())
    data[len(data) // 3] ^= 0x10
    (directory / "blocks").write_bytes(bytes(data))
    reopened = CachedSnapshot(directory, epoch.descriptor)
    assert not reopened.complete
    assert reopened.reader.next_index == 0
    assert reopened.stored_bytes == 0
    assert not (directory / "complete").exists()
    assert (directory / "blocks").read_bytes() == b""


def test_a_block_damaged_after_verification_is_caught_when_read(
    tmp_path: Path, epoch: ServedEpoch
) -> None:
    directory, cached = downloaded(tmp_path, epoch)
    data = bytearray((directory / "blocks").read_bytes())
    data[0] ^= 0x80
    (directory / "blocks").write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="block 0 no longer matches"):
        cached.reader.open(0)
    # Reopened, the damage is found before any check relies on the cache.
    assert not CachedSnapshot(directory, epoch.descriptor).complete


def stored_values(epoch: ServedEpoch) -> list[int]:
    params = snapshot_params(epoch.descriptor.descriptor)
    return [v for i, block in enumerate(blocks_of(epoch)) for v in decode_block(block, params, i)]


def test_the_value_index_is_kept_with_its_checksum_and_reopened(
    tmp_path: Path, epoch: ServedEpoch
) -> None:
    directory, _ = downloaded(tmp_path, epoch)
    values = stored_values(epoch)
    assert (directory / "index").stat().st_size == 8 * len(values)
    again = CachedSnapshot(directory, epoch.descriptor)
    assert again.reader.index is not None
    assert list(again.reader.index) == values
    assert all(again.reader.contains(v) for v in values)
    members = set(values)
    absent = next(v for v in range(values[0], values[0] + 100) if v not in members)
    assert not again.reader.contains(absent)


def test_a_damaged_index_is_ignored_and_lookups_decode_blocks(
    tmp_path: Path, epoch: ServedEpoch
) -> None:
    directory, _ = downloaded(tmp_path, epoch)
    values = stored_values(epoch)
    raw = bytearray((directory / "index").read_bytes())
    raw[0:8] = (values[0] + 1).to_bytes(8, "little")  # drops values[0], still sorted
    (directory / "index").write_bytes(bytes(raw))
    reopened = CachedSnapshot(directory, epoch.descriptor)
    assert reopened.complete
    assert reopened.reader.index is None
    assert reopened.reader.contains(values[0])


def test_discard_forgets_every_block(tmp_path: Path, epoch: ServedEpoch) -> None:
    directory = tmp_path / "c"
    cached = CachedSnapshot(directory, epoch.descriptor)
    cached.append(0, blocks_of(epoch)[:2])
    cached.discard()
    assert (cached.reader.next_index, cached.stored_bytes) == (0, 0)
    assert CachedSnapshot(directory, epoch.descriptor).reader.next_index == 0
    cached.append(0, blocks_of(epoch))
    cached.finish()
    assert cached.complete


def test_the_newest_sequence_only_grows(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path)
    assert cache.latest_sequence(RESPONDER) is None
    cache.accept_sequence(RESPONDER, 3)
    cache.accept_sequence(RESPONDER, 2)
    assert cache.latest_sequence(RESPONDER) == 3
    assert SnapshotCache(tmp_path).latest_sequence(RESPONDER) == 3
    assert cache.latest_sequence("someone-else") is None


def test_a_complete_epoch_replaces_the_older_ones(tmp_path: Path, epoch: ServedEpoch) -> None:
    cache = SnapshotCache(tmp_path)
    stale = tmp_path / "cache" / RESPONDER / ("00" * 16)
    stale.mkdir(parents=True)
    cached = cache.open(RESPONDER, epoch.descriptor)
    cached.append(0, blocks_of(epoch))
    cached.finish()
    assert stale.exists()  # still there while the new epoch was incomplete
    reopened = cache.open(RESPONDER, epoch.descriptor)
    assert reopened.complete
    assert not stale.exists()
    assert reopened.directory.exists()


def test_sequences_count_per_signing_key(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path)
    old_key, new_key = b"\x01" * 32, b"\x02" * 32
    cache.accept_sequence(RESPONDER, 5, old_key)
    assert cache.latest_sequence(RESPONDER, old_key) == 5
    assert cache.latest_sequence(RESPONDER, new_key) is None
    cache.accept_sequence(RESPONDER, 1, new_key)
    assert cache.latest_sequence(RESPONDER, new_key) == 1
    cache.accept_sequence(RESPONDER, 0, new_key)
    assert cache.latest_sequence(RESPONDER, new_key) == 1
    # A sequence recorded without its key (an older cache) still binds every key.
    (tmp_path / "cache" / RESPONDER / "latest").write_text("7")
    assert cache.latest_sequence(RESPONDER, new_key) == 7
