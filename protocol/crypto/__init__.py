"""The group and what is built on it.

ristretto255 through libsodium, RFC 9497 OPRF/VOPRF with DLEQ proofs, per-epoch keys,
and the one way hexpsi checks a signature.
"""
