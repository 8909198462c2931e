"""A responder's epochs on disk: build one from positions, serve the current one.

Layout inside the node directory::

    epochs/current             sequence number of the epoch being served
    epochs/000007/descriptor   canonical descriptor bytes
    epochs/000007/signature    Ed25519 signature over them
    epochs/000007/blocks       the snapshot's blocks, back to back
    epochs/000007/offsets      u64 big-endian offsets: block i is [o[i], o[i+1])
    epochs/000007/cells        the protected cells (res ``res``), sorted u64 big-endian

An epoch is built under a temporary name, renamed into place, and only then
made current (an atomic replace of ``current``), so a running server never sees
half an epoch. Keys are not stored: they are re-derived from the master secret
and the epoch id. The previous epoch is kept so downloads in flight can finish.
The protected cells themselves are kept (owner-only, like the whole node
directory) because the mutual proximity check runs over the node's own map.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hexpsi.protocol.crypto.group import ELEMENT_SIZE
from hexpsi.protocol.crypto.keys import epoch_keys, timed_epoch_keys
from hexpsi.protocol.crypto.oprf import KeyPair
from hexpsi.protocol.epoch import schedule
from hexpsi.protocol.epoch.descriptor import Descriptor, SignedDescriptor, snapshot_params
from hexpsi.protocol.epoch.schedule import EpochTimes
from hexpsi.protocol.epoch.start import start_epoch
from hexpsi.protocol.errors import (
    HexpsiError,
    InputError,
    LocalProtocolError,
    RemoteProtocolError,
    Status,
)
from hexpsi.protocol.mutual.sets import mutual_points
from hexpsi.protocol.parallel import Mapper
from hexpsi.protocol.randomness import RandomBytes
from hexpsi.protocol.snapshot.gcs import GcsParams, SnapshotReader
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.protocol.spacetime.tokens import TimedGroup
from hexpsi.protocol.times import rfc3339
from hexpsi.server.node.directory import Node
from hexpsi.server.node.files import (
    SECRET_MODE,
    atomic_write,
    ensure_private_dir,
    fsync_directory,
    make_private_dir,
)
from hexpsi.server.workers import PoolKind, local_mapper

log = logging.getLogger(__name__)

PROCESS_POOL_MIN_CELLS = 20_000
"""From this many protected cells (several times as many tokens) a process pool's
start-up cost is repaid: processes also run the Python around each libsodium call
in parallel, which threads cannot (measured: 200k tokens in 12.0 s with two
processes against 17-18 s with two threads on the same loaded 2-core machine)."""

EPOCHS_DIR = "epochs"
CURRENT_FILE = "current"
SOURCES_FILE = "sources.json"
"""What ``positions`` read for an epoch (files, their SHA-256, the options), owner-only."""
MUTUAL_POINTS_FILE = "mutual_points"
CELLS_FILE = "cells"
TIMED_FILE = "timed"
"""The timed protected cells: (cell u64, start f64, end f64) big-endian records, owner-only."""
KEEP_EPOCHS = 2
_OFFSET = struct.Struct(">Q")
_TIMED = struct.Struct(">Qdd")


class BlockFile:
    """Random access to a stored snapshot's blocks by index.

    The file stays open until ``close`` or until nothing refers to it any more: a
    server that moves to a new epoch drops the old one while downloads still in
    flight keep reading theirs, so the last holder, whoever it is, frees the
    descriptor.
    """

    def __init__(self, directory: Path) -> None:
        raw = (directory / "offsets").read_bytes()
        if not raw or len(raw) % _OFFSET.size:
            raise LocalProtocolError(f"{directory / 'offsets'} is truncated")
        self.offsets = [value for (value,) in _OFFSET.iter_unpack(raw)]
        self._fd = os.open(directory / "blocks", os.O_RDONLY)
        self._closer = weakref.finalize(self, os.close, self._fd)

    @property
    def count(self) -> int:
        return len(self.offsets) - 1

    def get(self, index: int) -> bytes:
        if not 0 <= index < self.count:
            raise InputError(f"block {index} is outside 0..{self.count - 1}")
        start, end = self.offsets[index], self.offsets[index + 1]
        return os.pread(self._fd, end - start, start)

    def chunks(self, start: int, *, max_bytes: int) -> Iterator[tuple[int, list[bytes]]]:
        """Consecutive blocks from ``start``, grouped into chunks of at most ``max_bytes``."""
        index = start
        while index < self.count:
            first = index
            blocks: list[bytes] = []
            size = 0
            while index < self.count:
                length = self.offsets[index + 1] - self.offsets[index]
                if blocks and size + length > max_bytes:
                    break
                blocks.append(self.get(index))
                size += length
                index += 1
            yield first, blocks

    def close(self) -> None:
        self._closer()


@dataclass(frozen=True, slots=True)
class MutualInputs:
    """A map as the mutual check takes it: the protected cells and their H(cell)."""

    cells: list[int]
    points: dict[int, bytes]


@dataclass
class ServedEpoch:
    """Everything the server needs to answer for one epoch."""

    descriptor: SignedDescriptor
    keys: dict[int, KeyPair]
    params: GcsParams
    blocks: BlockFile
    directory: Path
    timed_keys: dict[TimedGroup, KeyPair] = field(default_factory=dict)
    _mutual: MutualInputs | None = field(default=None, init=False, repr=False)
    _mutual_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def sequence(self) -> int:
        return self.descriptor.descriptor.sequence

    def verified_snapshot(self) -> SnapshotReader:
        """A reader over this epoch's own blocks, checked against the descriptor's root, for
        opening cells: a damaged store must not yield an opening that proves nothing."""
        reader = SnapshotReader(self.params, self.blocks.get)
        try:
            for index in range(self.blocks.count):
                reader.add_block(index, self.blocks.get(index))
            reader.finish(self.descriptor.descriptor.snapshot_root)
        except RemoteProtocolError as error:
            raise LocalProtocolError(
                f"epoch {self.sequence}'s stored snapshot is damaged: {error.message}",
                hint="set the positions again with hexpsi positions to start a new epoch",
            ) from None
        return reader

    def protected_cells(self) -> list[int]:
        """The epoch's protected cells at its ``res``, sorted (for the mutual check)."""
        return load_cells(self.directory)

    def timed_cells(self) -> list[tuple[int, Interval]]:
        """The epoch's timed protected cells with their intervals (for a renewal)."""
        return load_timed_cells(self.directory)

    def mutual_points(self, mapper: Mapper = map) -> dict[int, bytes]:
        """H(cell) for every protected cell, computed at the first mutual check and kept.

        Stored owner-only beside the cells (an unkeyed hash of a cell is as
        revealing as the cell); a damaged file is simply computed again.
        """
        cells = self.protected_cells()
        path = self.directory / MUTUAL_POINTS_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raw = b""
        if len(raw) != ELEMENT_SIZE * len(cells):
            raw = b"".join(mutual_points(cells, mapper=mapper))
            atomic_write(path, raw, mode=SECRET_MODE)
        return {
            cell: raw[i * ELEMENT_SIZE : (i + 1) * ELEMENT_SIZE] for i, cell in enumerate(cells)
        }

    def mutual_inputs(self, mapper: Mapper = map) -> MutualInputs:
        """The cells and their H(cell), loaded once per served epoch and shared by its calls.

        A server answers many mutual checks from one epoch; reading the map and
        its points again for each call cost every call (refused ones included)
        the whole map in memory.
        """
        with self._mutual_lock:
            if self._mutual is None:
                self._mutual = MutualInputs(self.protected_cells(), self.mutual_points(mapper))
            return self._mutual


