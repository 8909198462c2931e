"""The snapshot's set encoding: a range-partitioned Golomb-coded set with Merkle openings.

A snapshot is a set of distinct λ-bit integers (truncated OPRF outputs plus
random padding). The value space is cut into ``block_count`` (K) equal ranges;
block ``i`` holds exactly the values ``v`` with ``(v * K) >> λ == i``, i.e. those
in ``[ceil(i * 2**λ / K), ceil((i + 1) * 2**λ / K))``. Each block stands alone:

    Elias-gamma(c + 1)                      c = number of values in the block
    Golomb(v[0] - start), Golomb(v[j] - v[j-1] - 1) for j = 1..c-1
    zero bits up to a whole byte

with Golomb codes written as the quotient in unary (zeros ended by a one) and
the remainder in truncated binary. The encoding is canonical: :func:`decode_block`
accepts exactly the bytes :func:`encode_blocks` produces, and nothing else.

Ranges rather than fixed counts per block, because then one block settles any
value: the block whose range contains it either lists it or proves it absent,
so an :class:`Opening` is a single block with its Merkle path and needs no
neighbour and no assumption that the rest of the snapshot is in order.

Measured with 1M random 60-bit values (server/bench/setcode.py):

- The Golomb parameter is the optimum for geometric gaps,
  ``M = ceil(log(2 - p) / -log(1 - p))`` with ``p = count / 2**λ``; it spent
  0.085 bits/value less than the Rice parameter ``2**round(log2(mean gap · ln 2))``
  at the same speed (one decoder serves any M; a power of two is Rice).
- About 64 values per block (``K = ceil(count / 64)``): an opening, and a
  lookup without the sorted value index, decodes part of one block, so 1,000
  such lookups take ~0.05 s of pure Python and an opening is ~0.6 KB, while
  the per-block cost (gamma count, byte padding) stays near 0.25 bits/value:
  5.220 bytes per value at n = 1M, λ = 60 (1.009x OpenMined PSI's Golomb-coded
  set at the same false-positive target).
  Measured on the same 1M values: 32 values a block cost 5.242 bytes/value for
  0.039 s of lookups, 64 cost 5.220 for 0.054 s, 128 cost 5.209 for 0.084 s.

Responder: ``encode_blocks`` streams the blocks; feed each to a
:class:`hexpsi.protocol.snapshot.merkle.MerkleBuilder` and publish ``snapshot_digest(params,
builder.root())``. Proposer: :class:`SnapshotReader` checks blocks as they
arrive (resumable at ``next_index``), ``finish`` checks the digest, then
``contains`` answers from the sorted values kept while checking (binary search;
block decoding only for λ > 64 or a reader restored without them) and ``open``
from the caller's block store. Anyone holding
only the digest and the parameters checks an opening with :func:`verify_opening`.
"""

from __future__ import annotations

import bisect
import hmac
import math
import struct
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from hexpsi.protocol.errors import (
    InputError,
    LocalProtocolError,
    RemoteProtocolError,
    VerificationError,
)
from hexpsi.protocol.limits import DIGEST_SIZE
from hexpsi.protocol.snapshot.merkle import (
    MAX_LEAVES,
    MerkleBuilder,
    MerkleTree,
    commitment,
    leaf_hash,
    root_from_proof,
)

DEFAULT_BLOCK_SIZE = 64
"""Mean values per block that :meth:`GcsParams.choose` aims at."""
MAX_BITS = 128
"""λ above 128 would buy a false-positive rate no deployment needs."""

PARAMS_VERSION = 1
_PARAMS_FORMAT = struct.Struct(">BBQI16s")
OPENING_VERSION = 1
_MAX_PATH = 32
"""Longest audit path: trees hold at most 2**32 leaves."""
INDEX_MAX_BITS = 64
"""Snapshots of λ ≤ 64 bits keep a sorted array of their values for lookups."""


