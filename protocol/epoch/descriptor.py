"""The signed epoch descriptor: what a responder commits to for one epoch.

It names the node and epoch, when it was made and until when it holds, the
resolutions, one VOPRF public key per token resolution, the snapshot's encoding
parameters and Merkle root, the query limit and the output policy; a v2
descriptor adds the epoch's time tree (slot length and count) and one public
key per (resolution, time level) for timed tokens. The proposer
rejects descriptors that are badly signed, for someone else, expired, dated in
the future, or older than one it has already seen (a replayed descriptor from an
earlier epoch); the server also refuses a second, different descriptor for a
sequence it already accepted (an equivocation, ``server/node/descriptors.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from nacl.signing import SigningKey, VerifyKey

from hexpsi.protocol.crypto.group import ELEMENT_SIZE, validate_element
from hexpsi.protocol.crypto.signing import verify_signature
from hexpsi.protocol.encoding import Reader, Writer, tagged_hash
from hexpsi.protocol.errors import (
    LocalProtocolError,
    RemoteProtocolError,
    StaleError,
    VerificationError,
)
from hexpsi.protocol.geo.resolution import check_resolutions, is_resolution
from hexpsi.protocol.limits import DIGEST_SIZE, EPOCH_ID_SIZE, SIGNATURE_SIZE
from hexpsi.protocol.snapshot.gcs import GcsParams
from hexpsi.protocol.spacetime.tokens import TimedGroup, timed_groups
from hexpsi.protocol.spacetime.tree import TimeTree

DESCRIPTOR_LABEL = b"hexpsi/v1/descriptor"
DESCRIPTOR_V2_LABEL = b"hexpsi/v2/descriptor"
"""A descriptor with a time tree: the v1 fields, then the tree and the timed keys."""
DIGEST_LABEL = b"hexpsi/v1/descriptor-digest"
OUTPUT_POLICIES = ("cells", "count")
MAX_NODE_SIZE = 63
MAX_PARAMS_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Descriptor:
    """The fields a responder commits to for one epoch."""

    node: str
    epoch_id: bytes
    sequence: int
    created_at: float
    valid_until: float
    res: int
    res_min: int
    public_keys: Mapping[int, bytes] = field(hash=False)
    snapshot_params: bytes
    snapshot_root: bytes
    snapshot_bytes: int
    max_query_tokens: int
    output_policy: str = "cells"
    time_tree: TimeTree | None = None
    """The epoch's slots (None: the epoch answers standing tokens only, a v1 descriptor)."""
    timed_public_keys: Mapping[TimedGroup, bytes] = field(default_factory=dict, hash=False)
    """One VOPRF public key per (resolution, time level) when there is a time tree."""

    def __post_init__(self) -> None:
        check_resolutions(self.res, self.res_min)
        if len(self.epoch_id) != EPOCH_ID_SIZE:
            raise LocalProtocolError(f"epoch id must be {EPOCH_ID_SIZE} bytes")
        if sorted(self.public_keys) != list(range(self.res_min, self.res + 1)):
            raise LocalProtocolError("descriptor needs one public key per resolution res_min..res")
        if self.output_policy not in OUTPUT_POLICIES:
            raise LocalProtocolError(f"output policy must be one of {OUTPUT_POLICIES}")
        if not self.created_at < self.valid_until:
            raise LocalProtocolError("descriptor must be valid for a positive time")
        if len(self.snapshot_root) != DIGEST_SIZE:
            raise LocalProtocolError(f"snapshot root must be {DIGEST_SIZE} bytes")
        # Everything decode() would refuse is refused here, so every descriptor round-trips.
        if len(self.node.encode("utf-8")) > MAX_NODE_SIZE:
            raise LocalProtocolError(f"node name must be at most {MAX_NODE_SIZE} bytes")
        if len(self.snapshot_params) > MAX_PARAMS_SIZE:
            raise LocalProtocolError(f"snapshot parameters exceed {MAX_PARAMS_SIZE} bytes")
        if not math.isfinite(self.created_at) or not math.isfinite(self.valid_until):
            raise LocalProtocolError("descriptor times must be finite")
        for name, value, bits in (
            ("sequence", self.sequence, 64),
            ("snapshot_bytes", self.snapshot_bytes, 64),
            ("max_query_tokens", self.max_query_tokens, 32),
        ):
            if not 0 <= value < 1 << bits:
                raise LocalProtocolError(f"{name} must fit in {bits} unsigned bits, got {value}")
        self._check_time()

    def _check_time(self) -> None:
        tree = self.time_tree
        if tree is None:
            if self.timed_public_keys:
                raise LocalProtocolError("timed keys need a time tree")
            return
        expected = TimeTree.for_horizon(self.created_at, self.valid_until, tree.slot_seconds)
        if tree != expected:
            raise LocalProtocolError("the time tree does not span the epoch's validity")
        if list(self.timed_public_keys) != self.timed_groups():
            raise LocalProtocolError(
                "descriptor needs one timed key per resolution and time level, in order"
            )

    def timed_groups(self) -> list[TimedGroup]:
        """Every (resolution, time level) this epoch answers (none without a time tree)."""
        if self.time_tree is None:
            return []
        return timed_groups(self.res, self.res_min, self.time_tree)

    def encode(self) -> bytes:
        label = DESCRIPTOR_LABEL if self.time_tree is None else DESCRIPTOR_V2_LABEL
        writer = (
            Writer()
            .fixed(label, len(label))
            .text(self.node)
            .fixed(self.epoch_id, EPOCH_ID_SIZE)
            .u64(self.sequence)
            .f64(self.created_at)
            .f64(self.valid_until)
            .u8(self.res)
            .u8(self.res_min)
        )
        for resolution in range(self.res_min, self.res + 1):
            writer.fixed(self.public_keys[resolution], ELEMENT_SIZE)
        writer.blob(self.snapshot_params).fixed(self.snapshot_root, DIGEST_SIZE)
        writer.u64(self.snapshot_bytes).u32(self.max_query_tokens).text(self.output_policy)
        if self.time_tree is not None:
            tree = self.time_tree
            writer.f64(tree.origin).u32(tree.slot_seconds).u32(tree.slots)
            for group in self.timed_groups():
                writer.fixed(self.timed_public_keys[group], ELEMENT_SIZE)
        return writer.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Descriptor:
        timed = bytes(data[: len(DESCRIPTOR_V2_LABEL)]) == DESCRIPTOR_V2_LABEL
        reader = Reader(data, what="epoch descriptor")
        reader.expect(DESCRIPTOR_V2_LABEL if timed else DESCRIPTOR_LABEL)
        node = reader.text(max_size=MAX_NODE_SIZE)
        epoch_id = reader.fixed(EPOCH_ID_SIZE)
        sequence = reader.u64()
        created_at = reader.f64()
        valid_until = reader.f64()
        res = reader.u8()
        res_min = reader.u8()
        if not (is_resolution(res) and is_resolution(res_min) and res_min <= res):
            raise VerificationError("epoch descriptor holds impossible resolutions")
        keys = {r: validate_element(reader.fixed(ELEMENT_SIZE)) for r in range(res_min, res + 1)}
        params = reader.blob(max_size=MAX_PARAMS_SIZE)
        root = reader.fixed(DIGEST_SIZE)
        snapshot_bytes = reader.u64()
        max_query_tokens = reader.u32()
        policy = reader.text(max_size=16)
        tree = None
        timed_keys: dict[TimedGroup, bytes] = {}
        try:
            if timed:
                tree = TimeTree(reader.f64(), reader.u32(), reader.u32())
                timed_keys = {
                    group: validate_element(reader.fixed(ELEMENT_SIZE))
                    for group in timed_groups(res, res_min, tree)
                }
            reader.end()
            return cls(
                node=node,
                epoch_id=epoch_id,
                sequence=sequence,
                created_at=created_at,
                valid_until=valid_until,
                res=res,
                res_min=res_min,
                public_keys=keys,
                snapshot_params=params,
                snapshot_root=root,
                snapshot_bytes=snapshot_bytes,
                max_query_tokens=max_query_tokens,
                output_policy=policy,
                time_tree=tree,
                timed_public_keys=timed_keys,
            )
        except LocalProtocolError as error:
            raise VerificationError(f"epoch descriptor is malformed: {error.message}") from None


