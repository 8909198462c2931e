"""The online part of a check over gRPC: 1,000 query tokens against a 1,000,000-token snapshot.

The responder serves a million-token epoch from its own ``hexpsi serve``
process (mutual TLS on loopback); the proposer has already downloaded and
verified the snapshot. Each timed run is one whole verified check as the
proposer does it once the descriptor and snapshot are at hand: open the
channel, blind and pad the tokens, the Evaluate call (the responder validates,
charges, evaluates and proves), verify proofs and receipt, unblind, finalize
and test membership. One token in ten hits.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import time
from concurrent.futures import ThreadPoolExecutor

from protocol.check import ProposerCheck
from server.bench.check import synthetic_cells
from server.bench.harness import Extra, RunOnce, Workload
from server.bench.loopback import RESPONDER, ServedPair
from server.client import PeerClient, run_check
from server.executor import default_workers
from server.snapcache import SnapshotCache

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

    async def _online(self) -> Extra:
        node = self.pair.proposer
        async with PeerClient(node, self.peer) as client:
            with ThreadPoolExecutor(default_workers()) as pool:
                started = time.perf_counter()
                session = ProposerCheck(
                    descriptor=self.descriptor,
                    responder_key=self.peer.identity.verify_key,
                    snapshot=self.cached.reader,
                    proposer=node.name,
                    strike_cells=self.strike,
                    rng=os.urandom,
                    mapper=pool.map,
                )
                query = await asyncio.to_thread(session.start)
                sent = time.perf_counter()
                response = await client.evaluate(query)
                answered = time.perf_counter()
                result = await asyncio.to_thread(session.finish, response)
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
        return asyncio.run(self._online())


_OPEN: list[OnlineCheck] = []


def _prepare(quick: bool) -> RunOnce:
    for old in _OPEN:
        old.pair.close()
    _OPEN.clear()
    check = OnlineCheck(20_000 if quick else 1_000_000)
    _OPEN.append(check)
    atexit.register(check.pair.close)
    return check.run_once


WORKLOADS = [
    Workload(
        "check_1k_vs_1m",
        "online part of one verified 1,000-token check against a cached 1,000,000-token "
        "snapshot, over gRPC with mutual TLS on loopback (quick: 20,000 tokens)",
        _prepare,
    ),
]
