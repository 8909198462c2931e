"""Two pinned nodes on loopback for benchmarks, the responder in its own process.

Two processes are what a deployment has (each side on its own machine), and
they keep the two sides from sharing one interpreter lock: the responder runs
``hexpsi serve`` as a child process with mutual TLS, the proposer works in this
one. The child is stopped with SIGTERM (a graceful shutdown) when the pair closes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path

import tomli_w

from hexpsi.server.demo.scenario import free_loopback_port
from hexpsi.server.node.config import CONFIG_FILE
from hexpsi.server.node.directory import Node, init_node
from hexpsi.server.node.epochs import EpochStore

RESPONDER, PROPOSER = "coalition", "russia"
START_TIMEOUT_SECONDS = 60.0


def _relax_limits(directory: Path) -> None:
    """Budgets a benchmark never exhausts: every run is a real, charged check."""
    path = directory / CONFIG_FILE
    config = tomllib.loads(path.read_text())
    config.setdefault("budget", {}).update(
        {"km2_per_window": 1e12, "mutual_checks_per_window": 1_000_000}
    )
    path.write_text(tomli_w.dumps(config))


class ServedPair:
    """A responder serving in a child process and a proposer node in this process."""

    def __init__(
        self,
        responder_cells: Iterable[int],
        proposer_cells: Iterable[int] = (),
        *,
        res_min: int = 5,
        configure: Callable[[Path], None] = _relax_limits,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="hexpsi-bench-")
        root = Path(self._tmp.name)
        now = time.time()
        made = []
        for name in (RESPONDER, PROPOSER):
            directory = root / name
            address = f"127.0.0.1:{free_loopback_port()}"
            init_node(directory, name=name, listen=address, res_min=res_min, now=now)
            configure(directory)
            made.append(Node(directory))
        for node in made:
            for other in made:
                if other is not node:
                    node.add_peer(other.own_identity())
        self.responder, self.proposer = (Node(node.directory) for node in made)
        for node, cells in ((self.responder, responder_cells), (self.proposer, proposer_cells)):
            cell_list = list(cells)
            if cell_list:
                EpochStore(node).create(cell_list, now=time.time()).blocks.close()
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "hexpsi.server.cli", "serve", str(self.responder.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        host, port = self.responder.config.listen.rsplit(":", 1)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"hexpsi serve exited with {self._process.returncode}")
            try:
                with socket.create_connection((host, int(port)), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("hexpsi serve did not start listening in time")

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._tmp.cleanup()

    def __del__(self) -> None:
        if getattr(self, "_process", None) is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGKILL)
