"""Starting an epoch: fresh keys, a new snapshot and the signed descriptor for both.

Each epoch has a random id, so its keys (derived from the master secret and the
id) are fresh and its snapshot shares no values with any other epoch's. The
sequence number only grows, so proposers can refuse a replayed old descriptor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

import h3.api.basic_int as h3
from nacl.signing import SigningKey

from hexpsi.protocol.crypto.keys import epoch_keys, timed_epoch_keys
from hexpsi.protocol.crypto.oprf import KeyPair
from hexpsi.protocol.epoch.descriptor import Descriptor, SignedDescriptor
from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.tokens import is_cell, responder_tokens
from hexpsi.protocol.limits import EPOCH_ID_SIZE
from hexpsi.protocol.padding import DEFAULT_FALSE_POSITIVE
from hexpsi.protocol.parallel import Mapper
from hexpsi.protocol.randomness import RandomBytes
from hexpsi.protocol.snapshot.build import BuiltSnapshot, TimedSource, build_snapshot
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.protocol.spacetime.tokens import (
    TimedCell,
    TimedGroup,
    responder_timed_count,
    responder_timed_tokens,
    timed_groups,
)
from hexpsi.protocol.spacetime.tree import TimeTree


@dataclass(frozen=True)
class Epoch:
    """What a responder serves for one epoch: the signed descriptor and its keys."""

    descriptor: SignedDescriptor
    keys: dict[int, KeyPair]
    snapshot: BuiltSnapshot
    timed_keys: dict[TimedGroup, KeyPair] = field(default_factory=dict)
    timed_outside: int = 0
    """Timed cells left out because their interval misses the epoch's horizon."""


def slot_timed_cells(
    timed_cells: Iterable[tuple[int, Interval]], tree: TimeTree
) -> tuple[list[TimedCell], int]:
    """Timed cells with their intervals rounded outward to slots, and how many missed
    the horizon altogether (they cannot be in this epoch)."""
    slotted: list[TimedCell] = []
    outside = 0
    for cell, interval in timed_cells:
        slots = tree.slot_range(interval)
        if slots is None:
            outside += 1
        else:
            slotted.append((cell, slots))
    return slotted, outside


def start_epoch(
    *,
    node: str,
    sequence: int,
    master_secret: bytes,
    signing_key: SigningKey,
    protected_cells: Iterable[int],
    res: int,
    res_min: int,
    now: float,
    validity_seconds: float,
    max_query_tokens: int,
    rng: RandomBytes,
    sink: Callable[[bytes], None],
    output_policy: str = "cells",
    false_positive: float = DEFAULT_FALSE_POSITIVE,
    mapper: Mapper = map,
    timed_cells: Iterable[tuple[int, Interval]] = (),
    slot_seconds: int | None = None,
) -> Epoch:
    """Build a whole new epoch; the snapshot's blocks stream to ``sink``.

    With ``slot_seconds`` the epoch has a time tree over its validity and its
    snapshot also holds the space-time tokens of ``timed_cells`` (cells at
    ``res`` with the interval each is protected for); without, it answers
    standing tokens only (a v1 descriptor) and takes no timed cells.
    """
    epoch_id = rng(EPOCH_ID_SIZE)
    keys = epoch_keys(master_secret, epoch_id, res=res, res_min=res_min)
    tokens = responder_tokens(protected_cells, res=res, res_min=res_min)
    tree = None
    timed = None
    timed_keys: dict[TimedGroup, KeyPair] = {}
    outside = 0
    if slot_seconds is not None:
        tree = TimeTree.for_horizon(now, now + validity_seconds, slot_seconds)
        slotted, outside = slot_timed_cells(timed_cells, tree)
        check_timed_cells(slotted, res)
        timed_keys = timed_epoch_keys(master_secret, epoch_id, timed_groups(res, res_min, tree))
        timed = TimedSource(
            groups=partial(responder_timed_tokens, slotted, res=res, res_min=res_min, tree=tree),
            keys=timed_keys,
            count=responder_timed_count(slotted, res=res, res_min=res_min, tree=tree),
        )
    elif any(True for _ in timed_cells):
        raise InputError(
            "timed positions need an epoch with a time tree",
            hint="set slot_minutes in config.toml (default 15)",
        )
    snapshot = build_snapshot(
        tokens,
        keys,
        timed=timed,
        rng=rng,
        sink=sink,
        max_query_tokens=max_query_tokens,
        false_positive=false_positive,
        mapper=mapper,
    )
    descriptor = Descriptor(
        node=node,
        epoch_id=epoch_id,
        sequence=sequence,
        created_at=now,
        valid_until=now + validity_seconds,
        res=res,
        res_min=res_min,
        public_keys={r: key.public for r, key in keys.items()},
        snapshot_params=snapshot.params.encode(),
        snapshot_root=snapshot.digest,
        snapshot_bytes=snapshot.total_bytes,
        max_query_tokens=max_query_tokens,
        output_policy=output_policy,
        time_tree=tree,
        timed_public_keys={group: key.public for group, key in timed_keys.items()},
    )
    return Epoch(
        SignedDescriptor.sign(descriptor, signing_key), keys, snapshot, timed_keys, outside
    )


def check_timed_cells(slotted: Iterable[TimedCell], res: int) -> None:
    """Every timed cell must be a valid cell at the epoch's resolution."""
    for cell, _ in slotted:
        if not is_cell(cell) or h3.get_resolution(cell) != res:
            raise InputError(f"{cell!r} is not a valid H3 cell at resolution {res}")
