"""The ``crs`` and ``trs`` members a file may carry: WGS84 degrees and UTC only.

- A ``crs`` member (GeoJSON 2008; QGIS still writes one; OGC Moving Features
  JSON spells its type ``Name``) may name WGS84 longitude/latitude only:
  CRS84 (``urn:ogc:def:crs:OGC:1.3:CRS84``, ``urn:ogc:def:crs:OGC::CRS84``) or
  EPSG:4326 (``EPSG:4326``, ``urn:ogc:def:crs:EPSG::4326``, and the versioned
  and ``http://www.opengis.net`` spellings of both). Anything else (a projected
  CRS, a ``link`` crs) is refused naming it: its numbers are not degrees.
  EPSG:4326 formally orders latitude first, but GeoJSON positions are
  ``[longitude, latitude]`` whatever the member says (RFC 7946), and QGIS and
  GDAL write them that way under an EPSG:4326 member too; so a ``crs`` member
  never swaps the axes here.
- A ``trs`` member (Moving Features JSON's temporal reference system) may be
  absent, ``null``, or name ISO 8601's Gregorian calendar in UTC: the Named
  TRS ``urn:ogc:data:time:iso8601`` (MF-JSON's default) or
  ``http://www.opengis.net/def/uom/ISO-8601/0/Gregorian``, as a Name or as a
  Link's ``href``. Any other calendar or clock is refused naming it: its
  times are not RFC 3339 instants.
"""

from __future__ import annotations

import re

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.json_values import show_json

WGS84_CRS = re.compile(
    r"(urn:ogc:def:crs:ogc:[0-9.]*:crs84|ogc:crs84|crs84"
    r"|urn:ogc:def:crs:epsg:[0-9.]*:4326|epsg:4326"
    r"|https?://www\.opengis\.net/def/crs/(ogc/[0-9.]+/crs84|epsg/[0-9.]+/4326))"
)
"""``crs`` names (case-folded) meaning longitude/latitude on WGS84; GeoJSON order either way."""
EXPORT_HINT = (
    "export the layer as EPSG:4326 (WGS 84) GeoJSON; in QGIS: Export, Save Features As, "
    "CRS EPSG:4326"
)
GREGORIAN_TRS = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
ISO8601_TRS = "urn:ogc:data:time:iso8601"
UTC_TRS = frozenset(
    name.casefold()
    for name in (GREGORIAN_TRS, GREGORIAN_TRS.replace("http:", "https:"), ISO8601_TRS)
)
"""``trs`` names and links (case-folded) meaning ISO 8601 times on the Gregorian calendar."""


def _reference(member: object) -> str | None:
    """The name of a Named reference system, or the href of a Linked one."""
    if not isinstance(member, dict) or not isinstance(member.get("properties"), dict):
        return None
    kind, properties = member.get("type"), member["properties"]
    key = {"name": "name", "link": "href"}.get(kind.casefold()) if isinstance(kind, str) else None
    value = properties.get(key) if key else None
    return value if isinstance(value, str) else None


def check_crs(value: dict[str, object], *, where: str = "") -> None:
    """Refuse a ``crs`` member that names anything but WGS84 longitude/latitude."""
    crs = value.get("crs")
    if crs is None:
        return
    is_named = isinstance(crs, dict) and str(crs.get("type")).casefold() == "name"
    name = _reference(crs) if is_named else None
    if name is None:
        raise InputError(
            f"the crs member {show_json(crs)} does not name a coordinate reference system "
            "hexpsi can read",
            where=where,
            hint=EXPORT_HINT,
        )
    if not WGS84_CRS.fullmatch(name.strip().casefold()):
        raise InputError(
            f"coordinates are in {name}, not longitude and latitude (WGS84); hexpsi does not "
            "reproject",
            where=where,
            hint=EXPORT_HINT,
        )


def check_trs(value: dict[str, object], *, where: str = "") -> None:
    """Refuse a ``trs`` member that names anything but ISO 8601 Gregorian UTC times."""
    trs = value.get("trs")
    if trs is None:
        return
    name = _reference(trs)
    if name is None or name.strip().casefold() not in UTC_TRS:
        shown = name if name is not None else show_json(trs)
        raise InputError(
            f"times are in the temporal reference system {shown}, not ISO 8601 (Gregorian "
            "calendar, UTC)",
            where=where,
            hint=f"give times as RFC 3339 with the trs {GREGORIAN_TRS}, or no trs member",
        )
