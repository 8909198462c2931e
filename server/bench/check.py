"""The check's own costs: a 1,000-token check in memory and a 1,000,000-token snapshot.

Both report the primitive limit measured in the same run (hash-to-group plus one
scalar multiplication per token, spread over the cores the executor uses) so
the overhead over libsodium itself is visible: ``vs_primitive_limit`` is the
measured time divided by that limit. ``snapshot_1m`` also reports this whole
process's peak resident memory, which holds the values and the encoded blocks
(and, when it takes turns with OpenMined's setup, that baseline too: ``--only
snapshot_1m`` gives the build by itself). Workers are not counted: a spawned
child's rusage peak includes its parent's from before the exec.
"""

from __future__ import annotations

import os
import resource
import statistics
import time

import h3.api.basic_int as h3
from nacl.signing import SigningKey

from hexpsi.protocol.check.session import ProposerCheck, ResponderCheck
from hexpsi.protocol.crypto import group, oprf
from hexpsi.protocol.crypto.keys import epoch_keys
from hexpsi.protocol.epoch.descriptor import snapshot_params
from hexpsi.protocol.epoch.start import start_epoch
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS
from hexpsi.protocol.snapshot.build import build_snapshot
from hexpsi.protocol.snapshot.gcs import SnapshotReader
from hexpsi.server.bench.harness import Extra, RunOnce, Workload
from hexpsi.server.workers import default_workers, local_mapper

DST = b"HashToGroup-" + oprf.context_string(oprf.Mode.VOPRF)


def primitive_seconds_per_token(samples: int = 2000, rounds: int = 5) -> float:
    """hash-to-group + one scalar multiplication, measured now on one core.

    The median of ``rounds`` batches, like every figure the bench quotes: one
    short batch can land in a quiet or a busy moment of this shared machine.
    """
    messages = [os.urandom(24) for _ in range(samples)]
    key = group.random_scalar(os.urandom)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        group.scalar_mult_many(key, group.hash_to_group_many(messages, DST))
        times.append(time.perf_counter() - started)
    return statistics.median(times) / samples


def synthetic_cells(count: int, *, res: int = 9) -> list[int]:
    """``count`` distinct res-9 cells: children of consecutive res-3 cells over Syria."""
    cells: list[int] = []
    parent = h3.latlng_to_cell(35.0, 38.0, 3)
    ring = 0
    seen: set[int] = set()
    while len(cells) < count:
        for base in h3.grid_ring(parent, ring) if ring else [parent]:
            if base in seen:
                continue
            seen.add(base)
            cells.extend(h3.cell_to_children(base, res))
            if len(cells) >= count:
                break
        ring += 1
    return cells[:count]


def _prepare_snapshot(quick: bool) -> RunOnce:
    count = 20_000 if quick else 1_000_000
    cells = synthetic_cells(count)
    keys = epoch_keys(os.urandom(32), os.urandom(16), res=9, res_min=9)
    per_token = primitive_seconds_per_token()
    workers = default_workers()

    def run() -> Extra:
        size = 0
        started = time.perf_counter()

        def sink(block: bytes) -> None:
            nonlocal size
            size += len(block)

        with local_mapper(workers, kind="process") as mapper:
            built = build_snapshot({9: cells}, keys, rng=os.urandom, sink=sink, mapper=mapper)
        elapsed = time.perf_counter() - started
        limit = count * per_token / workers
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return {
            "tokens": count,
            "padded_values": built.params.count,
            "bits": built.params.bits,
            "bytes_per_token": round(size / count, 4),
            "bytes_per_value": round(size / built.params.count, 4),
            "workers": workers,
            "primitive_limit_s": round(limit, 3),
            "vs_primitive_limit": round(elapsed / limit, 3),
            "peak_rss_mb": round(peak / 1024),
        }

    return run


def _prepare_check_in_memory(quick: bool) -> RunOnce:
    tokens = 200 if quick else 1000
    protected = synthetic_cells(4000)
    signing = SigningKey.generate()
    blocks: list[bytes] = []
    epoch = start_epoch(
        node="responder",
        sequence=1,
        master_secret=os.urandom(32),
        signing_key=signing,
        protected_cells=protected,
        res=9,
        res_min=9,
        now=time.time(),
        validity_seconds=3600,
        max_query_tokens=4096,
        rng=os.urandom,
        sink=blocks.append,
    )
    reader = SnapshotReader(snapshot_params(epoch.descriptor.descriptor), blocks.__getitem__)
    reader.add_chunk(0, blocks)
    reader.finish(epoch.descriptor.descriptor.snapshot_root)
    # A scattered strike: single res-9 cells that compaction cannot merge.
    strike = synthetic_cells(7 * tokens)[::7]
    per_token = primitive_seconds_per_token()

    def run() -> Extra:
        started = time.perf_counter()
        proposer = ProposerCheck(
            descriptor=epoch.descriptor,
            responder_key=signing.verify_key,
            snapshot=reader,
            proposer="proposer",
            strike_cells=strike,
            rng=os.urandom,
        )
        responder = ResponderCheck(
            descriptor=epoch.descriptor,
            keys=epoch.keys,
            signing_key=signing,
            proposer="proposer",
            rng=os.urandom,
        )
        query = proposer.start()
        responder.receive(query, now=time.time())
        response = responder.respond(now=time.time())
        result = proposer.finish(response, now=time.time(), max_skew=CLOCK_SKEW_SECONDS)
        elapsed = time.perf_counter() - started
        return {
            "tokens": result.tokens_sent,
            "elements": result.elements_sent,
            "primitive_token_us": round(per_token * 1e6, 2),
            "us_per_token": round(elapsed / result.tokens_sent * 1e6, 2),
        }

    return run


WORKLOADS = [
    Workload(
        "snapshot_1m",
        "build the snapshot of 1,000,000 tokens (evaluate, truncate, pad, encode, commit)",
        _prepare_snapshot,
        runs=3,
        interleave="setup_1m",
    ),
    Workload(
        "check_1k_in_memory",
        "one verified 1,000-token check, both sessions in one process",
        _prepare_check_in_memory,
    ),
]
