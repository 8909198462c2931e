"""The ristretto255 group (RFC 9496) through libsodium: the only module that touches rbcl.

Elements and scalars are plain 32-byte strings (canonical encodings; scalars
little-endian and below the group order L), so they cross module and wire
boundaries without conversion. Every operation runs in libsodium, which is
constant time; no curve arithmetic happens in Python.

Why libsodium through rbcl: PyNaCl exposes no ristretto255, and ``cryptography``
offers key exchange but no point addition or hash-to-group, which RFC 9497 needs. On
this hardware libsodium's ristretto255 takes about 86 us per variable-base
multiplication, 27 us per fixed-base one and 20 us per element derivation
(``server/bench/crypto.py`` measures them).

We call the libsodium that rbcl loads directly rather than through rbcl's
wrappers, chiefly because the wrappers discard libsodium's return codes
(``add`` of an invalid encoding silently yields garbage); skipping them also
saves about half a microsecond per call, which only the cheap scalar operations
notice. Each call allocates its own output buffer (batch helpers reuse one per
batch): ctypes releases the GIL while libsodium runs, so threads do run group
operations in parallel, and shared module-level buffers would race.

Errors: a bad element is something a peer sent (:class:`RemoteProtocolError`,
whose message says what is wrong); a bad scalar is an argument we were handed
(:class:`InputError`), except through :func:`validate_scalar`, which is for
scalars read off the wire.
"""

from __future__ import annotations

import ctypes
import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import rbcl

from hexpsi.protocol.crypto.xmd import UNIFORM_SIZE, XmdSha512
from hexpsi.protocol.errors import InputError, LocalProtocolError, RemoteProtocolError
from hexpsi.protocol.parallel import Mapper, in_chunks
from hexpsi.protocol.randomness import RandomBytes

ELEMENT_SIZE = 32
SCALAR_SIZE = 32
ORDER = 2**252 + 27742317777372353535851937790883648493
"""L, the prime order of ristretto255."""

IDENTITY = bytes(ELEMENT_SIZE)
"""The canonical encoding of the identity element (never valid from a peer)."""

GENERATOR = bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76")
"""The canonical encoding of ristretto255's generator (RFC 9496 section 4.4)."""

_ZERO_SCALAR = bytes(SCALAR_SIZE)
_RANDOM_SCALAR_ATTEMPTS = 4  # a zero reduction has probability 2**-252 per attempt

_lib: ctypes.CDLL = rbcl._sodium
_Buffer = ctypes.c_char * ELEMENT_SIZE
_is_valid_point = _lib.crypto_core_ristretto255_is_valid_point
_from_hash = _lib.crypto_core_ristretto255_from_hash
_point_add = _lib.crypto_core_ristretto255_add
_point_sub = _lib.crypto_core_ristretto255_sub
_mult = _lib.crypto_scalarmult_ristretto255
_mult_base = _lib.crypto_scalarmult_ristretto255_base
_reduce = _lib.crypto_core_ristretto255_scalar_reduce
_invert = _lib.crypto_core_ristretto255_scalar_invert
_scalar_mul = _lib.crypto_core_ristretto255_scalar_mul
_scalar_add = _lib.crypto_core_ristretto255_scalar_add
_scalar_sub = _lib.crypto_core_ristretto255_scalar_sub
_scalar_negate = _lib.crypto_core_ristretto255_scalar_negate


# --- validation ------------------------------------------------------------------


def validate_element(data: bytes, what: str = "group element") -> bytes:
    """``data`` if it is a canonical, non-identity ristretto255 encoding, else raise.

    Raises :class:`RemoteProtocolError` whose message says which rule failed:
    length, canonical encoding, or identity.
    """
    if not isinstance(data, bytes) or len(data) != ELEMENT_SIZE:
        size = len(data) if isinstance(data, bytes | bytearray | memoryview) else "no"
        raise RemoteProtocolError(f"{what} must be {ELEMENT_SIZE} bytes, got {size}")
    if data == IDENTITY:
        raise RemoteProtocolError(f"{what} is the identity element")
    if data[-1] & 0x80 or _is_valid_point(data) != 1:
        raise RemoteProtocolError(f"{what} is not a canonical ristretto255 encoding")
    return data


