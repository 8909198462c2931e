"""Reading positions and strike files (or stdin) into features, and saying what was read.

A strike is read once (``read_inputs``) and covered later (``cover_features``),
because the resolution it must be covered at is the responder's, which the
proposer only learns from the peer's signed descriptor. Whoever covers the
features then prints the one line saying what was read (``announce_read``),
with the cells and area of the cover it used.

What a file is read as (``InputOptions.role``: positions, strikes, or encode,
which reads either) decides which time members it may carry; ``--time-buffer``
and, for strikes, ``--window`` are the defaults for features that give none
(``protocol.geo.timing``). Standing and timed features are covered apart:
``cover_features`` takes standing features only and refuses a timed one, so
no caller can fold a timed position into the standing set by mistake;
``cover_timed_features`` pairs the timed ones' cells with their intervals, and
``split_timed`` divides a list into the two.

Several files are read as one (``protocol.geo.sources``): GeoJSON and CSV
mixed, standard input (``-``) at most once, no file twice. A node's own
positions and strikes (``read_node_inputs``) are bounded by its theatre when
it declares one.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hexpsi.protocol.errors import InputError, LocalProtocolError
from hexpsi.protocol.geo.estimate import bounded_cover
from hexpsi.protocol.geo.fields import FieldNames
from hexpsi.protocol.geo.parse import read_source
from hexpsi.protocol.geo.shapes import Feature, check_distance
from hexpsi.protocol.geo.sources import merge_kinds, merge_sources, source_labels
from hexpsi.protocol.geo.summary import describe_read
from hexpsi.protocol.geo.theatre import Theatre
from hexpsi.protocol.geo.timed_cover import TimedCell, split_timed, timed_cover
from hexpsi.protocol.geo.timing import Role, TimeKind, TimeRules
from hexpsi.protocol.limits import DEFAULT_MAX_COVER_CELLS
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.server.streams import STDIO, read_input, source_name

if TYPE_CHECKING:
    # Only for its type: the node code loads the crypto libraries, and ``hexpsi encode``
    # reads inputs without them (tests/server/cli/test_startup.py).
    from hexpsi.server.node.directory import Node


__all__ = [
    "InputOptions",
    "Inputs",
    "Role",
    "announce_read",
    "cover_features",
    "cover_timed_features",
    "read_cover",
    "read_inputs",
    "read_node_inputs",
    "read_shapes",
    "split_timed",
]


@dataclass(frozen=True, slots=True)
class InputOptions:
    """How to read input files: the radius default (``None``: none), attribute names,
    what the files are read as, and the time defaults.

    ``time_buffer_s`` widens timed features that give no ``time_buffer_s`` of their
    own; ``window`` is the window of strike features without ``not_before`` and
    ``not_after`` (strikes only).
    """

    default_radius_m: float | None = 0.0
    fields: FieldNames = field(default_factory=FieldNames)
    role: Role = Role.ENCODE
    time_buffer_s: float | None = None
    window: Interval | None = None

    @property
    def timing(self) -> TimeRules:
        return TimeRules(role=Role(self.role), buffer_s=self.time_buffer_s, window=self.window)


@dataclass(frozen=True, slots=True)
class Inputs:
    """The features read from one or more files, and the files' names."""

    features: tuple[Feature, ...]
    sources: tuple[str, ...]
    digests: tuple[str, ...] = ()
    """SHA-256 (hex) of each source's bytes as read, in the order of ``sources``."""
    kinds: tuple[TimeKind, ...] = ()
    """How each feature gave its time, in the order of ``features`` (empty: from them)."""

    def summary(self, cells: Collection[int]) -> str:
        """The line saying what was read and what ``cells`` (its cover) amount to."""
        kinds = self.kinds or None
        return describe_read(self.features, source_labels(self.sources), cells, kinds)


def _check_names(names: Sequence[str]) -> None:
    if not names:
        raise InputError("no input file given")
    if names.count(STDIO) > 1:
        raise InputError("standard input (-) can be read only once")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"{repeated[0]} is given more than once")