def optimal_golomb(count: int, bits: int) -> int:
    """The Golomb parameter minimising expected code length for ``count`` random λ-bit values."""
    if count == 0:
        return 1
    density = count / (1 << bits)
    if density >= 0.5:
        return 1
    best = math.ceil(math.log(2.0 - density) / -math.log1p(-density))
    return max(1, min(best, (1 << bits) - 1))


def _gamma_bits(n: int) -> int:
    """Length of the Elias-gamma code of ``n >= 1``."""
    return 2 * n.bit_length() - 1


@dataclass(frozen=True, slots=True)
class GcsParams:
    """What a reader needs to decode a snapshot; its canonical bytes go into the descriptor.

    ``bits`` is λ, ``count`` the number of (padded) values, ``block_count`` the
    number K of equal value ranges (one block each), ``golomb`` the parameter M.
    """

    bits: int
    count: int
    block_count: int
    golomb: int

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= MAX_BITS:
            raise InputError(f"λ must lie in 1..{MAX_BITS}, got {self.bits}")
        if not 0 <= self.count <= min(1 << self.bits, (1 << 64) - 1):
            raise InputError(f"{self.count} distinct values cannot be {self.bits} bits long")
        if not 1 <= self.block_count <= min(1 << self.bits, MAX_LEAVES):
            raise InputError(
                f"block count must lie in 1..{min(1 << self.bits, MAX_LEAVES)}, "
                f"got {self.block_count}"
            )
        if not 1 <= self.golomb < max(2, 1 << self.bits):
            raise InputError(f"Golomb parameter {self.golomb} is outside 1..2**λ-1")

    @classmethod
    def choose(cls, *, count: int, bits: int, block_size: int = DEFAULT_BLOCK_SIZE) -> GcsParams:
        """Parameters for ``count`` values of ``bits`` bits: about ``block_size`` values a
        block and the optimal Golomb parameter."""
        if not 1 <= bits <= MAX_BITS:
            raise InputError(f"λ must lie in 1..{MAX_BITS}, got {bits}")
        if block_size < 1:
            raise InputError(f"block size must be positive, got {block_size}")
        blocks = max(1, -(-count // block_size))
        return cls(bits, count, blocks, optimal_golomb(count, bits))

    def block_of(self, value: int) -> int:
        """The block whose range holds ``value``."""
        if not 0 <= value < 1 << self.bits:
            raise InputError(f"value does not fit in {self.bits} bits")
        return (value * self.block_count) >> self.bits

    def block_range(self, index: int) -> tuple[int, int]:
        """``[start, end)`` of the values block ``index`` holds."""
        if not 0 <= index < self.block_count:
            raise InputError(f"block {index} is outside 0..{self.block_count - 1}")
        return self._start(index), self._start(index + 1)

    def _start(self, index: int) -> int:
        return -((-index << self.bits) // self.block_count)

    def block_value_limit(self) -> int:
        """Most values a reader accepts in one block: twice the mean plus 64.

        Blocks of random values hold Poisson(mean) values; exceeding this has
        probability below 1e-60 for any mean. A responder that piles values into
        one block could otherwise make every lookup decode the whole snapshot.
        """
        return 2 * -(-self.count // self.block_count) + 64

    def max_block_bytes(self, index: int, *, max_values: int | None = None) -> int:
        """An upper bound on block ``index``'s size, to refuse oversized blocks unread.

        Per value one terminating bit and at most ``ceil(log2 M)`` remainder bits;
        unary quotients sum to at most ``range // M`` because the gaps sum below
        the range; plus the gamma-coded count and byte padding.
        """
        start, end = self.block_range(index)
        values = min(self.count, end - start)
        if max_values is not None:
            values = min(values, max_values)
        width = (self.golomb - 1).bit_length()
        bits = _gamma_bits(values + 1) + values * (1 + width) + (end - start) // self.golomb
        return -(-bits // 8)

    def max_snapshot_bytes(self) -> int:
        """An upper bound on all blocks together (the gaps of the whole set sum below
        ``2**λ``). A proposer refuses parameters whose bound exceeds what it is willing
        to download: a tiny M would allow enormous unary runs."""
        width = (self.golomb - 1).bit_length()
        per_block = _gamma_bits(self.count + 1) + 7
        bits = self.block_count * per_block + self.count * (1 + width)
        return (bits + ((1 << self.bits) - self.count) // self.golomb) // 8

    def encode(self) -> bytes:
        """Canonical bytes: version, λ, count, block count, M (fixed width, big-endian)."""
        return _PARAMS_FORMAT.pack(
            PARAMS_VERSION, self.bits, self.count, self.block_count, self.golomb.to_bytes(16, "big")
        )

    @classmethod
    def decode(cls, data: bytes) -> GcsParams:
        """Parse parameters a peer sent; anything but canonical bytes is refused."""
        if len(data) != _PARAMS_FORMAT.size:
            raise RemoteProtocolError(f"set parameters must be {_PARAMS_FORMAT.size} bytes")
        version, bits, count, block_count, golomb = _PARAMS_FORMAT.unpack(data)
        if version != PARAMS_VERSION:
            raise RemoteProtocolError(f"unknown set parameter version {version}")
        try:
            return cls(bits, count, block_count, int.from_bytes(golomb, "big"))
        except InputError as error:
            raise RemoteProtocolError(f"bad set parameters: {error.message}") from None


def snapshot_digest(params: GcsParams, tree_root: bytes) -> bytes:
    """The commitment published in the descriptor: the blocks' Merkle root bound to ``params``."""
    return commitment(params.encode(), tree_root)


def encode_blocks(sorted_values: Iterable[int], params: GcsParams) -> Iterator[bytes]:
    """Encode strictly increasing λ-bit values into all K blocks, holding one block at a time.

    Duplicates are refused rather than merged (merge them before choosing the
    count, e.g. with :func:`hexpsi.protocol.padding.pad_values`), and the number of values
    must equal ``params.count``; both are caller errors (InputError), raised at
    the offending value or, for a wrong count, when the last block is due.
    """
    return encode_block_range(sorted_values, params, 0, params.block_count, count=params.count)


def encode_block_range(
    sorted_values: Iterable[int],
    params: GcsParams,
    first: int,
    end: int,
    *,
    count: int | None = None,
) -> Iterator[bytes]:
    """Blocks ``first .. end - 1`` from exactly the values whose blocks lie in that range.

    Blocks stand alone, so ranges encoded separately (in parallel, say) and put
    back in order are byte for byte what :func:`encode_blocks` gives for the
    whole set. The values must be strictly increasing and inside the range;
    ``count``, when given, is the number of values the range must hold.
    """
    if not 0 <= first < end <= params.block_count:
        raise InputError(f"block range {first}..{end} is outside 0..{params.block_count}")
    bits, blocks = params.bits, params.block_count
    low, limit = params.block_range(first)[0], params.block_range(end - 1)[1]
    current, boundary = first, params.block_range(first)[1]
    block: list[int] = []
    seen = 0
    previous = low - 1
    for value in sorted_values:
        if value >= boundary:
            if value >= limit:
                if end == blocks:
                    raise InputError(f"value {value} does not fit in {bits} bits")
                raise InputError(f"value {value} lies past block {end - 1}")
            index = (value * blocks) >> bits
            while current < index:
                seen += len(block)
                yield _encode_block(block, params, current)
                block = []
                current += 1
            boundary = params.block_range(current)[1]
        elif value <= previous:
            if previous < low:
                raise InputError(f"value {value} lies before block {first}")
            raise InputError("values must be strictly increasing (no duplicates)")
        block.append(value)
        previous = value
    while current < end:
        seen += len(block)
        if current == end - 1 and count is not None and seen != count:
            raise InputError(f"got {seen} values, the parameters announce {count}")
        yield _encode_block(block, params, current)
        block = []
        current += 1


_PIECE = 32
"""Gaps folded into one small int before it joins the block: keeps every shift short."""


def _encode_block(values: Sequence[int], params: GcsParams, index: int) -> bytes:
    golomb = params.golomb
    width = (golomb - 1).bit_length()
    cutoff = (1 << width) - golomb
    pieces: list[tuple[int, int]] = []
    acc = len(values) + 1  # Elias gamma: the number in 2*bitlen-1 bits, leading zeros implied
    acc_bits, pending = _gamma_bits(acc), 0
    previous = params.block_range(index)[0] - 1
    for value in values:
        quotient, rest = divmod(value - previous - 1, golomb)
        previous = value
        if rest < cutoff:
            acc = (((acc << (quotient + 1)) | 1) << (width - 1)) | rest
            acc_bits += quotient + width
        else:
            acc = (((acc << (quotient + 1)) | 1) << width) | (rest + cutoff)
            acc_bits += quotient + 1 + width
        pending += 1
        if pending == _PIECE:
            pieces.append((acc, acc_bits))
            acc, acc_bits, pending = 0, 0, 0
    pieces.append((acc, acc_bits))
    joined, total = 0, 0
    for piece, piece_bits in pieces:
        joined = (joined << piece_bits) | piece
        total += piece_bits
    padding = -total % 8
    return (joined << padding).to_bytes((total + padding) // 8, "big")


def decode_block(data: bytes, params: GcsParams, index: int) -> list[int]:
    """The values of block ``index``; RemoteProtocolError unless ``data`` is exactly that block."""
    if len(data) > params.max_block_bytes(index):
        raise RemoteProtocolError(f"snapshot block {index} is larger than its parameters allow")
    return list(_iter_values(data, params, index))


def _iter_values(
    data: bytes, params: GcsParams, index: int, max_values: int | None = None
) -> Iterator[int]:
    """Yield a block's values in order; once exhausted, also check the block ends cleanly.

    The bits are handled as a '0'/'1' string so that each unary part is one
    ``str.index`` and each remainder one ``int(..., 2)``; a trailing '0' lets the
    remainder read ``width`` bits even when its code was one bit shorter.
    """
    start, end = params.block_range(index)
    golomb = params.golomb
    total = 8 * len(data)
    text = format(int.from_bytes(data, "big"), f"0{total}b") + "0"
    find = text.index
    width = (golomb - 1).bit_length()
    cutoff = (1 << width) - golomb
    most = min(end - start, params.count, params.count if max_values is None else max_values)
    try:
        one = find("1")
        pos = 2 * one + 1
        count = int(text[one:pos], 2) - 1
        if pos > total:
            raise ValueError
        if count > most:
            raise RemoteProtocolError(f"snapshot block {index} announces {count} values, too many")
        value = start - 1
        if width == 0:
            for _ in range(count):
                one = find("1", pos)
                value += 1 + one - pos
                pos = one + 1
                yield value
        else:
            for _ in range(count):
                one = find("1", pos)
                quotient = one - pos
                pos = one + 1 + width
                rest = int(text[one + 1 : pos], 2)
                if rest >> 1 < cutoff:
                    rest >>= 1
                    pos -= 1
                else:
                    rest -= cutoff
                value += 1 + quotient * golomb + rest
                yield value
    except ValueError:
        raise RemoteProtocolError(f"snapshot block {index} is truncated") from None
    if pos > total:
        raise RemoteProtocolError(f"snapshot block {index} is truncated")
    if total - pos >= 8 or "1" in text[pos:total]:
        raise RemoteProtocolError(f"snapshot block {index} has trailing data")
    if value >= end:
        raise RemoteProtocolError(f"snapshot block {index} holds a value outside its range")


@dataclass(frozen=True, slots=True)
class Opening:
    """Proof of whether a value is in a committed snapshot: the one block whose range
    holds the value, with its Merkle audit path."""

    index: int
    block: bytes
    path: tuple[bytes, ...]

    def encode(self) -> bytes:
        """Canonical bytes: version, u32 index, u32 block length, the block,
        u8 path length, the path hashes."""
        header = bytes([OPENING_VERSION]) + self.index.to_bytes(4, "big")
        body = len(self.block).to_bytes(4, "big") + self.block
        return header + body + len(self.path).to_bytes(1, "big") + b"".join(self.path)

    @classmethod
    def decode(cls, data: bytes) -> Opening:
        """Parse an opening; malformed bytes are a failed proof (VerificationError)."""
        if len(data) < 10 or data[0] != OPENING_VERSION:
            raise VerificationError("opening does not verify")
        index = int.from_bytes(data[1:5], "big")
        length = int.from_bytes(data[5:9], "big")
        tail = 9 + length
        if tail >= len(data) or data[tail] > _MAX_PATH:
            raise VerificationError("opening does not verify")
        depth = data[tail]
        if len(data) != tail + 1 + depth * DIGEST_SIZE:
            raise VerificationError("opening does not verify")
        hashes = data[tail + 1 :]
        path = tuple(hashes[i : i + DIGEST_SIZE] for i in range(0, len(hashes), DIGEST_SIZE))
        return cls(index, data[9:tail], path)


def verify_opening(root: bytes, params: GcsParams, value: int, opening: Opening) -> bool:
    """Whether ``value`` is in the snapshot committed by ``root``, as ``opening`` proves.

    The returned bool is the proven fact; an opening that proves nothing (another
    block, altered bytes, bad path, wrong root or parameters) raises
    VerificationError.
    """
    if opening.index != params.block_of(value):
        raise VerificationError("opening does not verify")
    leaf = leaf_hash(opening.index, opening.block)
    tree = root_from_proof(opening.index, leaf, opening.path, params.block_count)
    if not hmac.compare_digest(snapshot_digest(params, tree), root):
        raise VerificationError("opening does not verify")
    try:
        values = decode_block(opening.block, params, opening.index)
    except RemoteProtocolError:
        raise VerificationError("opening does not verify") from None
    position = bisect.bisect_left(values, value)
    return position < len(values) and values[position] == value


class SnapshotReader:
    """A proposer's view of a snapshot: built while blocks arrive, queried once verified.

    It keeps the leaf hashes and, for λ ≤ 64, a sorted array of the values it
    decoded while checking the blocks (8 bytes a value), so a lookup is one
    binary search instead of decoding a block in Python (about 0.1 ms a lookup,
    which a 1,000-token check would pay 1,000 times). The block bytes live
    wherever the caller stores them and come back through ``get_block(i)`` for
    openings, and for lookups when there is no index; blocks read back are
    checked against their leaf hash, so a damaged store raises VerificationError
    rather than answering wrongly.
    """

    def __init__(self, params: GcsParams, get_block: Callable[[int], bytes]) -> None:
        self.params = params
        self._get_block = get_block
        self._builder = MerkleBuilder()
        self._leaves: list[bytes] = []
        self._values_seen = 0
        self._index: array[int] | None = array("Q") if params.bits <= INDEX_MAX_BITS else None
        self._verified = False
        self._digest = b""
        self._tree: MerkleTree | None = None

    @property
    def next_index(self) -> int:
        """The block to ask for next: where a resumed download starts."""
        return len(self._leaves)

    @property
    def complete(self) -> bool:
        return self.next_index == self.params.block_count

    @property
    def verified(self) -> bool:
        return self._verified

    @property
    def leaf_hashes(self) -> tuple[bytes, ...]:
        return tuple(self._leaves)

    def add_block(self, index: int, block: bytes) -> None:
        """Check block ``index`` (it must be ``next_index``) and fold it into the commitment."""
        if self._verified:
            raise LocalProtocolError("the snapshot is already verified; start a new reader")
        if index != self.next_index:
            raise RemoteProtocolError(
                f"block {index} arrived where block {self.next_index} was due"
            )
        if index >= self.params.block_count:
            raise RemoteProtocolError(
                f"block {index} is past the {self.params.block_count} announced"
            )
        limit = self.params.block_value_limit()
        if len(block) > self.params.max_block_bytes(index, max_values=limit):
            raise RemoteProtocolError(f"snapshot block {index} is larger than its parameters allow")
        values = list(_iter_values(block, self.params, index, limit))
        self._values_seen += len(values)
        if self._index is not None:
            self._index.extend(values)
        self._leaves.append(self._builder.add_block(block))

    @classmethod
    def restore(
        cls,
        params: GcsParams,
        get_block: Callable[[int], bytes],
        leaves: Sequence[bytes],
        expected_root: bytes,
        index: array[int] | None = None,
    ) -> SnapshotReader:
        """A verified reader from the leaf hashes kept after an earlier full verification.

        The leaves must hash to the committed digest; every block read back is then
        checked against its leaf, so restoring costs one Merkle root instead of
        decoding every block again (the per-block checks of :meth:`add_block`
        already held when these leaves were first accepted). ``index`` is the
        :attr:`index` kept from that verification; the caller vouches that it is
        intact (the snapshot cache stores a SHA-256 with it). Without it, lookups
        decode blocks.
        """
        if len(leaves) != params.block_count or any(len(leaf) != DIGEST_SIZE for leaf in leaves):
            raise VerificationError("stored leaf hashes do not fit the snapshot's parameters")
        if index is not None and (
            params.bits > INDEX_MAX_BITS or index.typecode != "Q" or len(index) != params.count
        ):
            raise VerificationError("stored value index does not fit the snapshot's parameters")
        reader = cls(params, get_block)
        reader._tree = MerkleTree(list(leaves))
        if not hmac.compare_digest(snapshot_digest(params, reader._tree.root()), expected_root):
            raise VerificationError("stored leaf hashes do not match the committed digest")
        reader._leaves = list(leaves)
        reader._values_seen = params.count
        reader._index = index
        reader._verified = True
        reader._digest = bytes(expected_root)
        return reader

    @property
    def index(self) -> array[int] | None:
        """The verified snapshot's values in ascending order (u64), if it keeps them."""
        return self._index if self._verified else None

    def add_chunk(self, first_index: int, blocks: Iterable[bytes]) -> None:
        """Add a streamed chunk: whole consecutive blocks starting at ``first_index``."""
        for offset, block in enumerate(blocks):
            self.add_block(first_index + offset, block)

    def finish(self, expected_root: bytes) -> None:
        """Check the whole snapshot against the digest from the signed descriptor.

        Finishing a verified reader again only compares the digest it was verified with.
        """
        if self._verified:
            if not hmac.compare_digest(self._digest, expected_root):
                raise VerificationError("snapshot does not match its committed digest")
            return
        if not self.complete:
            raise RemoteProtocolError(
                f"snapshot ended after {self.next_index} of {self.params.block_count} blocks"
            )
        if self._values_seen != self.params.count:
            raise RemoteProtocolError(
                f"snapshot holds {self._values_seen} values, its parameters say {self.params.count}"
            )
        digest = snapshot_digest(self.params, self._builder.root())
        if not hmac.compare_digest(digest, expected_root):
            raise VerificationError("snapshot does not match its committed digest")
        self._verified = True
        self._digest = digest

    def contains(self, value: int) -> bool:
        """Membership: a binary search of the index, or else decoding the one block
        whose range holds the value."""
        index = self._locate(value)
        if self._index is not None:
            position = bisect.bisect_left(self._index, value)
            return position < len(self._index) and self._index[position] == value
        for member in _iter_values(self._load(index), self.params, index):
            if member >= value:
                return member == value
        return False

    def open(self, value: int) -> Opening:
        """A self-contained proof of whether ``value`` is in the snapshot."""
        index = self._locate(value)
        if self._tree is None:
            self._tree = MerkleTree(self._leaves)
        return Opening(index, self._load(index), self._tree.inclusion_proof(index))

    def _locate(self, value: int) -> int:
        if not self._verified:
            raise LocalProtocolError("the snapshot is not verified yet; call finish() first")
        return self.params.block_of(value)

    def _load(self, index: int) -> bytes:
        block = self._get_block(index)
        if not hmac.compare_digest(leaf_hash(index, block), self._leaves[index]):
            raise VerificationError(f"stored snapshot block {index} no longer matches the digest")
        return block