def validate_elements(
    items: Iterable[bytes], what: str = "group element", *, mapper: Mapper = map
) -> list[bytes]:
    """Validate every element; the error names the first bad one by index."""

    def work(chunk: Sequence[bytes], offset: int) -> list[bytes]:
        return [
            validate_element(item, f"{what} {index}") for index, item in enumerate(chunk, offset)
        ]

    return in_chunks(work, items if isinstance(items, Sequence) else list(items), mapper)


def validate_scalar(data: bytes, what: str = "scalar") -> bytes:
    """``data`` if it is a canonical (< L), non-zero scalar read off the wire, else raise.

    Raises :class:`RemoteProtocolError`; for scalars we hold ourselves use
    :func:`require_scalar`.
    """
    problem = _scalar_problem(data, allow_zero=False)
    if problem:
        raise RemoteProtocolError(f"{what} {problem}")
    return data


def require_scalar(data: bytes, what: str = "scalar", *, allow_zero: bool = False) -> bytes:
    """``data`` if it is a canonical scalar handed to us locally (keys, blinds), else InputError."""
    problem = _scalar_problem(data, allow_zero=allow_zero)
    if problem:
        raise InputError(f"{what} {problem}")
    return data


def is_canonical_scalar(data: bytes) -> bool:
    """Whether ``data`` is 32 bytes encoding an integer below L (zero included).

    Constant time in the value: reducing ``data`` padded to 64 bytes returns it
    unchanged exactly when it is already reduced.
    """
    if not isinstance(data, bytes) or len(data) != SCALAR_SIZE:
        return False
    out = _Buffer()
    _reduce(out, data + _ZERO_SCALAR)
    return hmac.compare_digest(out.raw, data)


def is_zero_scalar(data: bytes) -> bool:
    """Constant-time test for the zero scalar (scalars may be secret)."""
    return hmac.compare_digest(data, _ZERO_SCALAR)


def _scalar_problem(data: bytes, *, allow_zero: bool) -> str:
    if not isinstance(data, bytes) or len(data) != SCALAR_SIZE:
        size = len(data) if isinstance(data, bytes | bytearray | memoryview) else "no"
        return f"must be {SCALAR_SIZE} bytes, got {size}"
    if not is_canonical_scalar(data):
        return "is not canonical (not below the group order)"
    if not allow_zero and is_zero_scalar(data):
        return "is zero"
    return ""


def _require_encoding(data: bytes, what: str) -> None:
    """Length and top-bit check for elements that may legitimately be the identity."""
    if not isinstance(data, bytes) or len(data) != ELEMENT_SIZE:
        raise RemoteProtocolError(f"{what} must be {ELEMENT_SIZE} bytes")
    if data[-1] & 0x80:
        raise RemoteProtocolError(f"{what} is not a canonical ristretto255 encoding")


def _malformed(element: object) -> bool:
    """Wrong type or length, or the top bit set.

    A canonical encoding is a field element below 2**255 - 19, so its top bit is
    clear; the libsodium that rbcl bundles (1.0.18) ignores that bit when
    decoding, which would give every element a second accepted encoding, so the
    bit is checked here before libsodium sees the element.
    """
    return not isinstance(element, bytes) or len(element) != ELEMENT_SIZE or element[-1] & 0x80 != 0


def _rejected(element: bytes, what: str) -> RemoteProtocolError:
    """The precise error for an element libsodium refused to multiply."""
    try:
        validate_element(element, what)
    except RemoteProtocolError as error:
        return error
    # A canonical non-identity element times a non-zero scalar below L is never
    # the identity, so libsodium refusing it means our own invariants broke.
    raise LocalProtocolError(f"libsodium refused a valid {what}")


# --- hashing into the group ------------------------------------------------------


