"""The responder's epoch store: build, publish, prune, reload with checks, watch for new ones."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.crypto.keys import epoch_keys
from hexpsi.protocol.errors import (
    FailedPrecondition,
    InputError,
    LocalProtocolError,
    Status,
    VerificationError,
)
from hexpsi.protocol.mutual.sets import mutual_element
from hexpsi.server.node.directory import OPRF_MASTER_FILE, Node
from hexpsi.server.node.epochs import (
    CURRENT_FILE,
    EPOCHS_DIR,
    KEEP_EPOCHS,
    MUTUAL_POINTS_FILE,
    BlockFile,
    EpochStore,
)
from hexpsi.server.node.files import write_secret
from hexpsi.server.services.current_epoch import EpochWatcher
from tests.server.conftest import CENTER, PROTECTED, RES, RES_MIN, RESPONDER, make_nodes


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return make_nodes(tmp_path, [RESPONDER, "bravo"])[RESPONDER]


def build(node: Node, cells: frozenset[int] = PROTECTED) -> int:
    epoch = EpochStore(node).create(cells, now=time.time(), workers=1)
    epoch.blocks.close()
    return epoch.sequence


def test_each_epoch_is_signed_numbered_and_made_current(node: Node) -> None:
    store = EpochStore(node)
    assert store.current() is None
    assert store.current_marker() is None
    assert [build(node), build(node)] == [1, 2]
    assert store.current_sequence() == 2
    epoch = store.current()
    assert epoch is not None
    d = epoch.descriptor.descriptor
    assert (d.node, d.sequence, d.res, d.res_min) == (RESPONDER, 2, RES, RES_MIN)
    assert d.max_query_tokens == node.config.limits.max_query_tokens
    assert d.valid_until - d.created_at == pytest.approx(node.config.epoch_validity_hours * 3600)
    keys = epoch_keys(node.oprf_master, d.epoch_id, res=RES, res_min=RES_MIN)
    assert {r: k.public for r, k in keys.items()} == dict(d.public_keys)
    assert epoch.blocks.count == epoch.params.block_count
    assert sum(len(epoch.blocks.get(i)) for i in range(epoch.blocks.count)) == d.snapshot_bytes
    first = store.load(1).descriptor.descriptor
    assert first.epoch_id != d.epoch_id
    epoch.blocks.close()


def test_only_the_newest_epochs_are_kept(node: Node) -> None:
    for _ in range(KEEP_EPOCHS + 2):
        build(node)
    kept = sorted(p.name for p in (node.directory / EPOCHS_DIR).iterdir() if p.name.isdigit())
    assert kept == [f"{s:06d}" for s in range(3, KEEP_EPOCHS + 3)]
    with pytest.raises(LocalProtocolError, match="epoch 1 is missing") as caught:
        EpochStore(node).load(1)
    assert caught.value.status is Status.UNAVAILABLE


def test_a_failed_build_leaves_the_current_epoch_alone(node: Node) -> None:
    build(node)
    marker = EpochStore(node).current_marker()
    coarse = h3.cell_to_parent(CENTER, RES - 1)
    with pytest.raises(InputError, match="expected 9"):
        build(node, PROTECTED | {coarse})
    store = EpochStore(node)
    assert store.current_sequence() == 1
    assert store.current_marker() == marker
    leftovers = [p.name for p in (node.directory / EPOCHS_DIR).iterdir()]
    assert sorted(leftovers) == ["000001", CURRENT_FILE]


def test_an_edited_descriptor_is_refused_on_load(node: Node) -> None:
    build(node)
    path = node.directory / EPOCHS_DIR / "000001" / "descriptor"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="signature"):
        EpochStore(node).current()


def test_an_epoch_made_with_another_master_secret_is_refused(node: Node) -> None:
    build(node)
    (node.directory / OPRF_MASTER_FILE).unlink()
    write_secret(node.directory / OPRF_MASTER_FILE, os.urandom(32))
    with pytest.raises(LocalProtocolError, match="OPRF master secret"):
        EpochStore(Node(node.directory)).current()


def test_a_damaged_store_is_named(node: Node) -> None:
    build(node)
    epoch_dir = node.directory / EPOCHS_DIR / "000001"
    offsets = (epoch_dir / "offsets").read_bytes()
    (epoch_dir / "offsets").write_bytes(offsets[:-8])
    with pytest.raises(LocalProtocolError, match="block count does not match"):
        EpochStore(node).current()
    (epoch_dir / "offsets").write_bytes(offsets)
    (node.directory / EPOCHS_DIR / CURRENT_FILE).write_text("one\n")
    with pytest.raises(LocalProtocolError, match="is corrupt"):
        EpochStore(node).current()


def test_block_chunks_cover_every_block_in_order_within_the_size(node: Node) -> None:
    build(node)
    blocks = BlockFile(node.directory / EPOCHS_DIR / "000001")
    try:
        every = [blocks.get(i) for i in range(blocks.count)]
        largest = max(len(b) for b in every)
        for max_bytes in (1, largest, 2 * largest + 1, 1 << 20):
            for start in (0, 1, blocks.count - 1, blocks.count):
                chunks = list(blocks.chunks(start, max_bytes=max_bytes))
                assert [b for _, chunk in chunks for b in chunk] == every[start:]
                for first, chunk in chunks:
                    assert chunk == every[first : first + len(chunk)]
                    assert len(chunk) == 1 or sum(map(len, chunk)) <= max_bytes
        with pytest.raises(InputError, match="outside"):
            blocks.get(blocks.count)
    finally:
        blocks.close()
        blocks.close()  # closing twice is harmless


def test_an_open_epoch_stays_readable_after_it_is_pruned(node: Node) -> None:
    build(node)
    held = EpochStore(node).current()
    assert held is not None
    first = held.blocks.get(0)
    for _ in range(KEEP_EPOCHS + 1):
        build(node)
    assert not held.directory.exists()
    assert held.blocks.get(0) == first
    held.blocks.close()


def test_the_watcher_follows_new_epochs(node: Node) -> None:
    watcher = EpochWatcher(EpochStore(node))
    with pytest.raises(FailedPrecondition) as caught:
        watcher.get()
    assert "hexpsi positions" in caught.value.message
    build(node)
    first = watcher.get()
    assert watcher.get() is first
    build(node)
    assert watcher.get().sequence == 2


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_the_watcher_does_not_leak_replaced_epochs(node: Node) -> None:
    watcher = EpochWatcher(EpochStore(node))
    for _ in range(2):  # the served epoch and, during the hand-over, the one it replaced
        build(node)
        watcher.get()
    gc.collect()
    before = _open_files()
    for _ in range(6):
        build(node)
        watcher.get()
    gc.collect()
    assert _open_files() <= before


def test_a_new_epoch_is_numbered_above_every_published_one(node: Node) -> None:
    build(node)
    build(node)
    current = node.directory / EPOCHS_DIR / CURRENT_FILE
    current.write_text("1\n")  # rolled back (a restored backup, a careless operator)
    assert build(node) == 3
    current.write_text("garbage\n")
    assert build(node) == 4
    assert EpochStore(node).current_sequence() == 4


def test_mutual_points_are_computed_once_kept_private_and_recomputed_if_damaged(
    node: Node,
) -> None:
    build(node)
    epoch = EpochStore(node).current()
    assert epoch is not None
    points = epoch.mutual_points()
    assert points == {cell: mutual_element(cell) for cell in epoch.protected_cells()}
    path = epoch.directory / MUTUAL_POINTS_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_bytes(path.read_bytes()[:-1])
    assert epoch.mutual_points() == points
    epoch.blocks.close()
