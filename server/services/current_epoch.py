"""The epoch a node serves right now, reloaded when ``hexpsi positions`` makes a new one.

Shared by every service of a running server, so the check and the mutual check
always answer from the same epoch.
"""

from __future__ import annotations

import logging

from hexpsi.protocol.errors import FailedPrecondition, HexpsiError
from hexpsi.server.node.epochs import EpochStore, ServedEpoch

log = logging.getLogger(__name__)


class EpochWatcher:
    """The current epoch, reloaded when ``hexpsi positions`` makes a new one."""

    def __init__(self, store: EpochStore) -> None:
        self.store = store
        self._marker: tuple[int, int] | None = None
        self._epoch: ServedEpoch | None = None

    def get(self) -> ServedEpoch:
        marker = self.store.current_marker()
        if marker != self._marker or self._epoch is None:
            epoch = self._load()
            if epoch is not None and self._epoch is not None:
                log.info("serving epoch %d (was %d)", epoch.sequence, self._epoch.sequence)
            self._epoch, self._marker = epoch, marker
        if self._epoch is None:
            raise FailedPrecondition(
                f"node {self.store.node.name!r} has no protected positions yet "
                "(its operator runs: hexpsi positions DIR POSITIONS)",
            )
        return self._epoch

    def _load(self) -> ServedEpoch | None:
        """The epoch ``current`` names; a damaged one is this node's fault, not the caller's.

        The reason goes to the operator's log; the peer learns only that the node
        cannot serve right now (never a path, never a status that blames the peer).
        """
        try:
            return self.store.current()
        except (HexpsiError, OSError) as error:
            reason = error.explain() if isinstance(error, HexpsiError) else str(error)
            log.error("cannot load the current epoch: %s (run hexpsi positions again)", reason)
            raise FailedPrecondition(
                f"node {self.store.node.name!r} cannot serve its current epoch right now "
                "(its operator must set its positions again)",
            ) from None