def element_from_uniform(uniform: bytes) -> bytes:
    """RFC 9496 section 4.3.4: the element derived from 64 uniform bytes (may be the identity)."""
    if not isinstance(uniform, bytes) or len(uniform) != UNIFORM_SIZE:
        raise InputError(f"element derivation takes {UNIFORM_SIZE} bytes")
    out = _Buffer()
    _from_hash(out, uniform)
    return out.raw


def hash_to_group(msg: bytes, dst: bytes) -> bytes:
    """RFC 9380 ``expand_message_xmd`` (SHA-512, 64 bytes), then ristretto255's one-way map."""
    return hash_to_group_many([msg], dst)[0]


def hash_to_group_many(msgs: Iterable[bytes], dst: bytes, *, mapper: Mapper = map) -> list[bytes]:
    """:func:`hash_to_group` for many messages under one DST.

    The result may in principle be the identity (probability about 2**-252);
    callers that must refuse it (RFC 9497 ``Blind``/``Evaluate``) check.
    """
    expand = XmdSha512(dst).expand

    def work(chunk: Sequence[bytes], offset: int) -> list[bytes]:
        return _each_expanded(_from_hash, chunk, expand)

    return in_chunks(work, msgs if isinstance(msgs, Sequence) else list(msgs), mapper)


def hash_to_scalar(msg: bytes, dst: bytes) -> bytes:
    """``expand_message_xmd`` (SHA-512, 64 bytes) read little-endian and reduced mod L."""
    return hash_to_scalar_many([msg], dst)[0]


def hash_to_scalar_many(msgs: Iterable[bytes], dst: bytes) -> list[bytes]:
    """:func:`hash_to_scalar` for many messages under one DST (may yield zero; callers check)."""
    return _each_expanded(_reduce, msgs, XmdSha512(dst).expand)


def _each_expanded(
    function: Callable[..., object], msgs: Iterable[bytes], expand: Callable[[bytes], bytes]
) -> list[bytes]:
    """libsodium's ``function(out, expand(msg))`` for each message: one buffer, many calls."""
    out = _Buffer()
    result = []
    for msg in msgs:
        function(out, expand(msg))
        result.append(out.raw)
    return result


def random_scalar(rng: RandomBytes) -> bytes:
    """A uniform non-zero scalar: 64 bytes from ``rng`` reduced mod L (bias below 2**-250)."""
    out = _Buffer()
    for _ in range(_RANDOM_SCALAR_ATTEMPTS):
        data = rng(UNIFORM_SIZE)
        if not isinstance(data, bytes) or len(data) != UNIFORM_SIZE:
            raise LocalProtocolError(f"the random source must return {UNIFORM_SIZE} bytes")
        _reduce(out, data)
        scalar = out.raw
        if not is_zero_scalar(scalar):
            return scalar
    raise LocalProtocolError("the random source keeps returning multiples of the group order")


# --- scalar arithmetic (mod L) ---------------------------------------------------


def scalar_add(a: bytes, b: bytes) -> bytes:
    """(a + b) mod L."""
    return _scalar_binary(_scalar_add, a, b)


def scalar_sub(a: bytes, b: bytes) -> bytes:
    """(a - b) mod L."""
    return _scalar_binary(_scalar_sub, a, b)


def scalar_mul(a: bytes, b: bytes) -> bytes:
    """(a * b) mod L."""
    return _scalar_binary(_scalar_mul, a, b)


def scalar_negate(a: bytes) -> bytes:
    """(-a) mod L."""
    require_scalar(a, allow_zero=True)
    out = _Buffer()
    _scalar_negate(out, a)
    return out.raw


def scalar_invert(a: bytes) -> bytes:
    """a**-1 mod L; ``a`` must be non-zero."""
    require_scalar(a)
    out = _Buffer()
    _invert(out, a)
    return out.raw


