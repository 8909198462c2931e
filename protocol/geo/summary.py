"""One sentence saying what a command read: how many features of which kinds, and their cover.

A protected area that shrank to nothing (a radius under a name nobody reads, a
CSV of bare points) looks like any other file until someone sees its numbers,
so every command that reads shapes prints this line::

    read 12 features from usa.geojson: 9 points (radius 500–2,000 m), 2 polygons,
    1 line (buffer 1,000 m); 4,211 cells at res 9, 431 km²

Points always show their radius range and lines their buffer range, so a
radius of 0 m is in plain sight; polygons show their buffer only when one is
not 0. Counts are of shapes (a MultiPoint is several points); the cells and
area are of the cover at the resolution the command used. Several files are
named (up to three), or counted.

Inputs with time say how many features are timed and the time they span, in
UTC, and how many of them move (routes with times, moving points)::

    ...; 3 timed from 2026-12-05T06:00:00Z to 2026-12-05T18:00:00Z (1 route with
    times); 4,211 cells at res 9, 431 km²

The span is of the intervals as read, time buffers included. Inputs without
time read exactly as before.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import h3.api.basic_int as h3

from hexpsi.protocol.geo.cover import cover_area_km2
from hexpsi.protocol.geo.shapes import Area, Circle, Feature, Path
from hexpsi.protocol.geo.sources import kinds_of
from hexpsi.protocol.geo.timing import TimeKind
from hexpsi.protocol.times import rfc3339

MAX_NAMED_SOURCES = 3


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _metres(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:,.1f}"


def _span(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return (
        f"{_metres(low)} m"
        if _metres(low) == _metres(high)
        else (f"{_metres(low)}–{_metres(high)} m")
    )


def _area(km2: float) -> str:
    return f"{km2:,.0f}" if km2 >= 100 else f"{km2:.3g}"


def _sources(names: Sequence[str]) -> str:
    if len(names) == 1:
        return names[0]
    if len(names) <= MAX_NAMED_SOURCES:
        return f"{', '.join(names[:-1])} and {names[-1]}"
    return f"{len(names)} files"


def describe_shapes(features: Iterable[Feature]) -> str:
    """``9 points (radius 500–2,000 m), 2 polygons, 1 line (buffer 1,000 m)``."""
    shapes = [shape for feature in features for shape in feature.shapes]
    radii = [s.radius_m for s in shapes if isinstance(s, Circle)]
    lines = [s.buffer_m for s in shapes if isinstance(s, Path)]
    areas = [s.buffer_m for s in shapes if isinstance(s, Area)]
    parts = []
    if radii:
        parts.append(f"{_plural(len(radii), 'point')} (radius {_span(radii)})")
    if areas:
        buffered = f" (buffer {_span(areas)})" if any(areas) else ""
        parts.append(f"{_plural(len(areas), 'polygon')}{buffered}")
    if lines:
        parts.append(f"{_plural(len(lines), 'line')} (buffer {_span(lines)})")
    return ", ".join(parts)


def describe_times(features: Sequence[Feature], kinds: Sequence[TimeKind] | None = None) -> str:
    """``3 timed from 2026-12-05T06:00:00Z to 2026-12-05T18:00:00Z (1 route with times)``,
    or nothing when every feature is standing. ``kinds`` says how each feature gave
    its time (default: timed or standing, from the features)."""
    kinds = list(kinds_of(features) if kinds is None else kinds)
    intervals = [i for feature in features for i in feature.when or ()]
    if not intervals:
        return ""
    timed = sum(1 for feature in features if feature.timed)
    start = min(interval.start for interval in intervals)
    end = max(interval.end for interval in intervals)
    moving = [
        f"{count:,} {noun if count == 1 else plural}"
        for kind, noun, plural in (
            (TimeKind.ROUTE, "route with times", "routes with times"),
            (TimeKind.MOVING_POINT, "moving point", "moving points"),
        )
        if (count := kinds.count(kind))
    ]
    span = f"{timed:,} timed from {rfc3339(start)} to {rfc3339(end)}"
    return f"{span} ({', '.join(moving)})" if moving else span


def describe_read(
    features: Sequence[Feature],
    sources: Sequence[str],
    cells: Collection[int],
    kinds: Sequence[TimeKind] | None = None,
) -> str:
    """The line a command prints after reading ``features`` from ``sources`` and
    covering them with ``cells`` (all at one resolution); ``kinds`` as for
    :func:`describe_times`."""
    where = _sources(sources)
    read = f"read {_plural(len(features), 'feature')} from {where}: {describe_shapes(features)}"
    times = describe_times(features, kinds)
    if times:
        read = f"{read}; {times}"
    if not cells:
        return f"{read}; no cells"
    res = h3.get_resolution(next(iter(cells)))
    return f"{read}; {_plural(len(cells), 'cell')} at res {res}, {_area(cover_area_km2(cells))} km²"
