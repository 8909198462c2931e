"""RFC 9380 ``expand_message_xmd`` with SHA-512, for the one length RFC 9497 needs.

The ristretto255-SHA512 suite hashes to the group and to scalars through 64
uniform bytes, which is exactly one SHA-512 output (``ell = 1``), so this module
implements that case only. The first
SHA-512 block of every call is the 128-byte zero pad, so its state is computed
once; a caller that hashes many messages under one DST builds one
:class:`XmdSha512` and reuses its suffix.
"""

from __future__ import annotations

import hashlib

from hexpsi.protocol.errors import InputError

UNIFORM_SIZE = 64
"""Output length: 64 bytes, the input of ristretto255's one-way map and of scalar reduction."""

MAX_DST_SIZE = 255
_BLOCK_SIZE = 128  # SHA-512's input block, r_in_bytes in RFC 9380
_ZERO_PAD_STATE = hashlib.sha512(bytes(_BLOCK_SIZE))
_LENGTH_AND_ZERO = (
    UNIFORM_SIZE.to_bytes(2, "big") + b"\x00"
)  # I2OSP(len_in_bytes, 2) || I2OSP(0, 1)


class XmdSha512:
    """``expand_message_xmd(msg, dst, 64)`` with SHA-512 for one fixed DST."""

    __slots__ = ("_b0_suffix", "_b1_suffix")

    def __init__(self, dst: bytes) -> None:
        if not isinstance(dst, bytes) or not dst:
            raise InputError("a hash domain separation tag must be non-empty bytes")
        if len(dst) > MAX_DST_SIZE:
            # RFC 9380 would hash an oversized DST; every tag in hexpsi is short, so
            # an oversized one is a bug, not something to accommodate.
            raise InputError(f"a hash domain separation tag is at most {MAX_DST_SIZE} bytes")
        dst_prime = dst + bytes((len(dst),))
        self._b0_suffix = _LENGTH_AND_ZERO + dst_prime
        self._b1_suffix = b"\x01" + dst_prime

    def expand(self, msg: bytes) -> bytes:
        """The 64 uniform bytes ``b_1`` for ``msg``."""
        state = _ZERO_PAD_STATE.copy()
        state.update(msg)
        state.update(self._b0_suffix)
        return hashlib.sha512(state.digest() + self._b1_suffix).digest()


def expand_message_xmd_sha512(msg: bytes, dst: bytes) -> bytes:
    """RFC 9380 section 5.3.1 with H = SHA-512 and ``len_in_bytes = 64``."""
    return XmdSha512(dst).expand(msg)
