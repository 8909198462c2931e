"""CSV positions: one point per row, its columns found by their header names.

Written for the files spreadsheets and GIS tools really write:

- The first line is a header. Latitude is the column named ``lat``,
  ``latitude`` or ``y``; longitude ``lng``, ``lon``, ``long``, ``longitude`` or
  ``x``; in any order and any case (spaces around a name are ignored). Two
  columns naming the same axis are refused rather than one picked. A file
  without such a header is refused with the accepted names: numbers alone
  cannot say which axis they are.
- The radius is the ``radius_m`` column and the id the first non-empty of
  ``id``, ``fid`` and ``name`` (or the columns ``FieldNames`` names), matched in
  any case as CSV headers always were here. A column that looks like a distance
  but is not read is refused at the first row that fills it (``fields``); a
  CSV holds only points, so a ``buffer_m`` column is not read either.
- The delimiter is ``,``, ``;`` or a tab: the one (most frequent on the first
  line first) that makes the first line such a header. Excel's ``sep=;`` first
  line names it outright.
- Excel in many locales writes ``;`` with decimal commas, a UTF-8 BOM and CRLF
  line ends; all are read. A decimal comma
  (``33,506``) is read only in ``;`` and tab files, where a comma is not the
  delimiter; a number with both a point and a comma (``1.234,5``) is
  refused, since its thousands separator is a guess. (``2.000`` in a ``;`` file
  is two metres: a point is always the decimal point.)
- Blank rows (Excel's ``;;;`` included) are skipped; every other row must have
  as many fields as the header.
- Time comes from the columns ``valid_from`` and ``valid_until`` (a timed
  position), or ``not_before`` and ``not_after`` (a strike window), RFC 3339
  with a zone, and ``time_buffer_s`` (seconds), by header name in any case.
  A row whose two cells are both empty is standing; one without the other is
  refused. A point has no route, so a filled ``times`` cell is refused. A
  column ``--ignore-field`` names is not read as a time.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.fields import (
    FieldNames,
    check_stray_distances,
    check_unique_ids,
    looks_like_distance,
    missing_radius,
)
from hexpsi.protocol.geo.shapes import Circle, Feature, FeatureId, check_distance, check_latlng
from hexpsi.protocol.geo.timing import (
    TIME_BUFFER,
    TIME_MEMBERS,
    TIMES,
    TimeRules,
    check_buffer_seconds,
    check_time_members,
    fixed_interval,
    given_members,
    widen,
)
from hexpsi.protocol.spacetime.interval import Interval

LAT_COLUMNS = ("lat", "latitude", "y")
LNG_COLUMNS = ("lng", "lon", "long", "longitude", "x")
DELIMITERS = (",", ";", "\t")
_DECIMAL_COMMA = re.compile(r"[+-]?[0-9]*,[0-9]+")
_SEP_LINE = re.compile(r"sep=(.)", re.IGNORECASE)
ACCEPTED_HEADERS = (
    f"a latitude column ({', '.join(LAT_COLUMNS)}) and a longitude column "
    f"({', '.join(LNG_COLUMNS)}), in any case"
)


@dataclass(frozen=True, slots=True)
class _Columns:
    """Where a CSV's values are, found from its header."""

    names: tuple[str, ...]
    lat: int
    lng: int
    radius: int | None
    ids: tuple[int, ...]
    distances: tuple[int, ...]
    """Columns that look like distances but are not read: refused once filled."""
    times: Mapping[str, int]
    """The time columns there are, by the member they hold (``valid_from``: 3)."""

    def member(self, name: str) -> str:
        """How a message names the column of time member ``name``."""
        return f"column {self.names[self.times[name]] if name in self.times else name!r}"


