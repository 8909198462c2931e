"""The baseline users would pick instead: OpenMined PSI (ECDH over P-256, C++), same machine.

Measured in the same ``hexpsi bench`` invocation as hexpsi's own workloads so
the ratios in :mod:`hexpsi.server.bench.compare` compare like with like. Present only
when the ``bench`` extra is installed (``pip install -e '.[bench]'``).

- ``openmined_setup_1m``: the server's setup message for 1,000,000 items
  (Golomb-coded set, false-positive rate 1e-9 for 1,000 client items) — the
  counterpart of hexpsi's ``snapshot_1m``.
- ``openmined_online_1k_vs_1m``: one request of 1,000 client items against
  that setup, revealing the intersection (client request, server response,
  client intersection), in process — the counterpart of ``check_1k_vs_1m``.
- ``openmined_cardinality_100k``: 100,000 x 100,000 items, cardinality only,
  setup included — the counterpart of ``mutual_100k``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from hexpsi.server.bench.harness import Extra, RunOnce, Workload

FALSE_POSITIVE = 1e-9
CLIENT_ITEMS = 1000


def _library() -> ModuleType | None:
    try:
        return importlib.import_module("private_set_intersection.python")
    except ImportError:
        return None


PSI = _library()
_SETUPS: dict[int, tuple[object, object]] = {}
"""The last server and setup built per size, so the online workload reuses them."""


def _items(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def _setup(count: int) -> tuple[object, object]:
    assert PSI is not None
    server = PSI.server.CreateWithNewKey(True)
    setup = server.CreateSetupMessage(
        FALSE_POSITIVE, CLIENT_ITEMS, _items("s", count), PSI.DataStructure.GCS
    )
    _SETUPS[count] = (server, setup)
    return server, setup


def _prepare_setup(quick: bool) -> RunOnce:
    count = 20_000 if quick else 1_000_000

    def run() -> Extra:
        _, setup = _setup(count)
        size = setup.ByteSize()  # type: ignore[attr-defined]
        return {"items": count, "bytes": size, "bytes_per_item": round(size / count, 4)}

    return run


def _prepare_online(quick: bool) -> RunOnce:
    assert PSI is not None
    count = 20_000 if quick else 1_000_000
    server, setup = _SETUPS.get(count) or _setup(count)
    # One in ten client items is a server item, as in hexpsi's check workload.
    items = [f"s{i * 97}" if i % 10 == 0 else f"c{i}" for i in range(CLIENT_ITEMS)]

    def run() -> Extra:
        client = PSI.client.CreateWithNewKey(True)
        request = client.CreateRequest(items)
        response = server.ProcessRequest(request)  # type: ignore[attr-defined]
        hits = client.GetIntersection(setup, response)
        return {"client_items": len(items), "server_items": count, "hits": len(hits)}

    return run


def _prepare_cardinality(quick: bool) -> RunOnce:
    assert PSI is not None
    count = 2_000 if quick else 100_000
    server_items = _items("s", count)
    client_items = [f"s{i}" if i % 3 == 0 else f"c{i}" for i in range(count)]

    def run() -> Extra:
        server = PSI.server.CreateWithNewKey(False)
        client = PSI.client.CreateWithNewKey(False)
        setup = server.CreateSetupMessage(
            FALSE_POSITIVE, count, server_items, PSI.DataStructure.GCS
        )
        response = server.ProcessRequest(client.CreateRequest(client_items))
        shared = client.GetIntersectionSize(setup, response)
        return {"items_each": count, "shared": shared}

    return run


WORKLOADS = (
    []
    if PSI is None
    else [
        Workload(
            "openmined_setup_1m",
            "OpenMined PSI server setup for 1,000,000 items (GCS, fpr 1e-9 for 1,000 queries)",
            _prepare_setup,
            runs=3,
            interleave="setup_1m",
        ),
        Workload(
            "openmined_online_1k_vs_1m",
            "OpenMined PSI: 1,000-item request against the 1M setup, intersection revealed",
            _prepare_online,
            interleave="online_1k",
        ),
        Workload(
            "openmined_cardinality_100k",
            "OpenMined PSI cardinality, 100,000 x 100,000 items, setup included",
            _prepare_cardinality,
            runs=3,
            interleave="mutual_100k",
        ),
    ]
)
