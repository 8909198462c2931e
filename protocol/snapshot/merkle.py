"""The commitment over a snapshot's blocks: a Merkle tree, so one block can be checked alone.

The tree has the shape of RFC 9162 (Certificate Transparency v2) §2.1: for
``n > 1`` leaves, the left subtree holds the largest power of two below ``n``.
That shape can be built leaf by leaf keeping only one pending root per level
(:class:`MerkleBuilder`), kept whole to hand out audit paths (:class:`MerkleTree`),
and its audit paths verify with the RFC's algorithm (:func:`root_from_proof`).

Every hash is SHA-256 over a versioned, length-prefixed label and the parts::

    leaf  = H("hexpsi/v1/snapshot-leaf"  || u32 index || block)
    node  = H("hexpsi/v1/snapshot-node"  || left || right)
    empty = H("hexpsi/v1/snapshot-empty")                     (root of zero leaves)
    digest = H("hexpsi/v1/snapshot-root" || u32 len(params) || params || root)

The leaf binds its position, so a block cannot be replayed at another index;
the digest binds the tree to the encoding parameters (λ, count, block size,
coding parameter), which also fix the number of leaves.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from hexpsi.protocol.errors import InputError, VerificationError
from hexpsi.protocol.limits import DIGEST_SIZE

MAX_LEAVES = 1 << 32
"""Leaf indices are encoded as u32."""

_LEAF_LABEL = b"hexpsi/v1/snapshot-leaf"
_NODE_LABEL = b"hexpsi/v1/snapshot-node"
_EMPTY_LABEL = b"hexpsi/v1/snapshot-empty"
_ROOT_LABEL = b"hexpsi/v1/snapshot-root"


def _hash(label: bytes, *parts: bytes) -> bytes:
    h = hashlib.sha256(len(label).to_bytes(1, "big") + label)
    for part in parts:
        h.update(part)
    return h.digest()


def leaf_hash(index: int, block: bytes) -> bytes:
    """Hash of block number ``index``."""
    if not 0 <= index < MAX_LEAVES:
        raise InputError(f"leaf index {index} is outside 0..{MAX_LEAVES - 1}")
    return _hash(_LEAF_LABEL, index.to_bytes(4, "big"), block)


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an inner node from its two children."""
    return _hash(_NODE_LABEL, left, right)


EMPTY_ROOT = _hash(_EMPTY_LABEL)


def commitment(params_encoding: bytes, tree_root: bytes) -> bytes:
    """The snapshot digest published in the descriptor: the tree root bound to the parameters."""
    return _hash(_ROOT_LABEL, len(params_encoding).to_bytes(4, "big"), params_encoding, tree_root)


class MerkleBuilder:
    """Builds the root while leaves arrive, holding one pending subtree root per level.

    ``_pending[i]`` is the root of a perfect subtree; sizes strictly decrease along
    the list, mirroring the binary digits of the leaf count.
    """

    __slots__ = ("_count", "_pending")

    def __init__(self) -> None:
        self._pending: list[tuple[int, bytes]] = []
        self._count = 0

    @property
    def leaf_count(self) -> int:
        return self._count

    def add_block(self, block: bytes) -> bytes:
        """Add the next block as a leaf; returns its leaf hash (worth keeping for proofs)."""
        leaf = leaf_hash(self._count, block)
        self.add_leaf(leaf)
        return leaf

    def add_leaf(self, leaf: bytes) -> None:
        """Add an already computed leaf hash as the next leaf."""
        if self._count >= MAX_LEAVES:
            raise InputError(f"a snapshot tree holds at most {MAX_LEAVES} leaves")
        size, digest = 1, leaf
        while self._pending and self._pending[-1][0] == size:
            _, left = self._pending.pop()
            size, digest = 2 * size, node_hash(left, digest)
        self._pending.append((size, digest))
        self._count += 1

    def root(self) -> bytes:
        """Root of the leaves added so far (RFC 9162 shape); does not end the building."""
        if not self._pending:
            return EMPTY_ROOT
        digest = self._pending[-1][1]
        for _, left in reversed(self._pending[:-1]):
            digest = node_hash(left, digest)
        return digest


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """Root over a whole list of leaf hashes."""
    builder = MerkleBuilder()
    for leaf in leaves:
        builder.add_leaf(leaf)
    return builder.root()


class MerkleTree:
    """Every level of a finished tree, so each audit path costs O(log n) lookups.

    Level by level, nodes pair up left to right and an odd last node moves up
    unchanged; that builds exactly the RFC 9162 shape. Holds about two hashes
    per leaf (~11 MB of Python bytes for the 78k leaves of a 10M-value snapshot).
    """

    __slots__ = ("_levels",)

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if len(leaves) > MAX_LEAVES:
            raise InputError(f"a snapshot tree holds at most {MAX_LEAVES} leaves")
        level = list(leaves)
        self._levels = [level]
        while len(level) > 1:
            paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                paired.append(level[-1])
            level = paired
            self._levels.append(level)

    @property
    def leaf_count(self) -> int:
        return len(self._levels[0])

    def root(self) -> bytes:
        return self._levels[-1][0] if self._levels[0] else EMPTY_ROOT

    def inclusion_proof(self, index: int) -> tuple[bytes, ...]:
        """The audit path of leaf ``index``: sibling hashes from the leaf up (RFC 9162 PATH)."""
        if not 0 <= index < self.leaf_count:
            raise InputError(f"leaf index {index} is outside a tree of {self.leaf_count} leaves")
        path = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index >>= 1
        return tuple(path)


def inclusion_proof(leaves: Sequence[bytes], index: int) -> tuple[bytes, ...]:
    """The audit path of leaf ``index`` in the tree over ``leaves`` (builds the whole tree:
    keep a :class:`MerkleTree` when asking for many)."""
    return MerkleTree(leaves).inclusion_proof(index)


def root_from_proof(index: int, leaf: bytes, proof: Sequence[bytes], leaf_count: int) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` at ``index`` (RFC 9162 §2.1.3.2).

    Raises VerificationError when the path cannot belong to a tree of ``leaf_count``
    leaves (wrong length, index out of range, malformed hashes).
    """
    if not 0 <= index < leaf_count or leaf_count > MAX_LEAVES:
        raise VerificationError("inclusion proof does not verify")
    fn, sn, digest = index, leaf_count - 1, leaf
    for sibling in proof:
        if sn == 0 or len(sibling) != DIGEST_SIZE:
            raise VerificationError("inclusion proof does not verify")
        if fn & 1 or fn == sn:
            digest = node_hash(sibling, digest)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            digest = node_hash(digest, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof does not verify")
    return digest


def verify_inclusion(
    root: bytes, index: int, leaf_block: bytes, proof: Sequence[bytes], leaf_count: int
) -> None:
    """Check that ``leaf_block`` is block ``index`` of the tree with ``root``; raises if not."""
    if not 0 <= index < min(leaf_count, MAX_LEAVES):
        raise VerificationError("inclusion proof does not verify")
    computed = root_from_proof(index, leaf_hash(index, leaf_block), proof, leaf_count)
    if not hmac.compare_digest(computed, root):
        raise VerificationError("inclusion proof does not verify")