def _header(row: list[str], fields: FieldNames) -> _Columns | None:
    """The columns of a header row, or None if it names no latitude and longitude."""
    names = tuple(name.strip() for name in row)
    folded = [name.casefold() for name in names]
    axes = {
        axis: [i for i, name in enumerate(folded) if name in aliases]
        for axis, aliases in (("latitude", LAT_COLUMNS), ("longitude", LNG_COLUMNS))
    }
    if not all(axes.values()):
        return None
    duplicates = sorted({name for name in folded if name and folded.count(name) > 1})
    if duplicates:
        raise InputError(f"the header repeats column(s) {', '.join(duplicates)}")
    for axis, found in axes.items():
        if len(found) > 1:
            shown = " and ".join(repr(names[i]) for i in found)
            raise InputError(f"columns {shown} both name the {axis}; keep one")
    [lat], [lng] = axes["latitude"], axes["longitude"]
    radius = folded.index(fields.radius.casefold()) if fields.radius.casefold() in folded else None
    ids = tuple(folded.index(n.casefold()) for n in fields.id_fields if n.casefold() in folded)
    read = fields.read(casefold=True, points_only=True)
    distances = tuple(
        i
        for i, name in enumerate(names)
        if i not in (lat, lng) and looks_like_distance(name) and folded[i] not in read
    )
    ignored = {name.casefold() for name in fields.ignore}
    times = {
        name: folded.index(name) for name in TIME_MEMBERS if name in folded and name not in ignored
    }
    return _Columns(names, lat, lng, radius, ids, distances, times)


def _sniff(line: str, fields: FieldNames, named: str | None) -> tuple[str, _Columns]:
    """The delimiter that makes ``line`` a header naming latitude and longitude.

    ``named`` is the delimiter a ``sep=`` line gave, the only one then tried.
    """
    ordered = [named] if named else sorted(DELIMITERS, key=lambda d: -line.count(d))
    for delimiter in ordered:
        row = next(csv.reader([line], delimiter=delimiter, strict=True))
        columns = _header(row, fields)
        if columns is not None:
            return delimiter, columns
    shown = next(csv.reader([line], delimiter=ordered[0]))
    raise InputError(f"the CSV header must name {ACCEPTED_HEADERS}; got {shown}")


def _number(cell: str, column: str, where: str, *, decimal_comma: bool) -> float:
    text = cell.strip()
    if decimal_comma and _DECIMAL_COMMA.fullmatch(text):
        text = text.replace(",", ".")
    elif "," in text and "." in text:
        raise InputError(
            f"{column} must be a number without thousands separators, got {cell!r}", where=where
        )
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{column} must be a number, got {cell!r}", where=where) from None
    if not math.isfinite(value):
        raise InputError(f"{column} must be a finite number, got {text!r}", where=where)
    return value