def scalar_invert_many(scalars: Sequence[bytes]) -> list[bytes]:
    """Invert many non-zero scalars with one inversion (Montgomery's trick).

    One libsodium inversion costs about 40 microseconds and a multiplication
    about one, so a batch of n costs one inversion and 3(n - 1) multiplications.
    The sequence of operations does not depend on the values.
    """
    for index, scalar in enumerate(scalars):
        require_scalar(scalar, f"scalar {index}")
    if not scalars:
        return []
    out = _Buffer()
    prefixes = [scalars[0]]  # prefixes[i] = s_0 * ... * s_i
    for scalar in scalars[1:]:
        _scalar_mul(out, prefixes[-1], scalar)
        prefixes.append(out.raw)
    _invert(out, prefixes[-1])
    running = out.raw  # (s_0 * ... * s_i)**-1, walking i down
    inverses = [b""] * len(scalars)
    for index in range(len(scalars) - 1, 0, -1):
        _scalar_mul(out, running, prefixes[index - 1])
        inverses[index] = out.raw
        _scalar_mul(out, running, scalars[index])
        running = out.raw
    inverses[0] = running
    return inverses


def _scalar_binary(function: Callable[..., object], a: bytes, b: bytes) -> bytes:
    require_scalar(a, allow_zero=True)
    require_scalar(b, allow_zero=True)
    out = _Buffer()
    function(out, a, b)
    return out.raw


# --- element arithmetic ----------------------------------------------------------


def scalar_mult_base(scalar: bytes) -> bytes:
    """scalar * G for a non-zero canonical scalar."""
    require_scalar(scalar)
    out = _Buffer()
    if _mult_base(out, scalar) != 0:
        raise LocalProtocolError("libsodium refused a non-zero scalar")
    return out.raw


def scalar_mult(scalar: bytes, element: bytes) -> bytes:
    """scalar * element; the element must be valid and not the identity."""
    return scalar_mult_many(scalar, [element])[0]


def scalar_mult_many(
    scalar: bytes, elements: Iterable[bytes], what: str = "group element", *, mapper: Mapper = map
) -> list[bytes]:
    """One scalar times each element; an invalid element raises naming its index.

    libsodium decodes each element (rejecting non-canonical encodings) and
    refuses an identity product, which for a non-zero scalar below L means the
    element was the identity; so no separate validation pass is needed.
    """
    require_scalar(scalar)

    def work(chunk: Sequence[bytes], offset: int) -> list[bytes]:
        out = _Buffer()
        result = []
        for index, element in enumerate(chunk, offset):
            if _malformed(element) or _mult(out, scalar, element) != 0:
                raise _rejected(element, f"{what} {index}")
            result.append(out.raw)
        return result

    return in_chunks(work, elements if isinstance(elements, Sequence) else list(elements), mapper)


def scalar_mult_pairs(
    scalars: Sequence[bytes],
    elements: Sequence[bytes],
    what: str = "group element",
    *,
    mapper: Mapper = map,
) -> list[bytes]:
    """scalars[i] * elements[i] for each i; errors name the index."""
    if len(scalars) != len(elements):
        raise InputError(f"{len(scalars)} scalars for {len(elements)} elements")
    pairs = list(zip(scalars, elements, strict=True))

    def work(chunk: Sequence[tuple[bytes, bytes]], offset: int) -> list[bytes]:
        out = _Buffer()
        result = []
        for index, (scalar, element) in enumerate(chunk, offset):
            require_scalar(scalar, f"scalar {index}")
            if _malformed(element) or _mult(out, scalar, element) != 0:
                raise _rejected(element, f"{what} {index}")
            result.append(out.raw)
        return result

    return in_chunks(work, pairs, mapper)


def element_add(a: bytes, b: bytes) -> bytes:
    """a + b. Either input and the result may be the identity (all-zero encoding)."""
    return _element_binary(_point_add, a, b)


def element_sub(a: bytes, b: bytes) -> bytes:
    """a - b. Either input and the result may be the identity (all-zero encoding)."""
    return _element_binary(_point_sub, a, b)


