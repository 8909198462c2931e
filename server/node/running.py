"""Which servers run for a node, and what each has applied: locks and records in ``run/``.

A ``hexpsi serve`` claims its listen address: it holds an exclusive lock on
``run/<address>.lock`` for as long as it runs (the kernel drops it when the
process ends, however it ends) and keeps ``run/<address>.json`` up to date
with its pid, address, start time and the peer set it has applied.
A second server for the same node and address is refused; servers on other
addresses (replicas) may run side by side. A command that changes the node
(``peer add``, ``peer update``, ``peer remove``) reads the records to tell the
operator whether a running server picked the change up.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from hexpsi.protocol.errors import InputError
from hexpsi.server.node.files import atomic_write, ensure_private_dir

RUN_DIR = "run"
APPLY_WAIT_SECONDS = 5.0
"""How long a peer command waits for running servers (they look once a second)."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _key(listen: str) -> str:
    """A file name for a listen address: ``127.0.0.1:7443`` becomes ``127.0.0.1_7443``."""
    return _UNSAFE.sub("_", listen)


def peers_digest(signature: object) -> str:
    """A short name for a peer set's on-disk state (:meth:`PeerBook.signature`)."""
    return hashlib.sha256(repr(signature).encode()).hexdigest()[:16]


@dataclass
class ServerRecord:
    """What a running server says about itself."""

    pid: int
    listen: str
    started: float
    peers: str = ""
    """The digest of the peer files it has applied."""


class Claim:
    """A running server's hold on its listen address; released when closed or on exit."""

    def __init__(self, directory: Path, listen: str, lock: IO[bytes], record: ServerRecord):
        self.directory = directory
        self.listen = listen
        self._lock = lock
        self.record = record
        self.write()

    @property
    def record_path(self) -> Path:
        return self.directory / RUN_DIR / f"{_key(self.listen)}.json"

    def write(self) -> None:
        atomic_write(self.record_path, json.dumps(asdict(self.record)).encode())

    def applied(self, *, peers: str) -> None:
        """Record the peer set the server now serves with."""
        self.record.peers = peers
        self.write()

    def close(self) -> None:
        self.record_path.unlink(missing_ok=True)
        self._lock.close()


def claim(node_directory: Path, listen: str, *, now: float) -> Claim:
    """Hold ``listen`` for this process, or refuse: one server per node and address."""
    run = node_directory / RUN_DIR
    ensure_private_dir(run)
    path = run / f"{_key(listen)}.lock"
    handle = path.open("a+b")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        holder = _read_record(run / f"{_key(listen)}.json")
        who = f" (pid {holder.pid})" if holder is not None else ""
        raise InputError(
            f"a server for this node already listens on {listen}{who}",
            hint="stop it first, or give this one another address with --listen",
        ) from None
    return Claim(node_directory, listen, handle, ServerRecord(os.getpid(), listen, now))


def _read_record(path: Path) -> ServerRecord | None:
    try:
        data = json.loads(path.read_bytes())
        return ServerRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def wait_applied(
    node_directory: Path, digest: str, *, timeout: float = APPLY_WAIT_SECONDS
) -> tuple[list[ServerRecord], list[ServerRecord]]:
    """Wait until every running server of the node applied the peer set ``digest``.

    Returns the servers that applied it and those that had not by ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        servers = running(node_directory)
        done = [s for s in servers if s.peers == digest]
        late = [s for s in servers if s.peers != digest]
        if not late or time.monotonic() >= deadline:
            return done, late
        time.sleep(0.1)


def _held(lock_path: Path) -> bool:
    """Whether some process holds the lock (a server is running on that address)."""
    try:
        handle = lock_path.open("rb")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def running(node_directory: Path) -> list[ServerRecord]:
    """The records of the servers running for this node now, by address."""
    run = node_directory / RUN_DIR
    if not run.is_dir():
        return []
    records = []
    for lock in sorted(run.glob("*.lock")):
        if not _held(lock):
            continue
        record = _read_record(lock.with_suffix(".json"))
        if record is not None:
            records.append(record)
    return records
