"""Several input files read as one: their features, with ids that stay unique.

Every output maps cells back to feature ids, so ids must be unique across all
the files a command reads, not only within each. An id that appears in one
file only is kept as it is. An id two or more files use (compared as text, as
within a file) gets its file's name as a prefix in every file that uses it:
``usa.geojson:3`` and ``can.geojson:3``. The prefix is the file's base name,
or the name as given when two files share a base name (``a/x.csv``,
``b/x.csv``). A prefixed id that still meets another (a file whose own id is
literally ``usa.geojson:3``) is refused rather than renamed again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.shapes import Feature


@dataclass(frozen=True, slots=True)
class Source:
    """One input's features and the name it was given by (a path, or ``<stdin>``)."""

    name: str
    features: tuple[Feature, ...]


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
                kept = Feature(id=f"{label}:{feature.id}", shapes=feature.shapes)
            key = str(kept.id)
            if key in named:
                raise InputError(
                    f"feature id {key!r} of {source.name} is also an id in {named[key]}",
                    hint="give the features of different files different ids",
                )
            named[key] = source.name
            merged.append(kept)
    return merged
