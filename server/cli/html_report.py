"""A report page as one self-contained HTML file: the cells as an SVG map, the facts beside it.

:func:`page_to_html` draws a :class:`~hexpsi.server.cli.report_page.ReportPage`
in Web Mercator (``hexpsi.server.cli.webmercator``), so an operator's XYZ tiles
line up under the cells when the page names a tile server; without one, the
page loads nothing at all: its style and script are inline, its fonts the
system's, and a Content-Security-Policy lets the browser fetch nothing but the
named tile server's images.

What the map shows: every cell as a polygon, filled in its target's colour
(conflicting cells in red, drawn last), grouped per target (``<g
data-target=… data-feature=…>``, each cell a ``<path class="cell" data-cell=…>``
or ``class="cell conflict"``; a cell several targets cover lies in its first
target's group and lists them all in ``data-targets``), numbered target
markers, a graticule, a scale bar true at the view's centre latitude, and the
latitude and longitude under the pointer. The page is the same bytes for the
same model: no time or randomness goes into it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from hexpsi.protocol.geo.sphere import normalize_lng
from hexpsi.server.cli.formats import cell_str, cell_to_polygon
from hexpsi.server.cli.report_page import CellRole, PageCell, ReportPage
from hexpsi.server.cli.webmercator import (
    MAX_LAT,
    View,
    degrees_label,
    fit_view,
    graticule_step,
    graticule_values,
    lnglat_to_world,
    longitude_window,
    scale_bar,
    shift_into,
    tiles_in_view,
)

MAP_WIDTH = 960
MAP_HEIGHT = 640
PADDING = 28
"""Pixels kept free around the cells when the view is fitted."""
MAX_MARKERS = 60
"""Numbered target markers are drawn only up to this many targets (the table lists all)."""
MARKER_RADIUS_PX = 9
SCALE_BAR_PX = 160
LABEL_ROOM_PX = 64
"""Meridians this close to the right edge go unlabelled (their label would be cut off)."""
LABEL_HEIGHT_PX = 14
PALETTE = (
    "#1f77b4",
    "#2ca02c",
    "#9467bd",
    "#17becf",
    "#8c564b",
    "#bcbd22",
    "#393b79",
    "#7f7f7f",
)
"""Target colours; red is kept for conflicting cells."""
UNTARGETED = "#6e7781"

Point = tuple[float, float]

STYLE = """
:root{color-scheme:light}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1f2328;background:#f6f8fa}
header{padding:12px 20px;background:#fff;border-bottom:1px solid #d0d7de}
h1{font-size:19px;margin:0}
h2{font-size:15px;margin:16px 0 6px}
.summary{margin:4px 0 0}
.badge{display:inline-block;padding:0 8px;border-radius:4px;font-weight:600;color:#fff;
margin-right:6px}
.badge.conflict{background:#b3141c}
.badge.clear{background:#1a7f37}
main{display:flex;flex-wrap:wrap;gap:20px;padding:20px;align-items:flex-start}
figure{margin:0;flex:0 1 960px;min-width:320px;background:#fff;border:1px solid #d0d7de}
#map{display:block;width:100%;height:auto}
figcaption{padding:6px 10px;border-top:1px solid #d0d7de;min-height:1.45em;
font-variant-numeric:tabular-nums}
aside{flex:1 1 320px;min-width:280px}
aside h2:first-child{margin-top:0}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d0d7de}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
th{background:#f6f8fa}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.facts th{width:9em;font-weight:600;background:#fff}
.facts td{word-break:break-all}
#targets tbody tr:hover,#targets tbody tr.hl{background:#fff8c5}
.v-conflict{color:#b3141c;font-weight:600}
.v-clear{color:#1a7f37;font-weight:600}
.legend{list-style:none;padding:0;margin:0}
.legend li{margin:2px 0}
.swatch{vertical-align:-2px;margin-right:6px}
.sea{fill:#e9eef2}
#grid line{stroke:#c4ccd5;stroke-width:1}
#grid text,#scale text{font-size:11px;fill:#424a53}
#grid text{paint-order:stroke;stroke:#e9eef2;stroke-width:3px}
.cell{fill-opacity:.5}
.cell.conflict{fill:#d62728;stroke:#7a0c10;fill-opacity:.85}
.cell.hl{stroke:#000;stroke-width:2.5px;fill-opacity:.95}
#markers circle{fill:#fff;stroke:#24292f;stroke-width:1.5}
#markers line{stroke:#24292f;stroke-width:1.5}
#markers text{font-size:11px;font-weight:600;text-anchor:middle;dominant-baseline:central}
#grid,#markers,#scale{pointer-events:none}
#scale rect.back{fill:#fff;fill-opacity:.8}
#scale rect.bar{fill:#24292f}
"""

SCRIPT = """
(function () {
  "use strict";
  var view = JSON.parse(document.getElementById("view").textContent);
  var svg = document.getElementById("map");
  var readout = document.getElementById("readout");
  var idle = readout.textContent;
  var rows = document.querySelectorAll("#targets tbody tr[data-target]");
  var lit = [];
  function degrees(value, positive, negative) {
    var text = Math.abs(value).toFixed(view.decimals) + "\\u00b0";
    return value === 0 ? text : text + (value > 0 ? positive : negative);
  }
  function owners(cell) {
    var listed = cell.getAttribute("data-targets");
    if (listed) { return listed.split(" "); }
    var group = cell.parentNode;
    var index = group && group.getAttribute ? group.getAttribute("data-target") : null;
    return index === null ? [] : [index];
  }
  function row(index) {
    return document.querySelector('#targets tbody tr[data-target="' + index + '"]');
  }
  function light(indexes) {
    lit.forEach(function (r) { r.classList.remove("hl"); });
    lit = indexes.map(row).filter(function (r) { return r !== null; });
    lit.forEach(function (r) { r.classList.add("hl"); });
  }
  svg.addEventListener("mousemove", function (event) {
    var matrix = svg.getScreenCTM();
    if (!matrix) { return; }
    var p = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
    var x = view.x0 + p.x / view.scale;
    var y = view.y0 + p.y / view.scale;
    var lng = ((x * 360) % 360 + 360) % 360 - 180;
    var lat = Math.atan(Math.sinh(Math.PI * (1 - 2 * y))) * 180 / Math.PI;
    var text = degrees(lat, "N", "S") + ", " + degrees(lng, "E", "W");
    var cell = event.target.closest ? event.target.closest("[data-cell]") : null;
    var indexes = cell ? owners(cell) : [];
    if (cell) {
      text += " \\u00b7 cell " + cell.getAttribute("data-cell");
      var names = indexes.map(function (i) {
        var r = row(i);
        return r ? r.getAttribute("data-feature") : "";
      });
      if (names.length) { text += " \\u00b7 " + names.join(", "); }
    }
    readout.textContent = text;
    light(indexes);
  });
  svg.addEventListener("mouseleave", function () {
    readout.textContent = idle;
    light([]);
  });
  function mark(index, on) {
    var query = '#map g[data-target="' + index + '"] > .cell, #map .cell[data-targets~="' +
      index + '"]';
    document.querySelectorAll(query).forEach(function (cell) {
      cell.classList.toggle("hl", on);
    });
  }
  rows.forEach(function (r) {
    var index = r.getAttribute("data-target");
    r.addEventListener("mouseenter", function () { mark(index, true); });
    r.addEventListener("mouseleave", function () { mark(index, false); });
  });
})();
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _hash_source(text: str) -> str:
    """A CSP source allowing exactly this inline style or script."""
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return f"'sha256-{digest}'"


def _fixed(units: int, decimals: int) -> str:
    """An integer count of 10**-decimals as the shortest decimal text (``-12.5``)."""
    if decimals == 0:
        return str(units)
    whole, part = divmod(abs(units), 10**decimals)
    sign = "-" if units < 0 else ""
    fraction = f"{part:0{decimals}d}".rstrip("0")
    return f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}"


def _number(value: float, decimals: int = 1) -> str:
    return _fixed(round(value * 10**decimals), decimals)


def _numbers(values: Sequence[int], decimals: int) -> str:
    """Numbers joined the SVG way: a space between them unless a minus sign separates them."""
    out: list[str] = []
    for value in values:
        text = _fixed(value, decimals)
        if out and not text.startswith("-"):
            out.append(" ")
        out.append(text)
    return "".join(out)


def ring_to_path(ring: Sequence[Point], decimals: int) -> str:
    """An SVG path for a closed pixel ring: the first point, then relative steps.

    Steps are taken between the rounded points, so rounding never accumulates.
    """
    factor = 10**decimals
    points = [(round(x * factor), round(y * factor)) for x, y in ring]
    kept = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
    if len(kept) > 1 and kept[-1] == kept[0]:
        kept.pop()
    steps = [
        value for (x1, y1), (x2, y2) in itertools.pairwise(kept) for value in (x2 - x1, y2 - y1)
    ]
    start = _numbers(kept[0], decimals)
    return f"M{start}l{_numbers(steps, decimals)}z" if steps else f"M{start}z"


@dataclass(frozen=True, slots=True)
class _Drawn:
    """One cell projected to world units, with where it belongs on the page."""

    cell: PageCell
    ring: list[Point]
    owners: tuple[int, ...]


def _project(page: ReportPage, index: dict[str, int]) -> list[_Drawn]:
    """Every cell's ring in world units, all on the same side of the antimeridian."""
    import h3.api.basic_int as h3int  # here, not at start-up: see hexpsi.server.cli

    rings: list[list[list[float]]] = []
    centres: list[float] = []
    for cell in page.cells:
        coordinates = cell_to_polygon(cell.cell)["coordinates"]
        assert isinstance(coordinates, list)
        rings.append(coordinates[0][:-1])
        centres.append(h3int.cell_to_latlng(cell.cell)[1])
    start, _ = longitude_window(centres)
    drawn = []
    for cell, ring, centre in zip(page.cells, rings, centres, strict=True):
        shift = shift_into(centre, start)
        drawn.append(
            _Drawn(
                cell=cell,
                ring=[lnglat_to_world(lng + shift, lat) for lng, lat in ring],
                owners=tuple(index[str(feature)] for feature in cell.features),
            )
        )
    return drawn


def _fit(drawn: Sequence[_Drawn], tiles: bool) -> View:
    if drawn:
        xs = [x for d in drawn for x, _ in d.ring]
        ys = [y for d in drawn for _, y in d.ring]
        bounds = (min(xs), min(ys), max(xs), max(ys))
    else:
        bounds = (0.0, 0.0, 1.0, 1.0)
    return fit_view(bounds, MAP_WIDTH, MAP_HEIGHT, padding=PADDING, whole_zoom=tiles)


def _decimals(cell_px: float) -> int:
    """Decimals a coordinate needs: a tenth of a pixel for small cells, less for big ones."""
    if cell_px >= 40:
        return 0
    return 1 if cell_px >= 4 else 2


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _cells_svg(
    page: ReportPage, drawn: Sequence[_Drawn], px_rings: Sequence[list[Point]], decimals: int
) -> list[str]:
    """Two layers (clear or covered cells, then conflicting ones), each grouped by target."""
    out: list[str] = []
    for layer, roles in (
        ("cells", (CellRole.COVERED, CellRole.STRIKE)),
        ("conflicts", (CellRole.CONFLICT,)),
    ):
        groups: dict[int | None, list[str]] = {}
        for item, ring in zip(drawn, px_rings, strict=True):
            if item.cell.role not in roles:
                continue
            classes = "cell conflict" if item.cell.role is CellRole.CONFLICT else "cell"
            shared = (
                f' data-targets="{" ".join(map(str, item.owners))}"' if len(item.owners) > 1 else ""
            )
            groups.setdefault(item.owners[0] if item.owners else None, []).append(
                f'<path class="{classes}" data-cell="{cell_str(item.cell.cell)}"{shared}'
                f' d="{ring_to_path(ring, decimals)}"/>'
            )
        out.append(f'<g id="{layer}">')
        for index in sorted(groups, key=lambda i: -1 if i is None else i):
            if index is None:
                out.append(f'<g class="untargeted" fill="{UNTARGETED}" stroke="{UNTARGETED}">')
            else:
                target = page.targets[index]
                colour = _colour(index)
                verdict = f": {target.verdict}" if target.verdict else ""
                out.append(
                    f'<g class="target" data-target="{index}" data-feature="{_esc(target.id)}"'
                    f' fill="{colour}" stroke="{colour}"><title>{index + 1}. '
                    f"{_esc(target.id)}{verdict}</title>"
                )
            out.extend(groups[index])
            out.append("</g>")
        out.append("</g>")
    return out


def _markers_svg(page: ReportPage, drawn: Sequence[_Drawn], px_rings: Sequence[list[Point]]) -> str:
    """A numbered marker at the middle of each target's cells (few targets only).

    A target drawn smaller than its marker gets the marker beside it, on a short
    line, so the marker does not hide the cells it names.
    """
    if not 0 < len(page.targets) <= MAX_MARKERS:
        return ""
    extents: dict[int, list[float]] = {}
    for item, ring in zip(drawn, px_rings, strict=True):
        xs, ys = [x for x, _ in ring], [y for _, y in ring]
        cx, cy = sum(xs) / len(xs), sum(ys) / len(ys)
        for owner in item.owners:
            e = extents.setdefault(owner, [0.0, 0.0, 0.0, math.inf, math.inf, -math.inf, -math.inf])
            e[0] += cx
            e[1] += cy
            e[2] += 1
            e[3], e[4] = min(e[3], *xs), min(e[4], *ys)
            e[5], e[6] = max(e[5], *xs), max(e[6], *ys)
    out = ['<g id="markers">']
    for index, (sx, sy, n, left, top, right, bottom) in sorted(extents.items()):
        cx, cy = sx / n, sy / n
        x, y = _number(cx), _number(cy)
        leader = ""
        if max(right - left, bottom - top) < 2 * MARKER_RADIUS_PX + 6:
            x, y = _number(right + MARKER_RADIUS_PX + 4), _number(top - MARKER_RADIUS_PX - 4)
            leader = f'<line x1="{_number(right)}" y1="{_number(top)}" x2="{x}" y2="{y}"/>'
        out.append(
            f'<g data-target="{index}">{leader}<circle cx="{x}" cy="{y}" r="{MARKER_RADIUS_PX}"/>'
            f'<text x="{x}" y="{y}">{index + 1}</text></g>'
        )
    out.append("</g>")
    return "".join(out)


def _grid_svg(view: View) -> str:
    """Meridians and parallels with their degrees at the top and right edges."""
    west, south, east, north = view.lnglat_bounds()
    out = ['<g id="grid">']
    lng_step = graticule_step(east - west, 6)
    for lng in graticule_values(west, east, lng_step):
        x = view.to_px(lnglat_to_world(lng, 0.0)[0], 0.0)[0]
        out.append(f'<line x1="{_number(x)}" y1="0" x2="{_number(x)}" y2="{view.height}"/>')
        if x < view.width - LABEL_ROOM_PX:
            label = degrees_label(normalize_lng(lng), lng_step, "E", "W")
            out.append(f'<text x="{_number(x + 3)}" y="12">{label}</text>')
    lat_step = graticule_step(north - south, 4)
    for lat in graticule_values(max(south, -MAX_LAT), min(north, MAX_LAT), lat_step):
        y = view.to_px(0.0, lnglat_to_world(0.0, lat)[1])[1]
        out.append(f'<line x1="0" y1="{_number(y)}" x2="{view.width}" y2="{_number(y)}"/>')
        if y > 2 * LABEL_HEIGHT_PX:
            label = degrees_label(lat, lat_step, "N", "S")
            out.append(
                f'<text x="{view.width - 4}" y="{_number(y - 3)}" text-anchor="end">{label}</text>'
            )
    out.append("</g>")
    return "".join(out)


def _scale_svg(view: View) -> str:
    """A scale bar at the bottom left, true at the view's centre latitude."""
    _, centre_lat = view.px_to_lnglat(view.width / 2, view.height / 2)
    bar = scale_bar(view, centre_lat, SCALE_BAR_PX)
    hemisphere = "N" if centre_lat >= 0 else "S"
    note = f"at {abs(centre_lat):.1f}°{hemisphere}"
    width = _number(max(bar.px, 70.0) + 16)
    return (
        f'<g id="scale" transform="translate(12 {view.height - 50})">'
        f'<rect class="back" x="0" y="0" width="{width}" height="40" rx="3"/>'
        f'<text x="8" y="14">{bar.label}</text>'
        f'<rect class="bar" x="8" y="19" width="{_number(bar.px)}" height="4"/>'
        f'<text x="8" y="35">{note}</text></g>'
    )


def _tiles_svg(view: View, template: str) -> str:
    out = ['<g id="tiles">']
    for tile in tiles_in_view(view):
        out.append(
            f'<image href="{_esc(tile.url(template))}" x="{_number(tile.left)}"'
            f' y="{_number(tile.top)}" width="256" height="256"/>'
        )
    out.append("</g>")
    return "".join(out)


def tile_source(template: str) -> str:
    """The CSP source that allows the tile server's images and nothing else."""
    parts = urlsplit(template.replace("{z}", "0").replace("{x}", "0").replace("{y}", "0"))
    scheme = parts.scheme.lower()
    host = parts.netloc.rpartition("@")[2]
    if scheme and host:
        return f"{scheme}://{host}"
    if scheme:
        return f"{scheme}:"
    return "'self'"


def _map_svg(page: ReportPage) -> tuple[str, View]:
    index = {str(target.id): i for i, target in enumerate(page.targets)}
    drawn = _project(page, index)
    view = _fit(drawn, page.tiles is not None)
    px_rings = [[view.to_px(x, y) for x, y in item.ring] for item in drawn]
    widths = [
        max(x for x, _ in r) - min(x for x, _ in r)
        for r in px_rings[:: max(1, len(px_rings) // 1000)]
    ]
    cell_px = statistics.median(widths) if widths else 0.0
    stroke = _number(min(1.0, max(0.25, cell_px / 10)), 2)
    parts = [
        f'<svg id="map" viewBox="0 0 {view.width} {view.height}" width="{view.width}"'
        f' height="{view.height}" role="img" aria-label="{_esc(page.title)}"'
        f' stroke-width="{stroke}">',
        f'<rect class="sea" width="{view.width}" height="{view.height}"/>',
        _tiles_svg(view, page.tiles) if page.tiles else "",
        _grid_svg(view),
        *_cells_svg(page, drawn, px_rings, _decimals(cell_px)),
        _markers_svg(page, drawn, px_rings),
        _scale_svg(view),
        "</svg>",
    ]
    return "".join(parts), view


def _facts_html(page: ReportPage) -> str:
    rows = "".join(
        f"<tr><th>{_esc(label)}</th><td>{_esc(value)}</td></tr>" for label, value in page.facts
    )
    return f'<h2>Facts</h2><table class="facts"><tbody>{rows}</tbody></table>'


def _swatch(fill: str, stroke: str) -> str:
    return (
        f'<svg class="swatch" width="14" height="14"><rect x="1" y="1" width="12" height="12"'
        f' fill="{fill}" fill-opacity=".6" stroke="{stroke}"/></svg>'
    )


def _legend_html(page: ReportPage) -> str:
    roles = {cell.role for cell in page.cells}
    items = []
    if CellRole.CONFLICT in roles:
        items.append(f"<li>{_swatch('#d62728', '#7a0c10')}conflicting strike cell</li>")
    if CellRole.STRIKE in roles:
        items.append(f"<li>{_swatch(PALETTE[0], PALETTE[0])}clear strike cell</li>")
    if CellRole.COVERED in roles:
        items.append(f"<li>{_swatch(PALETTE[0], PALETTE[0])}covered cell</li>")
    if page.targets:
        numbered = " and numbers" if len(page.targets) <= MAX_MARKERS else ""
        items.append(f"<li>cell colours{numbered}: the targets below</li>")
    return f'<h2>Legend</h2><ul class="legend">{"".join(items)}</ul>'


def _targets_html(page: ReportPage) -> str:
    checked = any(target.verdict is not None for target in page.targets)
    head = "<th>#</th><th>target</th><th>cells</th>"
    if checked:
        head += "<th>conflicting</th><th>verdict</th>"
    rows = []
    for i, target in enumerate(page.targets):
        cells = f'<td class="n">{target.cells:,}</td>'
        if checked:
            verdict = target.verdict or ""
            conflicting = "" if target.conflicting is None else f"{target.conflicting:,}"
            cells += (
                f'<td class="n">{conflicting}</td>'
                f'<td class="v-{str(verdict).lower()}">{verdict}</td>'
            )
        rows.append(
            f'<tr data-target="{i}" data-feature="{_esc(target.id)}">'
            f"<td>{_swatch(_colour(i), _colour(i))}{i + 1}</td><td>{_esc(target.id)}</td>"
            f"{cells}</tr>"
        )
    if not rows:
        return ""
    return (
        f'<h2>Targets</h2><table id="targets"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def page_to_html(page: ReportPage) -> str:
    """The page as one HTML document that needs nothing but itself (and the named tiles)."""
    svg, view = _map_svg(page)
    degrees_per_px = 360.0 / view.scale
    view_json = json.dumps(
        {
            "x0": view.x0,
            "y0": view.y0,
            "scale": view.scale,
            "decimals": max(0, min(8, math.ceil(-math.log10(degrees_per_px)))),
        }
    )
    image_source = tile_source(page.tiles) if page.tiles else "'none'"
    policy = (
        f"default-src 'none'; style-src {_hash_source(STYLE)}; "
        f"script-src {_hash_source(SCRIPT)}; img-src {image_source}; "
        "base-uri 'none'; form-action 'none'"
    )
    badge = (
        f'<span class="badge {page.verdict.lower()}">{page.verdict}</span>' if page.verdict else ""
    )
    return "".join(
        [
            "<!DOCTYPE html>\n",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{_esc(policy)}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_esc(page.title)}</title>",
            f"<style>{STYLE}</style></head>\n<body>",
            f"<header><h1>{_esc(page.title)}</h1>",
            f'<p class="summary">{badge}{_esc(page.summary)}</p></header>\n'
            if page.summary or badge
            else "</header>\n",
            "<main><figure>",
            svg,
            '<figcaption id="readout">Move the pointer over the map for latitude and longitude.'
            "</figcaption></figure>\n<aside>",
            _facts_html(page),
            _legend_html(page),
            _targets_html(page),
            "</aside></main>\n",
            f'<script type="application/json" id="view">{view_json}</script>',
            f"<script>{SCRIPT}</script>\n</body></html>\n",
        ]
    )
