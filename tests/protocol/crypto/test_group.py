"""ristretto255 through libsodium: RFC 9496 vectors and the validation rules."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hexpsi.protocol.crypto import group
from hexpsi.protocol.crypto.xmd import expand_message_xmd_sha512
from hexpsi.protocol.errors import InputError, LocalProtocolError, RemoteProtocolError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "vectors" / "rfc9496-ristretto255.json").read_text()
)
MULTIPLES = [bytes.fromhex(h) for h in VECTORS["generator_multiples"]]
INVALID = [bytes.fromhex(h) for h in VECTORS["invalid_encodings"]]
L = group.ORDER


def scalar(n: int) -> bytes:
    return (n % 2**256).to_bytes(32, "little")


scalars = st.integers(min_value=1, max_value=L - 1).map(scalar)


def test_vector_file_is_complete() -> None:
    assert len(MULTIPLES) == 16
    assert len(INVALID) == 29
    assert len(VECTORS["from_uniform"]) == 7


def test_identity_and_generator_constants_match_rfc() -> None:
    assert MULTIPLES[0] == group.IDENTITY
    assert MULTIPLES[1] == group.GENERATOR


@pytest.mark.parametrize("n", range(1, 16))
def test_generator_multiples_by_base_mult(n: int) -> None:
    assert group.scalar_mult_base(scalar(n)) == MULTIPLES[n]


@pytest.mark.parametrize("n", range(1, 16))
def test_generator_multiples_by_variable_base_mult(n: int) -> None:
    assert group.scalar_mult(scalar(n), group.GENERATOR) == MULTIPLES[n]


def test_generator_multiples_by_repeated_addition() -> None:
    total = group.IDENTITY
    for expected in MULTIPLES[1:]:
        total = group.element_add(total, group.GENERATOR)
        assert total == expected
    for expected in reversed(MULTIPLES[:-1]):
        total = group.element_sub(total, group.GENERATOR)
        assert total == expected


@pytest.mark.parametrize("n", range(1, 16))
def test_generator_multiples_are_valid_elements(n: int) -> None:
    assert group.validate_element(MULTIPLES[n]) == MULTIPLES[n]


@pytest.mark.parametrize("encoding", INVALID, ids=[e.hex()[:12] for e in INVALID])
def test_invalid_encodings_rejected_by_validation(encoding: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="not a canonical ristretto255 encoding"):
        group.validate_element(encoding)


@pytest.mark.parametrize("encoding", INVALID, ids=[e.hex()[:12] for e in INVALID])
def test_invalid_encodings_rejected_by_every_operation(encoding: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="not a canonical"):
        group.scalar_mult(scalar(3), encoding)
    with pytest.raises(RemoteProtocolError, match="not a canonical"):
        group.element_add(group.GENERATOR, encoding)
    with pytest.raises(RemoteProtocolError, match="not a canonical"):
        group.element_sub(encoding, group.GENERATOR)
    with pytest.raises(RemoteProtocolError, match="not a canonical"):
        group.linear_combination([scalar(1)], [encoding])


@pytest.mark.parametrize(
    "pair", VECTORS["from_uniform"], ids=[p["output"][:12] for p in VECTORS["from_uniform"]]
)
def test_element_derivation_from_uniform_bytes(pair: dict[str, str]) -> None:
    output = group.element_from_uniform(bytes.fromhex(pair["input"]))
    assert output == bytes.fromhex(pair["output"])


def test_element_derivation_collisions_from_rfc() -> None:
    same = VECTORS["from_uniform_same_output"]
    outputs = {group.element_from_uniform(bytes.fromhex(h)) for h in same["inputs"]}
    assert outputs == {bytes.fromhex(same["output"])}


def test_element_derivation_needs_64_bytes() -> None:
    with pytest.raises(InputError):
        group.element_from_uniform(bytes(63))


def test_identity_rejected() -> None:
    with pytest.raises(RemoteProtocolError, match="identity"):
        group.validate_element(group.IDENTITY)
    with pytest.raises(RemoteProtocolError, match="identity"):
        group.scalar_mult(scalar(5), group.IDENTITY)
    with pytest.raises(RemoteProtocolError, match="blinded element 1 is the identity"):
        group.scalar_mult_many(scalar(5), [group.GENERATOR, group.IDENTITY], "blinded element")


@pytest.mark.parametrize("size", [0, 1, 31, 33, 64])
def test_wrong_length_elements_rejected(size: int) -> None:
    data = group.GENERATOR[:size] if size <= 32 else group.GENERATOR + bytes(size - 32)
    with pytest.raises(RemoteProtocolError, match=f"32 bytes, got {size}"):
        group.validate_element(data)
    with pytest.raises(RemoteProtocolError, match="32 bytes"):
        group.scalar_mult(scalar(2), data)
    with pytest.raises(RemoteProtocolError, match="32 bytes"):
        group.element_add(group.GENERATOR, data)


def test_non_bytes_element_rejected() -> None:
    with pytest.raises(RemoteProtocolError, match="32 bytes"):
        group.validate_element(bytearray(group.GENERATOR))  # type: ignore[arg-type]


def test_validate_elements_names_the_index() -> None:
    with pytest.raises(RemoteProtocolError, match="evaluated element 2 is not a canonical"):
        group.validate_elements([MULTIPLES[1], MULTIPLES[2], INVALID[0]], "evaluated element")


NON_CANONICAL = [L, L + 1, 2**253, 2**255 - 19, 2**256 - 1]


@pytest.mark.parametrize("value", NON_CANONICAL)
def test_non_canonical_scalars_rejected(value: int) -> None:
    with pytest.raises(RemoteProtocolError, match="not canonical"):
        group.validate_scalar(scalar(value))
    with pytest.raises(InputError, match="not canonical"):
        group.require_scalar(scalar(value))
    with pytest.raises(InputError, match="not canonical"):
        group.scalar_mult(scalar(value), group.GENERATOR)
    with pytest.raises(InputError, match="not canonical"):
        group.scalar_mult_base(scalar(value))
    assert not group.is_canonical_scalar(scalar(value))


def test_zero_scalar_rejected_where_it_would_give_identity() -> None:
    with pytest.raises(RemoteProtocolError, match="zero"):
        group.validate_scalar(scalar(0))
    with pytest.raises(InputError, match="zero"):
        group.scalar_mult_base(scalar(0))
    with pytest.raises(InputError, match="zero"):
        group.scalar_mult(scalar(0), group.GENERATOR)
    with pytest.raises(InputError, match="zero"):
        group.scalar_invert(scalar(0))
    assert group.require_scalar(scalar(0), allow_zero=True) == scalar(0)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_wrong_length_scalars_rejected(size: int) -> None:
    with pytest.raises(RemoteProtocolError, match=f"32 bytes, got {size}"):
        group.validate_scalar(bytes([1]) * size)


def test_largest_canonical_scalar_accepted() -> None:
    top = scalar(L - 1)
    assert group.validate_scalar(top) == top
    # (L - 1) * G = -G
    assert group.element_add(group.scalar_mult_base(top), group.GENERATOR) == group.IDENTITY


@settings(max_examples=30, deadline=None)
@given(a=scalars, b=scalars)
def test_scalar_arithmetic_matches_integers(a: bytes, b: bytes) -> None:
    x, y = int.from_bytes(a, "little"), int.from_bytes(b, "little")
    assert group.scalar_add(a, b) == scalar((x + y) % L)
    assert group.scalar_sub(a, b) == scalar((x - y) % L)
    assert group.scalar_mul(a, b) == scalar(x * y % L)
    assert group.scalar_negate(a) == scalar(-x % L)
    assert group.scalar_invert(a) == scalar(pow(x, -1, L))


@settings(max_examples=10, deadline=None)
@given(values=st.lists(scalars, min_size=1, max_size=12))
def test_batch_inversion_matches_single_inversion(values: list[bytes]) -> None:
    assert group.scalar_invert_many(values) == [group.scalar_invert(v) for v in values]


def test_batch_inversion_rejects_zero_and_accepts_empty() -> None:
    assert group.scalar_invert_many([]) == []
    with pytest.raises(InputError, match="scalar 1 is zero"):
        group.scalar_invert_many([scalar(3), scalar(0)])


@settings(max_examples=10, deadline=None)
@given(a=scalars, b=scalars)
def test_scalar_mult_is_a_group_action(a: bytes, b: bytes) -> None:
    point = group.scalar_mult_base(a)
    assert group.scalar_mult(b, point) == group.scalar_mult_base(group.scalar_mul(a, b))
    assert group.scalar_mult(group.scalar_invert(a), point) == group.GENERATOR


def test_linear_combination_handles_identity_and_zero() -> None:
    g2, g3 = MULTIPLES[2], MULTIPLES[3]
    assert group.linear_combination([scalar(2), scalar(1)], [g3, g2]) == MULTIPLES[8]
    assert group.linear_combination([scalar(0), scalar(5)], [g3, group.IDENTITY]) == group.IDENTITY
    assert group.linear_combination([scalar(1), scalar(L - 1)], [g2, g2]) == group.IDENTITY
    assert group.linear_combination([], []) == group.IDENTITY
    assert group.linear_combination([scalar(4)], [group.GENERATOR]) == MULTIPLES[4]
    with pytest.raises(InputError):
        group.linear_combination([scalar(1)], [])


def test_weighted_sums_share_weights_across_columns_and_chunks() -> None:
    """Three hundred terms span three parallel chunks; each column sums like its own
    linear combination, and the weights are asked for chunk by chunk."""
    count = 300
    weights = [scalar(3 * i + 1) for i in range(count)]
    left = [MULTIPLES[1 + i % 15] for i in range(count)]
    right = [MULTIPLES[15 - i % 15] for i in range(count)]
    asked: list[tuple[int, int]] = []

    def weights_for(start: int, end: int) -> list[bytes]:
        asked.append((start, end))
        return weights[start:end]

    columns = [group.Column(left), group.Column(right, "peer element", peer_elements=True)]
    with ThreadPoolExecutor(2) as pool:
        sums = group.weighted_sums(weights_for, columns, mapper=pool.map)
    assert sums == [
        group.linear_combination(weights, left),
        group.linear_combination(weights, right),
    ]
    assert sorted(asked) == [(0, 128), (128, 256), (256, 300)]
    # Coefficients of G: sum over i of (3i + 1) * (1 + i % 15), checked against integers.
    expected = sum((3 * i + 1) * (1 + i % 15) for i in range(count)) % L
    assert sums[0] == group.scalar_mult_base(scalar(expected))


def test_weighted_sums_name_a_bad_peer_element_by_its_place_in_the_batch() -> None:
    count = 300
    weights = [scalar(i + 1) for i in range(count)]
    elements = [MULTIPLES[2]] * count
    with ThreadPoolExecutor(2) as pool:
        for bad, message in (
            (group.IDENTITY, "is the identity"),
            (INVALID[0], "is not a canonical"),
        ):
            column = group.Column([*elements[:200], bad, *elements[201:]], "peer element", True)
            with pytest.raises(RemoteProtocolError, match=f"peer element 200 {message}"):
                group.weighted_sums(lambda a, b: weights[a:b], [column], mapper=pool.map)
    # Without peer_elements the identity is an allowed term that adds nothing.
    column = group.Column([*elements[:200], group.IDENTITY, *elements[201:]])
    assert group.weighted_sums(lambda a, b: weights[a:b], [column]) == [
        group.scalar_mult_base(scalar(2 * (sum(range(1, count + 1)) - 201)))
    ]
    with pytest.raises(InputError, match="as many elements"):
        group.weighted_sums(lambda a, b: weights[a:b], [group.Column(elements), group.Column([])])
    with pytest.raises(InputError, match="scalars for"):
        group.weighted_sums(lambda a, b: weights[:1], [group.Column(elements[:5])])


def test_pairs_and_many_agree_with_single_mult() -> None:
    points = MULTIPLES[1:6]
    factors = [scalar(n) for n in (7, 11, 13, 17, 19)]
    assert group.scalar_mult_pairs(factors, points) == [
        group.scalar_mult(f, p) for f, p in zip(factors, points, strict=True)
    ]
    assert group.scalar_mult_many(factors[0], points) == [
        group.scalar_mult(factors[0], p) for p in points
    ]
    with pytest.raises(InputError):
        group.scalar_mult_pairs(factors[:2], points)


def test_hash_to_scalar_is_reduced_xmd() -> None:
    digest = expand_message_xmd_sha512(b"message", b"test-dst")
    expected = scalar(int.from_bytes(digest, "little") % L)
    assert group.hash_to_scalar(b"message", b"test-dst") == expected
    assert group.hash_to_scalar_many([b"message", b"other"], b"test-dst")[0] == expected


def test_hash_to_group_is_derivation_of_xmd() -> None:
    digest = expand_message_xmd_sha512(b"message", b"test-dst")
    expected = group.element_from_uniform(digest)
    assert group.hash_to_group(b"message", b"test-dst") == expected
    assert group.hash_to_group_many([b"x", b"message"], b"test-dst")[1] == expected
    assert group.hash_to_group(b"message", b"other-dst") != expected


def test_xmd_refuses_empty_or_oversized_tags() -> None:
    with pytest.raises(InputError):
        group.hash_to_group(b"m", b"")
    with pytest.raises(InputError):
        group.hash_to_group(b"m", b"x" * 256)


def test_random_scalar_reduces_64_bytes_from_rng() -> None:
    data = bytes(range(64))
    assert group.random_scalar(lambda n: data[:n]) == scalar(int.from_bytes(data, "little") % L)


def test_random_scalar_retries_a_zero_draw() -> None:
    draws = iter([scalar(L) + bytes(32), bytes([9]) + bytes(63)])
    assert group.random_scalar(lambda n: next(draws)) == scalar(9)


def test_random_scalar_refuses_a_broken_source() -> None:
    with pytest.raises(LocalProtocolError, match="multiples of the group order"):
        group.random_scalar(bytes)
    with pytest.raises(LocalProtocolError, match="64 bytes"):
        group.random_scalar(lambda n: bytes(n - 1))
