"""The names of a node's key files, shared by the node directory and its key rotations.

``signing.key`` (Ed25519 seed), ``tls.key`` and ``tls.crt`` (the TLS identity)
live at the top of a node directory (``node.directory``); a rotation keeps the
ones it replaced under the same names in ``rotated/<n>/`` (``node.rotations``).
"""

from __future__ import annotations

SIGNING_KEY_FILE = "signing.key"
TLS_KEY_FILE = "tls.key"
TLS_CERT_FILE = "tls.crt"
KEY_FILES = (SIGNING_KEY_FILE, TLS_KEY_FILE, TLS_CERT_FILE)
SEED_SIZE = 32
"""An Ed25519 seed, as ``signing.key`` holds it."""