@dataclass(frozen=True, slots=True)
class SignedDescriptor:
    """A descriptor with its exact encoding and the responder's Ed25519 signature."""

    descriptor: Descriptor
    encoded: bytes
    signature: bytes

    @property
    def digest(self) -> bytes:
        """What transcripts and receipts bind to: a hash of the signed bytes."""
        return descriptor_digest(self.encoded)

    @property
    def signed_message(self) -> bytes:
        """The signature, then the descriptor bytes: NaCl's signed-message layout.

        One self-verifying file: ``VerifyKey(key).verify(data)`` (PyNaCl) or
        ``crypto_sign_open`` (libsodium) checks it and returns the descriptor bytes.
        """
        return self.signature + self.encoded

    @classmethod
    def from_signed_message(
        cls, data: bytes, verify_key: VerifyKey, *, expected_node: str | None = None
    ) -> SignedDescriptor:
        """Read back :attr:`signed_message`, checking signature and node (not the time)."""
        if len(data) <= SIGNATURE_SIZE:
            raise VerificationError("a signed descriptor is shorter than its signature")
        return cls.verify_without_freshness(
            data[SIGNATURE_SIZE:], data[:SIGNATURE_SIZE], verify_key, expected_node=expected_node
        )

    @classmethod
    def sign(cls, descriptor: Descriptor, signing_key: SigningKey) -> SignedDescriptor:
        encoded = descriptor.encode()
        return cls(descriptor, encoded, signing_key.sign(encoded).signature)

    @classmethod
    def verify(
        cls,
        encoded: bytes,
        signature: bytes,
        verify_key: VerifyKey,
        *,
        now: float,
        max_skew: float,
        expected_node: str | None = None,
        newer_than: int | None = None,
    ) -> SignedDescriptor:
        """Check signature, node, freshness at ``now`` and sequence; raise on any failure.

        A descriptor dated more than ``max_skew`` seconds after ``now`` is refused
        as dated in the future. ``newer_than`` is the highest sequence already
        accepted from this node: an older descriptor is a replay of a past epoch.
        """
        signed = cls.verify_without_freshness(
            encoded, signature, verify_key, expected_node=expected_node
        )
        descriptor = signed.descriptor
        if now > descriptor.valid_until:
            raise StaleError(f"epoch descriptor of {descriptor.node!r} has expired")
        if now + max_skew < descriptor.created_at:
            raise StaleError(f"epoch descriptor of {descriptor.node!r} is dated in the future")
        if newer_than is not None and descriptor.sequence < newer_than:
            raise StaleError(
                f"epoch descriptor sequence {descriptor.sequence} is older than {newer_than} "
                "already seen: a replay of a past epoch"
            )
        return signed

    @classmethod
    def verify_without_freshness(
        cls,
        encoded: bytes,
        signature: bytes,
        verify_key: VerifyKey,
        *,
        expected_node: str | None = None,
    ) -> SignedDescriptor:
        """Check signature and node only, not the time: for descriptors judged later
        (evidence, by its receipt's time), kept ones, or a node's own stored epochs."""
        verify_signature(
            verify_key, encoded, signature, "epoch descriptor signature does not verify"
        )
        descriptor = Descriptor.decode(encoded)
        if expected_node is not None and descriptor.node != expected_node:
            raise VerificationError(
                f"descriptor is for node {descriptor.node!r}, expected {expected_node!r}"
            )
        return cls(descriptor, bytes(encoded), bytes(signature))


def descriptor_digest(encoded: bytes) -> bytes:
    """The digest of a descriptor's signed bytes (:attr:`SignedDescriptor.digest`)."""
    return tagged_hash(DIGEST_LABEL, encoded)


def snapshot_params(descriptor: Descriptor) -> GcsParams:
    """The set-encoding parameters a descriptor commits to."""
    try:
        return GcsParams.decode(descriptor.snapshot_params)
    except RemoteProtocolError as error:
        raise VerificationError(f"descriptor holds bad snapshot parameters: {error}") from None
