"""Starting an epoch: fresh keys, a new snapshot and the signed descriptor for both.

Each epoch has a random id, so its keys (derived from the master secret and the
id) are fresh and its snapshot shares no values with any other epoch's. The
sequence number only grows, so proposers can refuse a replayed old descriptor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nacl.signing import SigningKey

from hexpsi.protocol.crypto.keys import epoch_keys
from hexpsi.protocol.crypto.oprf import KeyPair
from hexpsi.protocol.epoch.descriptor import Descriptor, SignedDescriptor
from hexpsi.protocol.geo.tokens import responder_tokens
from hexpsi.protocol.limits import EPOCH_ID_SIZE
from hexpsi.protocol.padding import DEFAULT_FALSE_POSITIVE
from hexpsi.protocol.parallel import Mapper
from hexpsi.protocol.randomness import RandomBytes
from hexpsi.protocol.snapshot.build import BuiltSnapshot, build_snapshot


@dataclass(frozen=True)
class Epoch:
    """What a responder serves for one epoch: the signed descriptor and its keys."""

    descriptor: SignedDescriptor
    keys: dict[int, KeyPair]
    snapshot: BuiltSnapshot


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
) -> Epoch:
    """Build a whole new epoch; the snapshot's blocks stream to ``sink``."""
    epoch_id = rng(EPOCH_ID_SIZE)
    keys = epoch_keys(master_secret, epoch_id, res=res, res_min=res_min)
    tokens = responder_tokens(protected_cells, res=res, res_min=res_min)
    snapshot = build_snapshot(
        tokens,
        keys,
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
    )
    return Epoch(SignedDescriptor.sign(descriptor, signing_key), keys, snapshot)
