"""The online part of a check over gRPC: 1,000 query tokens against a 1,000,000-token snapshot.

The responder serves a million-token epoch from its own ``hexpsi serve``
process (mutual TLS on loopback); the proposer has already downloaded and
verified the snapshot and holds an open channel to the responder (its mutual
TLS handshake happened in an untimed first check). Each timed run is the
online part of one whole verified check: blind and pad the tokens, the
Evaluate call (the responder validates, charges, evaluates and proves), verify
proofs and receipt, unblind, finalize and test membership. One token in ten
hits. Setting up and tearing down the client (event loop, credentials, thread
pool) stays outside the timing, as it does for OpenMined's in-process request.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import time
from concurrent.futures import ThreadPoolExecutor

from hexpsi.protocol.check.session import ProposerCheck
from hexpsi.server.bench.check import synthetic_cells
from hexpsi.server.bench.harness import Extra, RunOnce, Workload
from hexpsi.server.bench.loopback import RESPONDER, ServedPair
from hexpsi.server.clients.check import run_check
from hexpsi.server.clients.peer import PeerClient
from hexpsi.server.node.snapshot_cache import SnapshotCache
from hexpsi.server.workers import default_workers

QUERY_TOKENS = 1000


def _strike(protected: list[int], outside: list[int]) -> list[int]:
    """Scattered single cells (no seven siblings together, so nothing compacts)."""
    hits = protected[:: max(1, len(protected) // (QUERY_TOKENS // 10))][: QUERY_TOKENS // 10]
    misses = outside[::7][: QUERY_TOKENS - len(hits)]
    return [*hits, *misses]


class OnlineCheck:
    def __init__(self, tokens: int) -> None:
        cells = synthetic_cells(tokens + 7 * QUERY_TOKENS)
        protected, outside = cells[:tokens], cells[tokens:]
        self.strike = _strike(protected, outside)
        # res_min = res: every protected cell is exactly one token.
        self.pair = ServedPair(protected, res_min=9)
        node = self.pair.proposer
        self.peer = node.peer(RESPONDER)
        # A first full check downloads and verifies the snapshot into the cache.
        report = asyncio.run(run_check(node, RESPONDER, self.strike))
        self.expected_hits = len(report.result.conflicting_tokens)
        self.descriptor = report.descriptor
        self.cached = SnapshotCache(node.directory).open(RESPONDER, self.descriptor)
        self.loop = asyncio.new_event_loop()
        self.pool = ThreadPoolExecutor(default_workers())
        self.client = self.loop.run_until_complete(self._connect())
        self.run_once()  # opens the channel: TLS handshake, HTTP/2 setup

    async def _connect(self) -> PeerClient:
        """The channel belongs to the loop it was made in, so it is made inside it."""
        return await PeerClient(self.pair.proposer, self.peer).__aenter__()

    async def _online(self) -> Extra:
        node = self.pair.proposer
        started = time.perf_counter()
        session = ProposerCheck(
            descriptor=self.descriptor,
            responder_key=self.peer.identity.verify_key,
            snapshot=self.cached.reader,
            proposer=node.name,
            strike_cells=self.strike,
            rng=os.urandom,
            mapper=self.pool.map,
        )
        query = await asyncio.to_thread(session.start)
        sent = time.perf_counter()
        response = await self.client.evaluate(query)
        answered = time.perf_counter()
        result = await asyncio.to_thread(
            session.finish,
            response,
            now=time.time(),
            max_skew=node.config.limits.clock_skew_seconds,
        )
        finished = time.perf_counter()
        if len(result.conflicting_tokens) != self.expected_hits:
            raise AssertionError("the online check found other hits than the first check")
        return {
            "tokens": result.tokens_sent,
            "elements": result.elements_sent,
            "hits": len(result.conflicting_tokens),
            "online_s": round(finished - started, 4),
            "blind_s": round(sent - started, 4),
            "evaluate_rpc_s": round(answered - sent, 4),
            "verify_unblind_membership_s": round(finished - answered, 4),
        }

    def run_once(self) -> Extra:
        return self.loop.run_until_complete(self._online())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.__aexit__(None, None, None))
        self.loop.close()
        self.pool.shutdown()
        self.pair.close()


_OPEN: list[OnlineCheck] = []


def _prepare(quick: bool) -> RunOnce:
    for old in _OPEN:
        old.close()
    _OPEN.clear()
    check = OnlineCheck(20_000 if quick else 1_000_000)
    _OPEN.append(check)
    atexit.register(check.close)
    return check.run_once


WORKLOADS = [
    Workload(
        "check_1k_vs_1m",
        "online part of one verified 1,000-token check against a cached 1,000,000-token "
        "snapshot, over gRPC with mutual TLS on loopback (quick: 20,000 tokens)",
        _prepare,
        interleave="online_1k",
    ),
]
