"""Several input files read as one: their features, with ids that stay unique.

Every output maps cells back to feature ids, so ids must be unique across all
the files a command reads, not only within each. An id that appears in one
file only is kept as it is. An id two or more files use (compared as text, as
within a file) gets its file's name as a prefix in every file that uses it:
``usa.geojson:3`` and ``can.geojson:3``. The prefix is the file's base name,
or the name as given when two files share a base name (``a/x.csv``,
``b/x.csv``). A prefixed id that still meets another (a file whose own id is
literally ``usa.geojson:3``) is refused rather than renamed again. A renamed
feature keeps its shapes and its times; how each feature gave its time
(``TimeKind``) stays in step with the features, for the line saying what was
read.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.shapes import Feature
from hexpsi.protocol.geo.timing import TimeKind


def kinds_of(features: Iterable[Feature]) -> list[TimeKind]:
    """How features gave their time when nothing more is known: timed or standing."""
    return [TimeKind.TIMED if f.timed else TimeKind.STANDING for f in features]


@dataclass(frozen=True, slots=True)
class Source:
    """One input's features and the name it was given by (a path, or ``<stdin>``).

    ``kinds`` says how each feature gave its time (routes and moving points are
    told apart from other timed features); empty, it is taken from the features.
    """

    name: str
    features: tuple[Feature, ...]
    kinds: tuple[TimeKind, ...] = ()

    def __post_init__(self) -> None:
        if self.kinds and len(self.kinds) != len(self.features):
            raise InputError(
                f"{self.name}: {len(self.features)} features but {len(self.kinds)} time kinds"
            )

    def time_kinds(self) -> tuple[TimeKind, ...]:
        return self.kinds or tuple(kinds_of(self.features))


def base_name(name: str) -> str:
    """The last part of a path, ``/`` or ``\\`` separated (pure: no filesystem)."""
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or name


def source_labels(names: Sequence[str]) -> list[str]:
    """How to name each file shortly: its base name, or its name as given when two
    files share a base name."""
    bases = [base_name(name) for name in names]
    return [
        base if bases.count(base) == 1 else name for base, name in zip(bases, names, strict=True)
    ]


def merge_sources(sources: Sequence[Source]) -> list[Feature]:
    """Every source's features in order, clashing ids prefixed with their file's name."""
    labels = source_labels([source.name for source in sources])
    uses = Counter(str(f.id) for source in sources for f in source.features)
    merged: list[Feature] = []
    named: dict[str, str] = {}
    for label, source in zip(labels, sources, strict=True):
        for feature in source.features:
            kept = feature
            if uses[str(feature.id)] > 1:
                kept = dataclasses.replace(feature, id=f"{label}:{feature.id}")
            key = str(kept.id)
            if key in named:
                raise InputError(
                    f"feature id {key!r} of {source.name} is also an id in {named[key]}",
                    hint="give the features of different files different ids",
                )
            named[key] = source.name
            merged.append(kept)
    return merged


def merge_kinds(sources: Sequence[Source]) -> list[TimeKind]:
    """Every source's time kinds, in the order ``merge_sources`` lists their features."""
    return [kind for source in sources for kind in source.time_kinds()]
