"""Loading libsodium into this process, and removing the file rbcl leaves behind.

``rbcl`` (libsodium with its ristretto255 functions) writes its bundled
library to a fresh temporary file when a process imports it and never deletes
it: about 2.7 MB left in ``/tmp`` by every process, spawned workers included.
Once the library is mapped the file is no longer needed (on Linux a mapping
stays valid after its file is unlinked). ``hexpsi.protocol`` never touches the
disk, so the deletion happens here, explicitly: the CLI calls :func:`load`
before any command that does group work, and process pools run it in every
worker they start.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path


def load() -> Path | None:
    """Load the group's libsodium; delete rbcl's temporary copy. Returns the path removed.

    Safe to call any number of times: later calls find nothing left to delete.
    """
    importlib.import_module("hexpsi.protocol.crypto.group")
    path = Path(importlib.import_module("rbcl._sodium").lib_path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
        return path
    return None
