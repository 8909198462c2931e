"""The snapshot tree: RFC 9162 shape, domain-separated hashes, audit paths that catch tampering."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hexpsi.protocol.errors import InputError, VerificationError
from hexpsi.protocol.snapshot.merkle import (
    EMPTY_ROOT,
    MerkleBuilder,
    MerkleTree,
    commitment,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_proof,
    tree_root,
    verify_inclusion,
)


def labelled(label: bytes, *parts: bytes) -> bytes:
    """The documented hash format, written out independently of the module."""
    return hashlib.sha256(bytes([len(label)]) + label + b"".join(parts)).digest()


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH, recursively: left subtree = largest power of two below n."""
    if not leaves:
        return labelled(b"hexpsi/v1/snapshot-empty")
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while 2 * k < len(leaves):
        k *= 2
    return labelled(
        b"hexpsi/v1/snapshot-node", reference_root(leaves[:k]), reference_root(leaves[k:])
    )


def reference_path(leaves: list[bytes], index: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n]), recursively."""
    if len(leaves) <= 1:
        return []
    k = 1
    while 2 * k < len(leaves):
        k *= 2
    if index < k:
        return [*reference_path(leaves[:k], index), reference_root(leaves[k:])]
    return [*reference_path(leaves[k:], index - k), reference_root(leaves[:k])]


def blocks(n: int) -> list[bytes]:
    return [f"block {i}".encode() * (i % 3 + 1) for i in range(n)]


def leaves_of(data: list[bytes]) -> list[bytes]:
    return [leaf_hash(i, block) for i, block in enumerate(data)]


def test_hash_formats_are_as_documented() -> None:
    assert leaf_hash(7, b"abc") == labelled(
        b"hexpsi/v1/snapshot-leaf", (7).to_bytes(4, "big"), b"abc"
    )
    assert node_hash(b"L" * 32, b"R" * 32) == labelled(
        b"hexpsi/v1/snapshot-node", b"L" * 32, b"R" * 32
    )
    assert labelled(b"hexpsi/v1/snapshot-empty") == EMPTY_ROOT
    params, root = b"params", b"r" * 32
    assert commitment(params, root) == labelled(
        b"hexpsi/v1/snapshot-root", (6).to_bytes(4, "big"), params, root
    )


def test_hashes_are_bound_to_position_and_role() -> None:
    left, right = leaf_hash(0, b"a"), leaf_hash(1, b"b")
    assert leaf_hash(0, b"a") != leaf_hash(1, b"a")
    assert leaf_hash(0, left + right) != node_hash(left, right)
    assert commitment(b"p1", EMPTY_ROOT) != commitment(b"p2", EMPTY_ROOT)
    # The params length prefix keeps the split between params and root unambiguous.
    assert commitment(b"ab", b"c" * 32) != commitment(b"a", b"b" + b"c" * 32)


def test_builder_matches_the_recursive_definition_at_every_size() -> None:
    data = blocks(70)
    builder = MerkleBuilder()
    assert builder.root() == reference_root([])
    for i, block in enumerate(data):
        assert builder.add_block(block) == leaf_hash(i, block)
        assert builder.leaf_count == i + 1
        assert builder.root() == reference_root(leaves_of(data[: i + 1]))
    assert tree_root(leaves_of(data)) == reference_root(leaves_of(data))


def test_kept_tree_gives_the_rfc_root_and_paths_at_every_size() -> None:
    for n in range(41):
        leaves = leaves_of(blocks(n))
        tree = MerkleTree(leaves)
        assert tree.root() == reference_root(leaves)
        for index in range(n):
            assert list(tree.inclusion_proof(index)) == reference_path(leaves, index)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33])
def test_every_leaf_has_a_verifying_path(n: int) -> None:
    data = blocks(n)
    leaves = leaves_of(data)
    root = tree_root(leaves)
    for index, block in enumerate(data):
        proof = inclusion_proof(leaves, index)
        assert len(proof) <= max(1, (n - 1).bit_length())
        verify_inclusion(root, index, block, proof, n)
        assert root_from_proof(index, leaves[index], proof, n) == root


@settings(max_examples=60)
@given(st.integers(min_value=2, max_value=40), st.data())
def test_tampered_paths_are_refused(n: int, data: st.DataObject) -> None:
    contents = blocks(n)
    leaves = leaves_of(contents)
    root = tree_root(leaves)
    index = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(leaves, index)
    other = data.draw(st.integers(0, n - 1).filter(lambda i: i != index))
    position = data.draw(st.integers(0, len(proof) - 1))
    flipped = bytearray(proof[position])
    flipped[data.draw(st.integers(0, 31))] ^= 1 << data.draw(st.integers(0, 7))
    attempts = [
        (root, other, contents[index], proof, n),  # wrong index
        (root, index, contents[index] + b"x", proof, n),  # changed block
        (root, index, contents[other], proof, n),  # another block
        (root, index, contents[index], proof[:-1], n),  # truncated path
        (root, index, contents[index], (*proof, proof[0]), n),  # overlong path
        (
            root,
            index,
            contents[index],
            (*proof[:position], bytes(flipped), *proof[position + 1 :]),
            n,
        ),
        (EMPTY_ROOT, index, contents[index], proof, n),  # wrong root
        (root, index, contents[index], proof, 2 * n + 1),  # wrong tree size
        (root, index, contents[index], proof, index),  # index past the end
    ]
    for args in attempts:
        with pytest.raises(VerificationError):
            verify_inclusion(*args)


def test_single_leaf_tree_needs_an_empty_path() -> None:
    leaf_block = b"only"
    root = tree_root([leaf_hash(0, leaf_block)])
    verify_inclusion(root, 0, leaf_block, (), 1)
    with pytest.raises(VerificationError):
        verify_inclusion(root, 0, leaf_block, (root,), 1)
    with pytest.raises(VerificationError):
        verify_inclusion(root, 0, leaf_block, (), 0)


def test_malformed_sibling_hashes_are_refused() -> None:
    leaves = leaves_of(blocks(4))
    proof = inclusion_proof(leaves, 1)
    with pytest.raises(VerificationError):
        root_from_proof(1, leaves[1], (proof[0][:31], proof[1]), 4)


def test_proof_requests_outside_the_tree_are_caller_errors() -> None:
    leaves = leaves_of(blocks(3))
    with pytest.raises(InputError):
        inclusion_proof(leaves, 3)
    with pytest.raises(InputError):
        leaf_hash(-1, b"")
