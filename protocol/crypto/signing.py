"""Ed25519 signature checks, one way for the whole protocol.

PyNaCl raises ``BadSignatureError`` for a wrong signature but ``ValueError`` or
``TypeError`` for one of the wrong length or type; a peer controls all three,
so every check catches all three and reports one :class:`VerificationError`
(no error oracle, and no stray exception type reaching a caller).
"""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from hexpsi.protocol.errors import VerificationError


def signature_is_valid(key: VerifyKey, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``key``'s Ed25519 signature over ``message``."""
    try:
        key.verify(bytes(message), bytes(signature))
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def verify_signature(key: VerifyKey, message: bytes, signature: bytes, failure: str) -> None:
    """Raise :class:`VerificationError` with ``failure`` unless the signature verifies."""
    if not signature_is_valid(key, message, signature):
        raise VerificationError(failure)
