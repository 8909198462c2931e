"""A small canonical binary encoding for everything that is hashed or signed.

Protobuf serialisation is not canonical, so descriptors, receipts, transcripts
and evidence are encoded here instead: fixed-width big-endian integers and
length-prefixed byte strings, in a fixed field order. One value has exactly one
encoding, and a reader rejects trailing bytes, so a signature over the bytes is
a signature over the value.
"""

from __future__ import annotations

import hashlib
import math
import struct

from hexpsi.protocol.errors import RemoteProtocolError

_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")


class Writer:
    """Append-only builder of a canonical encoding."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, value: int) -> Writer:
        self._parts.append(value.to_bytes(1, "big"))
        return self

    def u16(self, value: int) -> Writer:
        self._parts.append(value.to_bytes(2, "big"))
        return self

    def u32(self, value: int) -> Writer:
        self._parts.append(value.to_bytes(4, "big"))
        return self

    def u64(self, value: int) -> Writer:
        self._parts.append(_U64.pack(value))
        return self

    def f64(self, value: float) -> Writer:
        if not math.isfinite(value):
            raise ValueError(f"cannot encode non-finite float {value}")
        self._parts.append(_F64.pack(value))
        return self

    def fixed(self, data: bytes, size: int) -> Writer:
        if len(data) != size:
            raise ValueError(f"expected {size} bytes, got {len(data)}")
        self._parts.append(bytes(data))
        return self

    def blob(self, data: bytes) -> Writer:
        """Length-prefixed (u32) bytes."""
        self.u32(len(data))
        self._parts.append(bytes(data))
        return self

    def text(self, value: str) -> Writer:
        return self.blob(value.encode("utf-8"))

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    """Strict reader for :class:`Writer` output; any malformation is the peer's fault."""

    def __init__(self, data: bytes, *, what: str) -> None:
        self._data = memoryview(bytes(data))
        self._pos = 0
        self._what = what

    def _take(self, size: int) -> bytes:
        end = self._pos + size
        if size < 0 or end > len(self._data):
            raise RemoteProtocolError(f"{self._what} is truncated")
        chunk = bytes(self._data[self._pos : end])
        self._pos = end
        return chunk

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self._take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def u64(self) -> int:
        return int(_U64.unpack(self._take(8))[0])

    def f64(self) -> float:
        value = float(_F64.unpack(self._take(8))[0])
        if not math.isfinite(value):
            raise RemoteProtocolError(f"{self._what} holds a non-finite number")
        return value

    def fixed(self, size: int) -> bytes:
        return self._take(size)

    def blob(self, *, max_size: int = 1 << 30) -> bytes:
        size = self.u32()
        if size > max_size:
            raise RemoteProtocolError(
                f"{self._what} holds a field of {size} bytes (max {max_size})"
            )
        return self._take(size)

    def text(self, *, max_size: int = 4096) -> str:
        try:
            return self.blob(max_size=max_size).decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError(f"{self._what} holds text that is not UTF-8") from None

    def expect(self, literal: bytes) -> None:
        if self._take(len(literal)) != literal:
            raise RemoteProtocolError(f"{self._what} does not start with {literal!r}")

    def end(self) -> None:
        if self._pos != len(self._data):
            raise RemoteProtocolError(f"{self._what} has {len(self._data) - self._pos} extra bytes")


def tagged_hash(label: bytes, *parts: bytes) -> bytes:
    """SHA-512 of a versioned label and length-prefixed parts, cut to 32 bytes.

    Every hash hexpsi computes goes through a label like ``b"hexpsi/v1/receipt"``
    so a value hashed for one purpose can never be replayed as another.
    """
    digest = hashlib.sha512()
    digest.update(len(label).to_bytes(2, "big") + label)
    for part in parts:
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return digest.digest()[:32]
