"""Session-wide setup: the group's libsodium loaded once, rbcl's temporary file removed."""

from __future__ import annotations

from hexpsi.server import sodium

sodium.load()
