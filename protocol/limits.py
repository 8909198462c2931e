"""Sizes and limits every part of the protocol shares, defined once.

Sizes of identifiers, digests and signatures are part of the v1 wire and
signature formats (``tests/vectors/hexpsi-v1-formats.json`` freezes them).
"""

from __future__ import annotations

SESSION_ID_SIZE = 16
"""A check's or mutual check's session id, fresh random bytes per session."""
EPOCH_ID_SIZE = 16
"""An epoch's random id; its keys are derived from the master secret and this id."""
DIGEST_SIZE = 32
"""Every hash hexpsi sends or signs: transcript hashes, descriptor digests, Merkle nodes,
audit entry hashes, commitments."""
SIGNATURE_SIZE = 64
"""An Ed25519 signature."""
DEFAULT_MAX_COVER_CELLS = 5_000_000
"""The largest cover a command builds unless told otherwise: about 500,000 km² at
resolution 9, a country, not a typo'd ``--res 15``."""
CLOCK_SKEW_SECONDS = 300.0
"""The default for how far another node's clock may be from ours before its dated
statements are refused: descriptors dated in the future, receipts dated either way
of the proposer's clock, mutual statements dated either way of the responder's. A
node sets its own (``[limits] clock_skew_seconds``); the protocol takes it as an
argument next to the time it judges by."""