@dataclass(frozen=True, slots=True)
class _Table:
    """How to read a CSV's rows once its header is known."""

    columns: _Columns
    fields: FieldNames
    default_m: float | None
    decimal_comma: bool
    timing: TimeRules

    def feature(self, row: list[str], index: int, where: str) -> tuple[Feature, bool]:
        """The point one data row describes, and whether the row gave its id."""
        c = self.columns
        if len(row) != len(c.names):
            raise InputError(
                f"expected {len(c.names)} fields as in the header, got {len(row)}", where=where
            )
        check_stray_distances(
            (c.names[i] for i in c.distances if row[i].strip()),
            self.fields,
            what="column {!r}",
            casefold=True,
            where=where,
            points_only=True,
        )
        center = check_latlng(
            (
                self._number(row[c.lat], c.names[c.lat], where),
                self._number(row[c.lng], c.names[c.lng], where),
            ),
            where=where,
        )
        circle = Circle(center, self._radius(row, where))
        given = any(row[i].strip() for i in c.ids)
        return Feature(
            id=self._id(row, index), shapes=(circle,), when=self._when(row, where)
        ), given

    def _when(self, row: list[str], where: str) -> tuple[Interval, ...] | None:
        """The row's interval (a timed position or a strike window), widened by its buffer."""
        c = self.columns
        values = {name: row[i] for name, i in c.times.items()}
        given = given_members(values)
        check_time_members(given, self.timing, member=c.member, where=where)
        if TIMES in given:
            raise InputError(
                f"{c.member(TIMES)} is filled, but a CSV row is a point; only a LineString "
                "route can carry times",
                where=where,
                hint="give the route as a GeoJSON LineString with properties.times",
            )
        interval = fixed_interval(values, self.timing, member=c.member, where=where)
        buffer_s = self.timing.buffer_s
        if TIME_BUFFER in given:
            name = c.member(TIME_BUFFER)
            buffer_s = check_buffer_seconds(
                self._number(values[TIME_BUFFER], name, where), name, where
            )
        return widen(None if interval is None else (interval,), buffer_s)

    def _number(self, cell: str, column: str, where: str) -> float:
        return _number(cell, column, where, decimal_comma=self.decimal_comma)

    def _radius(self, row: list[str], where: str) -> float:
        c = self.columns
        cell = row[c.radius].strip() if c.radius is not None else ""
        if cell:
            name = c.names[c.radius] if c.radius is not None else self.fields.radius
            return check_distance(self._number(cell, name, where), name, where)
        if self.default_m is not None:
            return self.default_m
        if c.radius is None:
            raise missing_radius(f"the CSV has no column {self.fields.radius!r}", where=where)
        raise missing_radius(f"its {c.names[c.radius]!r} is empty", where=where)

    def _id(self, row: list[str], index: int) -> FeatureId:
        for i in self.columns.ids:
            if row[i].strip():
                return row[i].strip()
        return index


def features_from_csv(
    text: str,
    *,
    default_radius_m: float | None,
    fields: FieldNames | None = None,
    timing: TimeRules | None = None,
) -> list[Feature]:
    """One ``Circle`` feature per data row of a CSV (see the module docstring).

    ``default_radius_m`` is the radius of rows that give none; ``None`` refuses them.
    ``timing`` says which time columns the file may fill (default: either kind).
    """
    fields = fields or FieldNames()
    timing = timing or TimeRules()
    default_m = (
        None if default_radius_m is None else check_distance(default_radius_m, "the default radius")
    )
    lines = text.removeprefix("\ufeff").splitlines(keepends=True)
    start = _next_line(lines, 0)
    named = _SEP_LINE.fullmatch(lines[start].strip()) if start is not None else None
    delimiter = named.group(1) if named and named.group(1) in DELIMITERS else None
    if start is not None and delimiter is not None:
        start = _next_line(lines, start + 1)
    if start is None:
        raise InputError("the CSV is empty; expected a header naming latitude and longitude")
    try:
        delimiter, columns = _sniff(lines[start], fields, delimiter)
    except InputError as exc:
        raise InputError(exc.message, where=f"line {start + 1}", hint=exc.hint) from None
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", where=f"line {start + 1}") from None
    table = _Table(columns, fields, default_m, decimal_comma=delimiter != ",", timing=timing)
    reader = csv.reader(lines[start + 1 :], strict=True, delimiter=delimiter)
    parsed: list[tuple[Feature, bool, str]] = []
    try:
        for row in reader:
            where = f"line {reader.line_num + start + 1}"
            if any(cell.strip() for cell in row):
                parsed.append((*table.feature(row, len(parsed), where), where))
    except csv.Error as exc:
        raise InputError(
            f"malformed CSV: {exc}", where=f"line {reader.line_num + start + 1}"
        ) from None
    if not parsed:
        raise InputError("the CSV has a header but no rows")
    check_unique_ids(parsed)
    return [feature for feature, _, _ in parsed]


def _next_line(lines: list[str], start: int) -> int | None:
    """The index of the first non-blank line from ``start`` on."""
    return next((i for i in range(start, len(lines)) if lines[i].strip()), None)
