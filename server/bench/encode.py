"""Cover costs: how long turning shapes into H3 cells takes at the default resolution.

Two shapes of work: one large strike disk (50 km at res 9, about 75,000 cells;
h3's polygon code does the work) and many small protected points (10,000 of
1 km each at res 9, where the fixed cost of each h3 call dominates). Points are
spread over a Syria-sized box from a seeded generator, so every run does the
same work. Quick mode covers 1,000 points instead of 10,000.
"""

from __future__ import annotations

import random

from hexpsi.protocol.geo.cover import feature_to_cover, shape_to_cover
from hexpsi.protocol.geo.shapes import Circle, Feature
from hexpsi.server.bench.harness import Extra, RunOnce, Workload

RES = 9
THEATRE_LAT, THEATRE_LNG = (32.3, 37.3), (35.8, 42.4)


def _prepare_disk(quick: bool) -> RunOnce:
    disk = Circle((33.5, 38.6), 50_000.0)

    def run() -> Extra:
        return {"cells": len(shape_to_cover(disk, RES))}

    return run


def _points(count: int) -> Feature:
    rng = random.Random(20160621)
    shapes = tuple(
        Circle((rng.uniform(*THEATRE_LAT), rng.uniform(*THEATRE_LNG)), 1_000.0)
        for _ in range(count)
    )
    return Feature("bench-points", shapes)


def _prepare_points(quick: bool) -> RunOnce:
    feature = _points(1_000 if quick else 10_000)

    def run() -> Extra:
        cells = feature_to_cover(feature, RES)
        return {"points": len(feature.shapes), "cells": len(cells)}

    return run


WORKLOADS = [
    Workload(
        "encode_disk_50km_res9",
        "cover of one 50 km-radius disk at res 9 (about 75k cells)",
        _prepare_disk,
    ),
    Workload(
        "encode_points_10k_1km_res9",
        "union of the covers of 10,000 points with a 1 km radius at res 9",
        _prepare_points,
        runs=3,
    ),
]
