"""Which attributes of a user's file hold a feature's radius, buffer and id.

GIS tools name attributes as their users please (``radius``, ``Radius_m``,
``BUFFER_DIST``). An attribute hexpsi does not read is ignored, and an ignored
radius silently shrinks a protected circle to its centre cell: a false CLEAR
later. So every attribute that *looks like* a distance must be one hexpsi reads,
or be named as not a distance:

- A feature's point radius comes from ``radius_m`` and its line or polygon
  buffer from ``buffer_m``, in metres; ``FieldNames(radius=..., buffer=...)``
  (``--radius-field``/``--buffer-field``) maps a layer's own names onto them.
- Its id comes from ``id``, then QGIS's ``fid``, then ``name`` (the first one a
  feature has a value for), or from the one ``FieldNames(id=...)``
  (``--id-field``) names.
- Any other attribute whose name contains ``radius``, ``buffer``, ``dist``,
  ``range`` or ``width`` (in any case) and that holds a value is refused with a
  message naming it, unless ``FieldNames(ignore=...)`` (``--ignore-field``)
  says it is not a distance (``district``, ``orange``).
- A mapped radius or buffer whose name says another unit (``radius_km``,
  ``range_nm``, ``buffer_ft``) is refused: hexpsi reads metres, and a value in
  kilometres read as metres is a circle a thousand times too small.

GeoJSON property names are JSON keys and are matched exactly (``Radius_m`` is
not ``radius_m``); CSV headers are matched in any case, as they always were.
The time members (``valid_from``, ``time_buffer_s``, ...: ``timing``) are read
by their own names and never taken for distances.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.shapes import Feature
from hexpsi.protocol.geo.timing import TIME_MEMBERS

RADIUS_FIELD = "radius_m"
BUFFER_FIELD = "buffer_m"
DEFAULT_ID_FIELDS = ("id", "fid", "name")
"""Where a feature's id comes from, first value wins: its own id, QGIS's fid, its name."""
DISTANCE_WORDS = ("radius", "buffer", "dist", "range", "width")
"""An attribute whose name contains one of these (any case) looks like a distance."""
OTHER_UNITS = frozenset(
    {
        "km",
        "kms",
        "kilometre",
        "kilometres",
        "kilometer",
        "kilometers",
        "mi",
        "mile",
        "miles",
        "nm",
        "nmi",
        "ft",
        "feet",
        "foot",
        "yd",
        "yds",
        "yard",
        "yards",
        "deg",
        "degree",
        "degrees",
    }
)
"""Name parts that say a distance is not in metres."""
_NAME_PARTS = re.compile(r"[a-z]+|[0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_PLAIN_ARGUMENT = re.compile(r"[A-Za-z0-9_.:+-]+")


def looks_like_distance(name: str) -> bool:
    """Whether an attribute named ``name`` probably holds a distance."""
    folded = name.casefold()
    return any(word in folded for word in DISTANCE_WORDS)


def _unit_part(name: str) -> str | None:
    """The part of ``name`` that names a unit other than metres (``radius_km``: ``km``)."""
    for part in _NAME_PARTS.findall(_CAMEL.sub("_", name).casefold()):
        if part in OTHER_UNITS:
            return str(part)
    return None


def _check_name(value: str, option: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{option} must name an attribute, got {value!r}")
    return value.strip()


@dataclass(frozen=True, slots=True)
class FieldNames:
    """The attribute names a file's radius, buffer and id are read from.

    ``id`` is ``None`` for the default chain (``id``, ``fid``, ``name``);
    ``ignore`` names attributes that look like distances but are not.
    """

    radius: str = RADIUS_FIELD
    buffer: str = BUFFER_FIELD
    id: str | None = None
    ignore: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for value, option in ((self.radius, "--radius-field"), (self.buffer, "--buffer-field")):
            name = _check_name(value, option)
            unit = _unit_part(name)
            if unit is not None:
                raise InputError(
                    f"{option} {name} looks like a distance in {unit}, but hexpsi reads metres",
                    hint=f"convert the attribute to metres and name it with {option}",
                )
        if self.id is not None:
            _check_name(self.id, "--id-field")
        for name in self.ignore:
            _check_name(name, "--ignore-field")

    @property
    def id_fields(self) -> tuple[str, ...]:
        """Where ids come from, in order."""
        return DEFAULT_ID_FIELDS if self.id is None else (self.id,)

    def read(self, *, casefold: bool, points_only: bool = False) -> frozenset[str]:
        """Every attribute name these fields read or set aside (case-folded if asked).

        ``points_only``: the file holds only points (a CSV), so no buffer is read. The
        time members (``time_buffer_s`` among them) are always read.
        """
        names = {self.radius, *self.id_fields, *self.ignore, *TIME_MEMBERS}
        if not points_only:
            names.add(self.buffer)
        return frozenset(n.casefold() for n in names) if casefold else frozenset(names)


def as_argument(name: str) -> str:
    """``name`` as it would be typed after an option: quoted if the shell needs it."""
    return name if _PLAIN_ARGUMENT.fullmatch(name) else repr(name)


def check_stray_distances(
    names: Iterable[str],
    fields: FieldNames,
    *,
    what: str,
    casefold: bool = False,
    where: str = "",
    points_only: bool = False,
) -> None:
    """Refuse the first of ``names`` that looks like a distance but is not read.

    ``names`` are the attributes that hold a value; ``what`` says how to name one
    in the message (``"properties.{}"``, ``"column {!r}"``). ``points_only``: the
    file holds only points (a CSV), so the buffer field is not read either.
    """
    read = fields.read(casefold=casefold, points_only=points_only)
    for name in names:
        key = name.casefold() if casefold else name
        if key in read or not looks_like_distance(name):
            continue
        shown, arg = what.format(name), as_argument(name)
        if points_only:
            raise InputError(
                f"{shown} looks like a distance, but hexpsi reads a point's radius in metres "
                f"from {what.format(fields.radius)}",
                where=where,
                hint=f"if it holds the radius in metres, read it with --radius-field {arg}; "
                f"if it is not a distance, --ignore-field {arg}",
            )
        raise InputError(
            f"{shown} looks like a distance, but hexpsi reads a point's radius from "
            f"{what.format(fields.radius)} and a line's or polygon's buffer from "
            f"{what.format(fields.buffer)}, in metres",
            where=where,
            hint=f"if it holds metres, read it with --radius-field {arg} for points or "
            f"--buffer-field {arg} for lines and polygons; if it is not a distance, "
            f"--ignore-field {arg}",
        )


def missing_radius(reason: str, *, where: str = "") -> InputError:
    """The refusal for a point without a radius when no default was given."""
    return InputError(
        f"a point needs a radius in metres, but {reason}",
        where=where,
        hint="map your layer's radius attribute with --radius-field NAME, or give points "
        "without one a default with --radius-m M (--radius-m 0: a point is just its cell)",
    )


def check_unique_ids(features: Iterable[tuple[Feature, bool, str]]) -> None:
    """Refuse repeated ids: outputs map cells back to features by id.

    Each item is a feature, whether its file gave its id (False: its index), and
    how to name its place in a message.
    """
    seen: dict[str, str] = {}
    for feature, given, place in features:
        key = str(feature.id)
        if key in seen:
            if given:
                raise InputError(
                    f"id {feature.id!r} is already used by {seen[key]}",
                    where=place,
                    hint="give every feature its own id, or take ids from another attribute "
                    "with --id-field NAME",
                )
            raise InputError(
                f"has no id and its default id {feature.id!r} (its index) is already used by "
                f"{seen[key]}",
                where=place,
                hint="give every feature its own id",
            )
        seen[key] = place