def _element_binary(function: Callable[..., int], a: bytes, b: bytes) -> bytes:
    _require_encoding(a, "first group element")
    _require_encoding(b, "second group element")
    out = _Buffer()
    if function(out, a, b) != 0:
        raise RemoteProtocolError("group element is not a canonical ristretto255 encoding")
    return out.raw


def linear_combination(
    scalars: Sequence[bytes],
    elements: Sequence[bytes],
    what: str = "group element",
    *,
    mapper: Mapper = map,
    peer_elements: bool = False,
) -> bytes:
    """sum(scalars[i] * elements[i]); zero scalars, identity elements and results allowed.

    This is the total operation the batched DLEQ proof needs (its composites and
    commitments may, with negligible probability or by a peer's choice, involve
    the identity). Terms with a zero scalar or an identity element are skipped,
    so libsodium refusing a product means the element itself is invalid. With
    ``peer_elements`` every element must pass :func:`validate_element` (the
    identity is refused too); the multiplication decodes each element anyway,
    so this costs nothing over the plain sum and spares a separate pass.
    Multiples of the generator use libsodium's faster fixed-base routine. With a
    parallel ``mapper`` each chunk sums its own terms and the partial sums are
    added at the end.
    """
    if len(scalars) != len(elements):
        raise InputError(f"{len(scalars)} scalars for {len(elements)} elements")
    column = Column(elements, what, peer_elements)
    return weighted_sums(lambda start, end: scalars[start:end], [column], mapper=mapper)[0]


@dataclass(frozen=True)
class Column:
    """Elements to be summed under shared weights, how errors name them, and whether
    they came from a peer (see :func:`linear_combination`)."""

    elements: Sequence[bytes]
    what: str = "group element"
    peer_elements: bool = False


def weighted_sums(
    weights: Callable[[int, int], Sequence[bytes]],
    columns: Sequence[Column],
    *,
    mapper: Mapper = map,
) -> list[bytes]:
    """``sum(w[i] * column.elements[i])`` for each column, all under the same weights.

    ``weights(start, end)`` returns ``w[start:end]``; it runs inside each chunk's
    job, so weights that are expensive to derive (the DLEQ proof hashes one per
    element) are computed in parallel with other chunks' multiplications, and
    all columns share one pass over the mapper.
    """
    count = len(columns[0].elements)
    if any(len(column.elements) != count for column in columns):
        raise InputError("every column must hold as many elements as the first")

    def work(indices: Sequence[int], offset: int) -> list[list[bytes | None]]:
        chunk_weights = weights(offset, offset + len(indices))
        if len(chunk_weights) != len(indices):
            raise InputError(f"{len(chunk_weights)} scalars for {len(indices)} elements")
        return [
            [
                _chunk_sum(
                    chunk_weights, column.elements[offset : offset + len(indices)], column, offset
                )
                for column in columns
            ]
        ]

    partial_sums = in_chunks(work, range(count), mapper)
    totals = []
    for index in range(len(columns)):
        total = IDENTITY
        for part in partial_sums:
            partial = part[index]
            if partial is not None:
                total = partial if total == IDENTITY else element_add(total, partial)
        totals.append(total)
    return totals


def _chunk_sum(
    scalars: Sequence[bytes], elements: Sequence[bytes], column: Column, offset: int
) -> bytes | None:
    """One chunk's share of a weighted sum; None when every term was skipped."""
    out = _Buffer()
    total: bytes | None = None
    for index, (scalar, element) in enumerate(zip(scalars, elements, strict=True), offset):
        require_scalar(scalar, f"scalar {index}", allow_zero=True)
        _require_encoding(element, f"{column.what} {index}")
        if column.peer_elements and (element == IDENTITY or is_zero_scalar(scalar)):
            validate_element(element, f"{column.what} {index}")
        if is_zero_scalar(scalar) or element == IDENTITY:
            continue
        rc = _mult_base(out, scalar) if element == GENERATOR else _mult(out, scalar, element)
        if rc != 0:
            raise _rejected(element, f"{column.what} {index}")
        if total is None:
            total = out.raw
        else:
            _point_add(out, total, out.raw)
            total = out.raw
    return total