def read_inputs(
    paths: Sequence[str | Path],
    options: InputOptions | None = None,
    *,
    theatre: Theatre | None = None,
    theatre_hint: str = "",
) -> Inputs:
    """Every feature of the GeoJSON and CSV files ``paths`` (``-`` is stdin), validated,
    inside ``theatre`` if one is given, with ids unique across the files."""
    options = options or InputOptions()
    names = [str(path) for path in paths]
    _check_names(names)
    radius = options.default_radius_m
    if radius is not None:
        radius = check_distance(radius, "--radius-m")
    timing = options.timing
    sources = []
    digests = []
    for name in names:
        shown = source_name(name)
        raw = read_input(name)
        digests.append(hashlib.sha256(raw).hexdigest())
        source = read_source(
            raw, source=shown, default_radius_m=radius, fields=options.fields, timing=timing
        )
        if theatre is not None:
            try:
                theatre.check_features(source.features, hint=theatre_hint)
            except InputError as error:
                raise InputError(error.message, where=shown, hint=error.hint) from error
        sources.append(source)
    return Inputs(
        tuple(merge_sources(sources)),
        tuple(source.name for source in sources),
        tuple(digests),
        tuple(merge_kinds(sources)),
    )


def read_node_inputs(
    node: Node, paths: Sequence[str | Path], options: InputOptions | None = None
) -> Inputs:
    """A node's positions or strikes: ``read_inputs`` bounded by its theatre, if declared."""
    return read_inputs(
        paths,
        options,
        theatre=node.theatre(),
        theatre_hint=f"the theatre is {node.theatre_path}; hexpsi theatre {node.directory} "
        "shows it",
    )


def announce_read(inputs: Inputs, cells: Collection[int]) -> None:
    """Print the line saying what was read, and its cover ``cells``, on stderr."""
    print(inputs.summary(cells), file=sys.stderr)


def read_shapes(path: str | Path, *, default_radius_m: float = 0.0) -> list[Feature]:
    """Every feature of one GeoJSON or CSV file (``-`` is stdin), validated."""
    return list(read_inputs([path], InputOptions(default_radius_m)).features)


def cover_features(
    features: Sequence[Feature], *, res: int, max_cells: int = DEFAULT_MAX_COVER_CELLS
) -> set[int]:
    """The union of every standing feature's conservative cover at ``res``.

    Refuses (before building it) a cover estimated above ``max_cells``: a typo'd
    radius would otherwise cost minutes and gigabytes before any other check could
    say it is far too large to protect or to strike. Refuses a timed feature: its
    cells hold only over its intervals, and a standing cover would hold them for
    the whole epoch (``split_timed``, then ``cover_timed_features`` for those).
    """
    timed = next((feature for feature in features if feature.timed), None)
    if timed is not None:
        raise LocalProtocolError(
            f"feature {timed.id!r} is timed, and a standing cover has no time: split the "
            "features with split_timed and cover the timed ones with cover_timed_features"
        )
    try:
        return bounded_cover(features, res, max_cells)
    except InputError as error:
        raise InputError(error.message, hint=f"{error.hint} (and --radius-m)") from None


def cover_timed_features(
    features: Sequence[Feature], *, res: int, max_cells: int = DEFAULT_MAX_COVER_CELLS
) -> list[TimedCell]:
    """Every cell of every timed feature's shapes at ``res``, paired with the shape's
    interval; a cell's overlapping or touching intervals merged; sorted by cell, then
    start. Bounded like :func:`cover_features`; refuses a standing feature."""
    try:
        return timed_cover(features, res, max_cells)
    except InputError as error:
        raise InputError(error.message, hint=f"{error.hint} (and --radius-m)") from None


def read_cover(path: str | Path, *, res: int, default_radius_m: float = 0.0) -> set[int]:
    """The union of every feature's conservative cover at ``res``."""
    return cover_features(read_shapes(path, default_radius_m=default_radius_m), res=res)
