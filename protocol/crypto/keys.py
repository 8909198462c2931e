"""Per-epoch, per-resolution OPRF keys derived from one node master secret.

``k[e][r]`` comes from RFC 9497 DeriveKeyPair with a seed from HKDF over the
master secret, bound to the epoch id and the resolution. Fresh keys per epoch
make snapshots of two epochs unlinkable; one key per resolution means a token
declared at the wrong resolution matches nothing, which is what lets the
responder charge by area without seeing tokens. Timed tokens have a key per
(resolution, time level) the same way, bound with a ``t`` and the level, so
the responder charges them by area and duration.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hexpsi.protocol.crypto.oprf import KeyPair, Mode, derive_key_pair
from hexpsi.protocol.errors import LocalProtocolError
from hexpsi.protocol.geo.resolution import check_resolution
from hexpsi.protocol.limits import EPOCH_ID_SIZE
from hexpsi.protocol.spacetime.tokens import TimedGroup
from hexpsi.protocol.spacetime.tree import MAX_LEVELS

MASTER_SECRET_SIZE = 32
SEED_SALT = b"hexpsi/v1/oprf-seed"
KEY_INFO = b"hexpsi/v1/oprf-key"


def _binding(epoch_id: bytes, resolution: int) -> bytes:
    if len(epoch_id) != EPOCH_ID_SIZE:
        raise LocalProtocolError(f"epoch id must be {EPOCH_ID_SIZE} bytes")
    check_resolution(resolution, error=LocalProtocolError)
    return epoch_id + bytes([resolution])


def epoch_key(master_secret: bytes, epoch_id: bytes, resolution: int) -> KeyPair:
    """The VOPRF key pair for one resolution of one epoch."""
    if len(master_secret) != MASTER_SECRET_SIZE:
        raise LocalProtocolError(f"OPRF master secret must be {MASTER_SECRET_SIZE} bytes")
    binding = _binding(epoch_id, resolution)
    seed = HKDF(algorithm=hashes.SHA512(), length=32, salt=SEED_SALT, info=binding).derive(
        master_secret
    )
    return derive_key_pair(seed, KEY_INFO + binding, Mode.VOPRF)


def epoch_keys(
    master_secret: bytes, epoch_id: bytes, *, res: int, res_min: int
) -> dict[int, KeyPair]:
    """Keys for every token resolution ``res_min..res`` of an epoch."""
    return {r: epoch_key(master_secret, epoch_id, r) for r in range(res_min, res + 1)}


TIMED_BINDING = b"t"
"""Separates a timed group's binding (epoch id, resolution, ``t``, level) from a standing one."""


def timed_epoch_key(master_secret: bytes, epoch_id: bytes, group: TimedGroup) -> KeyPair:
    """The VOPRF key pair for one (resolution, time level) group of one epoch."""
    resolution, level = group
    if not 0 <= level <= MAX_LEVELS:
        raise LocalProtocolError(f"time level must be 0..{MAX_LEVELS}, got {level}")
    if len(master_secret) != MASTER_SECRET_SIZE:
        raise LocalProtocolError(f"OPRF master secret must be {MASTER_SECRET_SIZE} bytes")
    binding = _binding(epoch_id, resolution) + TIMED_BINDING + bytes([level])
    seed = HKDF(algorithm=hashes.SHA512(), length=32, salt=SEED_SALT, info=binding).derive(
        master_secret
    )
    return derive_key_pair(seed, KEY_INFO + binding, Mode.VOPRF)


def timed_epoch_keys(
    master_secret: bytes, epoch_id: bytes, groups: Iterable[TimedGroup]
) -> dict[TimedGroup, KeyPair]:
    """Keys for every timed group of an epoch (``protocol.spacetime.tokens.timed_groups``)."""
    return {group: timed_epoch_key(master_secret, epoch_id, group) for group in groups}
