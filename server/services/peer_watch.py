"""Peer changes reach a running server within about a second, without a restart.

``hexpsi peer add``, ``peer update`` and ``peer remove`` only write files in
``peers/``. A running server polls their names, sizes and times once a second;
when they change it reads them again, then:

- the TLS layer trusts exactly the pinned certificates from the next handshake
  on (gRPC's dynamic server credentials ask before every new connection), so a
  new peer can connect and a removed one cannot;
- a removed peer's calls already open are ended, and its next call on a
  connection it still holds is refused (the gate no longer knows its
  certificate: PERMISSION_DENIED);
- budgets and addresses are read from the new files at the next call;
- the server records the peer set it applied (``run/``), so the command that
  made the change can say whether it was picked up.

A peer file that does not load leaves the server with the peers it had, and
says so in its log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from hexpsi.protocol.errors import HexpsiError
from hexpsi.server.node.directory import Node
from hexpsi.server.node.running import peers_digest
from hexpsi.server.services.gate import PeerGate

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0


class PeerWatcher:
    """Reloads ``peers/`` when it changes and applies it to the gate and the TLS layer."""

    def __init__(
        self,
        node: Node,
        gate: PeerGate,
        *,
        applied: Callable[[str], None] = lambda digest: None,
    ) -> None:
        self.node = node
        self.gate = gate
        self.applied = applied
        self._signature = node.book.signature()
        self._version = 0
        self._served_version = 0

    @property
    def digest(self) -> str:
        """The on-disk peer set this server applied last."""
        return peers_digest(self._signature)

    def poll(self) -> bool:
        """Apply the peer files if they changed; True if a new set was applied."""
        signature = self.node.book.signature()
        if signature == self._signature:
            return False
        try:
            added, removed, changed = self.node.book.reload()
        except HexpsiError as error:
            self._signature = signature  # said once, not every second
            log.error(
                "the peer files changed but do not load, keeping the peers as they were: %s",
                error.explain(),
            )
            return False
        self._signature = signature
        self._version += 1
        ended = self.gate.revoke(removed)
        for what, names in (("pinned", added), ("updated", changed), ("removed", removed)):
            if names:
                log.info("peers %s: %s", what, ", ".join(sorted(names)))
        if ended:
            log.info("ended %d open calls of removed peers", ended)
        self.applied(self.digest)
        return True

    async def loop(self, interval: float = POLL_SECONDS) -> None:
        """``poll`` every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.poll()
            except OSError as error:
                log.error("cannot read the peer files: %s", error)

    def credentials(self) -> grpc.ServerCredentials:
        """Mutual TLS that trusts the pinned certificates as they are at each handshake.

        Raises (before the server starts) if nobody is pinned yet.
        """
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(),
            self._fetch,  # type: ignore[arg-type]  # the stubs omit that None means unchanged
            require_client_authentication=True,
        )

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.node.tls_key_pem, self.node.tls_certificate_pem)],
            root_certificates=self.node.trusted_roots_pem(),
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each new connection: None keeps the configuration."""
        version = self._version
        if version == self._served_version:
            return None
        try:
            configuration = self._configuration()
        except HexpsiError:
            # Nobody is pinned any more: the gate refuses every caller meanwhile.
            return None
        self._served_version = version
        return configuration