def load_timed_cells(directory: Path) -> list[tuple[int, Interval]]:
    """The timed cells stored in an epoch directory (none if it has no timed positions)."""
    try:
        raw = (directory / TIMED_FILE).read_bytes()
    except FileNotFoundError:
        return []
    if len(raw) % _TIMED.size:
        raise LocalProtocolError(f"{directory / TIMED_FILE} is truncated")
    return [(cell, Interval(start, end)) for cell, start, end in _TIMED.iter_unpack(raw)]


def load_cells(directory: Path) -> list[int]:
    """The sorted cells stored in an epoch directory; refuses epochs built without them."""
    try:
        raw = (directory / CELLS_FILE).read_bytes()
    except FileNotFoundError:
        raise LocalProtocolError(
            f"epoch {directory.name} stores no cell list (built by an older hexpsi)",
            hint="set the positions again with hexpsi positions to start a new epoch",
        ) from None
    if len(raw) % _OFFSET.size:
        raise LocalProtocolError(f"{directory / CELLS_FILE} is truncated")
    return [value for (value,) in _OFFSET.iter_unpack(raw)]


class EpochStore:
    """The ``epochs/`` directory of a node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.root = node.directory / EPOCHS_DIR
        self._schedule: tuple[object, list[EpochTimes]] | None = None

    def _current_file(self) -> Path:
        return self.root / CURRENT_FILE

    def current_sequence(self) -> int | None:
        try:
            text = self._current_file().read_text().strip()
        except FileNotFoundError:
            return None
        if not text.isdigit():
            raise LocalProtocolError(f"{self._current_file()} is corrupt: {text!r}")
        return int(text)

    def next_sequence(self) -> int:
        """One past every sequence this node has published or still stores.

        Not simply ``current + 1``: if ``current`` was rolled back or damaged, a new
        epoch must still be numbered above every one peers may have seen, or they
        would refuse it as a replay (and its directory would collide with a kept one).
        """
        stored = [
            int(path.name)
            for path in (self.root.iterdir() if self.root.exists() else ())
            if path.name.isdigit()
        ]
        try:
            current = self.current_sequence() or 0
        except LocalProtocolError:
            current = 0
        return max([current, *stored]) + 1

    def current_marker(self) -> tuple[int, int] | None:
        """A cheap fingerprint of ``current`` to notice a new epoch without reading it."""
        try:
            stat = self._current_file().stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def schedule(self) -> list[EpochTimes]:
        """Every stored epoch's sequence and validity, oldest first (from their descriptors,
        not verified: for choosing which to load, which :meth:`load` then verifies)."""
        if not self.root.is_dir():
            return []
        marker = (self.root.stat().st_mtime_ns, self.current_marker())
        if self._schedule is not None and self._schedule[0] == marker:
            return self._schedule[1]
        times = []
        for path in sorted(self.root.iterdir()):
            if not path.name.isdigit():
                continue
            try:
                d = Descriptor.decode((path / "descriptor").read_bytes())
            except (OSError, HexpsiError):
                continue
            times.append(EpochTimes(int(path.name), d.created_at, d.valid_until))
        self._schedule = (marker, times)
        return times

    def serving_times(self, now: float) -> EpochTimes | None:
        """The epoch to serve at ``now``: the newest published that has begun.

        ``current`` names the last published epoch; if it is missing or damaged,
        loading it raises the error that says what is wrong.
        """
        latest = self.current_sequence()
        times = self.schedule()
        if latest is not None and all(t.sequence != latest for t in times):
            self.load(latest)
        return schedule.serving(times, latest=latest, now=now)

    def serving(self, now: float) -> ServedEpoch | None:
        """The epoch to serve at ``now``, loaded and verified (None before the first)."""
        latest = self.current_sequence()
        if latest is None:
            return None
        times = self.serving_times(now)
        if times is not None:
            return self.load(times.sequence)
        if any(t.sequence == latest for t in self.schedule()):
            return None  # the first epoch is scheduled and has not begun
        # ``current`` names an epoch missing from the schedule: loading it says what is wrong.
        return self.load(latest)

    def create(
        self,
        protected_cells: Iterable[int],
        *,
        now: float,
        rng: RandomBytes = os.urandom,
        workers: int | None = None,
        valid_from: float | None = None,
        valid_until: float | None = None,
        sources: Mapping[str, object] | None = None,
        timed_cells: Iterable[tuple[int, Interval]] = (),
    ) -> ServedEpoch:
        """Build a new epoch from ``protected_cells`` and publish it.

        It is served from ``valid_from`` (default ``now``: at once) until
        ``valid_until`` (default: the configured validity later); one that starts
        later is scheduled, and the server switches to it when it begins.
        ``sources`` (what ``positions`` read, and how) is kept beside the epoch.
        ``timed_cells`` (cells at ``res``, each with the interval it is protected
        for) go into the snapshot as space-time tokens over the epoch's time tree
        (``slot_minutes``); a renewal builds them again over its own horizon.
        """
        config = self.node.config
        created_at = now if valid_from is None else valid_from
        if valid_until is None:
            valid_until = created_at + config.epoch_validity_hours * 3600.0
        if valid_until <= now:
            raise InputError(
                f"an epoch valid until {rfc3339(valid_until)} would already have ended",
                hint="give a --valid-until in the future",
            )
        if not valid_until > created_at:
            raise InputError(
                f"an epoch must end after it begins ({rfc3339(created_at)})",
                hint="give a --valid-until after --valid-from",
            )
        cells = list(protected_cells)
        timed = sorted(set(timed_cells))
        slot_seconds = config.slot_minutes * 60 or None
        sequence = self.next_sequence()
        ensure_private_dir(self.root)
        staging = self.root / f".{sequence:06d}.building"
        shutil.rmtree(staging, ignore_errors=True)
        make_private_dir(staging)
        offsets = [0]
        try:
            pool: PoolKind = "process" if len(cells) >= PROCESS_POOL_MIN_CELLS else "thread"
            with (
                (staging / "blocks").open("wb") as blocks_out,
                local_mapper(workers, kind=pool) as mapper,
            ):

                def sink(block: bytes) -> None:
                    blocks_out.write(block)
                    offsets.append(offsets[-1] + len(block))

                epoch = start_epoch(
                    node=config.name,
                    sequence=sequence,
                    master_secret=self.node.oprf_master,
                    signing_key=self.node.signing_key,
                    protected_cells=cells,
                    res=config.res,
                    res_min=config.res_min,
                    now=created_at,
                    validity_seconds=valid_until - created_at,
                    max_query_tokens=config.limits.max_query_tokens,
                    rng=rng,
                    sink=sink,
                    mapper=mapper,
                    timed_cells=timed,
                    slot_seconds=slot_seconds,
                )
                blocks_out.flush()
                os.fsync(blocks_out.fileno())
            atomic_write(staging / "offsets", b"".join(_OFFSET.pack(o) for o in offsets))
            # start_epoch has validated every cell by now; the raw map is owner-only.
            raw_cells = b"".join(_OFFSET.pack(c) for c in sorted(set(cells)))
            atomic_write(staging / CELLS_FILE, raw_cells, mode=SECRET_MODE)
            if timed:
                raw_timed = b"".join(_TIMED.pack(c, i.start, i.end) for c, i in timed)
                atomic_write(staging / TIMED_FILE, raw_timed, mode=SECRET_MODE)
            atomic_write(staging / "descriptor", epoch.descriptor.encoded)
            atomic_write(staging / "signature", epoch.descriptor.signature)
            if sources is not None:
                atomic_write(
                    staging / SOURCES_FILE,
                    json.dumps(sources, indent=1, sort_keys=True).encode(),
                    mode=SECRET_MODE,
                )
            final = self.root / f"{sequence:06d}"
            os.replace(staging, final)
            fsync_directory(self.root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        atomic_write(self._current_file(), f"{sequence}\n".encode())
        served = self.serving_times(now)
        oldest_kept = min(sequence, served.sequence if served else sequence) - KEEP_EPOCHS + 1
        self._prune(keep_from=oldest_kept)
        log.info(
            "epoch %d: %d tokens, snapshot %d values in %d bytes",
            sequence,
            epoch.snapshot.real_count,
            epoch.snapshot.params.count,
            epoch.snapshot.total_bytes,
        )
        return self.load(sequence)

    def _prune(self, *, keep_from: int) -> None:
        for path in self.root.iterdir():
            if path.name.isdigit() and int(path.name) < keep_from:
                shutil.rmtree(path, ignore_errors=True)

    def load(self, sequence: int) -> ServedEpoch:
        """Load a stored epoch, checking its signature with this node's own key."""
        directory = self.root / f"{sequence:06d}"
        try:
            encoded = (directory / "descriptor").read_bytes()
            signature = (directory / "signature").read_bytes()
        except FileNotFoundError:
            raise LocalProtocolError(
                f"epoch {sequence} is missing from {self.root}", status=Status.UNAVAILABLE
            ) from None
        descriptor = SignedDescriptor.verify_without_freshness(
            encoded, signature, self.node.signing_key.verify_key
        )
        d = descriptor.descriptor
        keys = epoch_keys(self.node.oprf_master, d.epoch_id, res=d.res, res_min=d.res_min)
        timed_keys = timed_epoch_keys(self.node.oprf_master, d.epoch_id, d.timed_groups())
        if any(keys[r].public != d.public_keys[r] for r in keys) or any(
            timed_keys[g].public != d.timed_public_keys[g] for g in timed_keys
        ):
            raise LocalProtocolError(
                f"epoch {sequence} was not made with this node's OPRF master secret"
            )
        params = snapshot_params(d)
        blocks = BlockFile(directory)
        if blocks.count != params.block_count:
            blocks.close()
            raise LocalProtocolError(f"epoch {sequence}: snapshot block count does not match")
        return ServedEpoch(descriptor, keys, params, blocks, directory, timed_keys)

    def current(self) -> ServedEpoch | None:
        sequence = self.current_sequence()
        return None if sequence is None else self.load(sequence)
