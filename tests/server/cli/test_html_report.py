"""Report pages in a real headless Chromium, and their text: drawn, counted, self-contained.

The browser tests open the page from a ``file://`` URL, count the cells in
the DOM after its scripts ran against what the same command printed (``encode
--format json``) or what the check reported, and decode the screenshot to see
the map was really painted: the map's background colour frames it, and a good
share of it is in the cells' colours. A blank page, a map without cells or
counts that differ all fail.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import re
from pathlib import Path

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.geo.cover import cover_area_km2, feature_to_cover
from hexpsi.protocol.geo.shapes import Circle, Feature, FeatureId
from hexpsi.protocol.geo.zone import StrikeZone
from hexpsi.protocol.times import rfc3339
from hexpsi.server.cli.formats import Encoding, FeatureCells
from hexpsi.server.cli.html_report import PALETTE, page_to_html
from hexpsi.server.cli.main import main
from hexpsi.server.cli.report_page import TargetResult, Verdict, check_to_page, encoding_to_page
from hexpsi.server.clients.check import CheckReport, run_check
from hexpsi.server.services.app import RunningServer
from tests.server.cli.headless import (
    Elements,
    Image,
    bounding_box,
    colours,
    decode_png,
    dump_dom,
    screenshot,
)
from tests.server.conftest import CENTER, FAR, OUTPOST, PROTECTED, RES, RESPONDER, Pair

SEA = (0xE9, 0xEE, 0xF2)
"""The map's background (``.sea``): the screenshot's map is where this colour is."""
CONFLICT = (0xD6, 0x27, 0x28)
WINDOW = (1000, 800)
STRIKE_RADIUS_M = 700.0

NEARBY = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "garrison",
            "properties": {"radius_m": 400},
            "geometry": {"type": "Point", "coordinates": [38.618, 33.506]},
        },
        {
            "type": "Feature",
            "id": "road",
            "properties": {"buffer_m": 60},
            "geometry": {
                "type": "LineString",
                "coordinates": [[38.605, 33.500], [38.630, 33.512]],
            },
        },
        {
            "type": "Feature",
            "id": 3,
            "properties": {"radius_m": 300},
            "geometry": {"type": "Point", "coordinates": [38.634, 33.495]},
        },
    ],
}
"""Three targets within 3 km: a disc, a road through it (cells shared) and a disc apart."""


def blend(colour: str | tuple[int, int, int], opacity: float) -> tuple[int, int, int]:
    """``colour`` painted at ``opacity`` over the map's background."""
    rgb = (
        colour
        if isinstance(colour, tuple)
        else (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))
    )
    return (
        round(rgb[0] * opacity + SEA[0] * (1 - opacity)),
        round(rgb[1] * opacity + SEA[1] * (1 - opacity)),
        round(rgb[2] * opacity + SEA[2] * (1 - opacity)),
    )


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int], tolerance: int = 4) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def map_pixels(png: bytes) -> tuple[Image, tuple[int, int, int, int]]:
    """The screenshot and the box of its map (where the background colour is)."""
    image = decode_png(png)
    box = bounding_box(image, SEA)
    left, top, right, bottom = box
    assert right - left >= 600, f"the map is only {right - left} px wide"
    assert bottom - top >= 400, f"the map is only {bottom - top} px high"
    return image, box


def assert_painted(
    image: Image, box: tuple[int, int, int, int], fill: tuple[int, int, int], share: float
) -> int:
    """The map is not blank: many colours, a good share not background, and at least
    ``share`` of it in the cells' ``fill``.

    Returns how many pixels have the cells' fill colour.
    """
    seen = colours(image.region(*box))
    total = sum(seen.values())
    assert len(seen) >= 30, f"only {len(seen)} colours in the map"
    assert 1 - seen[SEA] / total >= 0.15, f"{seen[SEA] / total:.0%} of the map is background"
    filled = sum(count for colour, count in seen.items() if near(colour, fill))
    assert filled >= share * total, f"{filled} of {total} map pixels have the cells' fill {fill}"
    return filled


def target_cells(elements: Elements, index: int) -> set[str]:
    """The cells a page draws for target ``index``: in its group, or listing it."""
    return {
        element.attrs["data-cell"]
        for element in elements.with_class("cell")
        if element.target == str(index)
        or str(index) in element.attrs.get("data-targets", "").split()
    }


# --- encode --html -----------------------------------------------------------------


@pytest.fixture
def nearby(tmp_path: Path) -> Path:
    path = tmp_path / "nearby.geojson"
    path.write_text(json.dumps(NEARBY))
    return path


def encode_with_page(
    capsys: pytest.CaptureFixture[str], source: Path, page: Path, *extra: str
) -> dict[str, object]:
    code = main(["encode", str(source), "--format", "json", "--html", str(page), *extra])
    out, err = capsys.readouterr()
    assert code == 0
    assert err.startswith("read "), "only the line saying what was read"
    assert err.count("\n") == 1
    result: dict[str, object] = json.loads(out)
    return result


def test_an_encode_page_draws_every_cell_in_a_browser(
    capsys: pytest.CaptureFixture[str], nearby: Path, tmp_path: Path
) -> None:
    page = tmp_path / "encode.html"
    result = encode_with_page(capsys, nearby, page)
    features = result["features"]
    assert isinstance(features, list)
    assert isinstance(result["cells"], list)

    elements = Elements(dump_dom(page.as_uri(), width=WINDOW[0], height=WINDOW[1]))
    cells = elements.with_class("cell")
    assert len(cells) == result["count"]
    assert {c.attrs["data-cell"] for c in cells} == set(result["cells"])
    assert elements.with_class("cell", "conflict") == []
    for index, feature in enumerate(features):
        assert target_cells(elements, index) == set(feature["cells"]), feature["id"]
    shared = [c for c in cells if "data-targets" in c.attrs]
    assert shared, "the road shares cells with the garrison"
    rows = [
        e.attrs["data-feature"]
        for e in elements.found
        if e.tag == "tr" and e.attrs.get("data-target")
    ]
    assert rows == ["garrison", "road", "3"]

    image, box = map_pixels(
        screenshot(page.as_uri(), tmp_path / "encode.png", width=WINDOW[0], height=WINDOW[1])
    )
    assert_painted(image, box, blend(PALETTE[0], 0.5), 0.05)


def probe_page(page: Path, probe: str) -> Path:
    """A copy of ``page`` that runs ``probe`` after the page's own script (allowed by hash)."""
    text = page.read_text()
    digest = base64.b64encode(hashlib.sha256(probe.encode()).digest()).decode()
    text = text.replace("script-src ", f"script-src &#x27;sha256-{digest}&#x27; ", 1)
    text = text.replace("</body>", f"<script>{probe}</script></body>", 1)
    copy = page.with_name(f"probe-{page.name}")
    copy.write_text(text)
    return copy


HOVER_PROBE = """
window.addEventListener("load", function () {
  var out = [];
  var readout = document.getElementById("readout");
  document.querySelectorAll("#map path.cell").forEach(function (path, i) {
    if (i % 4 !== 0) { return; }
    var box = path.getBBox();
    var p = new DOMPoint(box.x + box.width / 2, box.y + box.height / 2)
      .matrixTransform(path.getScreenCTM());
    var target = document.elementFromPoint(p.x, p.y);
    target.dispatchEvent(new MouseEvent("mousemove", {clientX: p.x, clientY: p.y, bubbles: true}));
    out.push({cell: path.getAttribute("data-cell"), hit: target.getAttribute("data-cell"),
              text: readout.textContent});
  });
  var row = document.querySelector('#targets tbody tr[data-target="1"]');
  row.dispatchEvent(new MouseEvent("mouseenter"));
  var lit = document.querySelectorAll("#map .cell.hl").length;
  var outside = document.getElementById("outside");
  document.body.setAttribute("data-probe", JSON.stringify({
    hovers: out, lit: lit, outside_loaded: outside.naturalWidth
  }));
});
"""


def test_the_pointer_shows_latitude_longitude_and_cell(
    capsys: pytest.CaptureFixture[str], nearby: Path, tmp_path: Path
) -> None:
    """The page's script inverts the projection: the position it shows under a cell's
    middle lies in that cell. Hovering a table row lights that target's cells, and the
    page's policy keeps even a local image out."""
    page = tmp_path / "encode.html"
    result = encode_with_page(capsys, nearby, page)
    features = result["features"]
    assert isinstance(features, list)
    probe = probe_page(page, HOVER_PROBE)
    text = probe.read_text().replace(
        "</aside>", f'<img id="outside" src="{(tmp_path / "marker.svg").as_uri()}"></aside>', 1
    )
    (tmp_path / "marker.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8">'
        '<rect width="8" height="8"/></svg>'
    )
    probe.write_text(text)

    dom = dump_dom(probe.as_uri(), width=WINDOW[0], height=WINDOW[1])
    [body] = [e for e in Elements(dom).found if e.tag == "body"]
    report = json.loads(body.attrs["data-probe"])
    assert len(report["hovers"]) >= 5
    for hover in report["hovers"]:
        assert hover["hit"] == hover["cell"]
        match = re.fullmatch(
            r"([\d.]+)°([NS]), ([\d.]+)°([EW]) · cell ([0-9a-f]+) · (.+)", hover["text"]
        )
        assert match, hover["text"]
        lat = float(match[1]) * (1 if match[2] == "N" else -1)
        lng = float(match[3]) * (1 if match[4] == "E" else -1)
        assert h3.latlng_to_cell(lat, lng, 9) == int(hover["cell"], 16), hover
        assert match[5] == hover["cell"]
        owners = {str(f["id"]) for f in features if hover["cell"] in f["cells"]}
        assert set(match[6].split(", ")) == owners
    assert report["lit"] == features[1]["count"]
    assert report["outside_loaded"] == 0


# --- a check's page ----------------------------------------------------------------


def clear_spot() -> int:
    """A res-9 cell about 3.5 km from the garrison whose disc holds nothing protected."""
    far_from_outpost: int = max(
        h3.grid_ring(CENTER, 10), key=lambda cell: h3.grid_distance(cell, OUTPOST)
    )
    lat, lng = h3.cell_to_latlng(far_from_outpost)
    disc = Feature("x", (Circle((lat, lng), STRIKE_RADIUS_M),))
    assert not feature_to_cover(disc, RES) & PROTECTED
    return far_from_outpost


def zone_targets(report: CheckReport) -> dict[FeatureId, TargetResult]:
    """Each strike feature's verdict and cells, as the check command will hand them over."""
    assert report.zone is not None
    covers = {f.id: frozenset(feature_to_cover(f, RES)) for f in report.zone.features}
    conflicting = report.result.conflicting_cells
    return {fid: (bool(cells & conflicting), cells) for fid, cells in covers.items()}


async def test_a_check_page_marks_the_conflicting_cells_in_a_browser(
    pair: Pair, served: RunningServer, tmp_path: Path
) -> None:
    lat, lng = h3.cell_to_latlng(CENTER)
    clear_lat, clear_lng = h3.cell_to_latlng(clear_spot())
    zone = StrikeZone(
        (
            Feature("strike-garrison", (Circle((lat, lng), STRIKE_RADIUS_M),)),
            Feature("strike-clear", (Circle((clear_lat, clear_lng), STRIKE_RADIUS_M),)),
        )
    )
    report = await run_check(pair.proposer, RESPONDER, zone)
    assert report.result.conflict
    targets = zone_targets(report)
    assert [flag for flag, _ in targets.values()] == [True, False]
    page = tmp_path / "check.html"
    page.write_text(page_to_html(check_to_page(report, targets)))

    elements = Elements(dump_dom(page.as_uri(), width=WINDOW[0], height=WINDOW[1]))
    cells = elements.with_class("cell")
    conflicts = elements.with_class("cell", "conflict")
    assert len(cells) == len(report.strike_cells)
    assert len(conflicts) == len(report.result.conflicting_cells) > 0
    assert {int(c.attrs["data-cell"], 16) for c in cells} == report.strike_cells
    assert {int(c.attrs["data-cell"], 16) for c in conflicts} == report.result.conflicting_cells
    for index, (_, target_strike) in enumerate(targets.values()):
        assert target_cells(elements, index) == {format(c, "x") for c in target_strike}
    text = page.read_text()
    descriptor = report.descriptor.descriptor
    for shown in (
        RESPONDER,
        report.receipt_id,
        report.result.epoch_id.hex(),
        f"<th>Epoch sequence</th><td>{descriptor.sequence}</td>",
    ):
        assert shown in text
    for moment in re.findall(r"<th>Epoch (?:created|valid until)</th><td>([^<]+)</td>", text):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", moment)
    verdicts = re.findall(r'<td class="v-(\w+)">', text)
    assert verdicts == ["conflict", "clear"]

    image, box = map_pixels(
        screenshot(page.as_uri(), tmp_path / "check.png", width=WINDOW[0], height=WINDOW[1])
    )
    red = assert_painted(image, box, blend(CONFLICT, 0.85), 0.02)
    clear = sum(1 for pixel in image.region(*box) if near(pixel, blend(PALETTE[1], 0.5)))
    assert clear > 0.02 * red, "the clear target's cells are painted in its own colour"


async def test_a_check_page_names_peer_epoch_receipt_and_each_verdict(
    pair: Pair, served: RunningServer
) -> None:
    lat, lng = h3.cell_to_latlng(CENTER)
    zone = StrikeZone((Feature("garrison", (Circle((lat, lng), 300.0),)),))
    report = await run_check(pair.proposer, RESPONDER, zone)
    targets = zone_targets(report)
    page = check_to_page(report, targets)
    facts = dict(page.facts)
    descriptor = report.descriptor.descriptor
    assert facts["Peer"] == RESPONDER
    assert facts["Verdict"] == "CONFLICT"
    assert facts["Receipt"] == report.receipt_id
    assert facts["Epoch sequence"] == str(descriptor.sequence)
    assert facts["Epoch id"] == report.result.epoch_id.hex()
    assert facts["Epoch created"] == rfc3339(descriptor.created_at)
    assert facts["Epoch valid until"] == rfc3339(descriptor.valid_until)
    assert facts["Checked at"] == rfc3339(report.received_at)
    conflicting = len(report.result.conflicting_cells)
    assert facts["Conflicting cells"] == f"{conflicting} of {len(report.strike_cells)}"
    [target] = page.targets
    assert (target.id, target.verdict, target.cells) == (
        "garrison",
        Verdict.CONFLICT,
        len(report.strike_cells),
    )
    assert target.conflicting == conflicting
    text = page_to_html(page)
    for label, value in page.facts:
        assert f"<th>{label}</th><td>{html.escape(value)}</td>" in text
    # Cells the report did not strike are a caller's mistake, not something to draw.
    with pytest.raises(ValueError, match="outside the strike"):
        check_to_page(report, {"garrison": (True, {*report.strike_cells, FAR})})
    # A check of bare cells has no targets; its cells are still all drawn.
    bare = check_to_page(report, {})
    assert len(bare.cells) == len(report.strike_cells)
    assert text.count('class="cell') == page_to_html(bare).count('class="cell')


# --- the page's text ---------------------------------------------------------------

REFERENCE = re.compile(r"""(?:\b(?:src|href)\s*=\s*["']?([^"'\s>]*))|url\(\s*["']?([^"')]*)""")


def references(text: str) -> list[str]:
    """Every src, href and url() value in a page."""
    return [a or b for a, b in REFERENCE.findall(text)]


def page_policy(text: str) -> dict[str, str]:
    [policy] = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text)
    directives = (d.strip().split(" ", 1) for d in html.unescape(policy).split(";"))
    return dict(directives)


def test_without_tiles_the_page_loads_nothing_from_anywhere(
    capsys: pytest.CaptureFixture[str], nearby: Path, tmp_path: Path
) -> None:
    page = tmp_path / "page.html"
    encode_with_page(capsys, nearby, page)
    text = page.read_text()
    assert references(text) == []
    for external in ("http:", "https:", "//", "@import", "<link", "<iframe", "<object"):
        assert external not in text, external
    policy = page_policy(text)
    assert policy["default-src"] == "'none'"
    assert policy["img-src"] == "'none'"
    assert policy["script-src"].startswith("'sha256-")
    assert text.count("<script>") == 1


@pytest.mark.parametrize(
    ("template", "source"),
    [
        ("https://tiles.example.org:8443/osm/{z}/{x}/{y}.png", "https://tiles.example.org:8443"),
        ("http://10.0.0.5/{z}/{y}/{x}.jpg?style=dark&v=2", "http://10.0.0.5"),
        ("file:///srv/tiles/{z}/{x}/{y}.png", "file:"),
        ("tiles/{z}/{x}/{y}.png", "'self'"),
    ],
)
def test_with_tiles_only_the_tile_server_is_referenced(
    capsys: pytest.CaptureFixture[str], nearby: Path, tmp_path: Path, template: str, source: str
) -> None:
    page = tmp_path / "page.html"
    encode_with_page(capsys, nearby, page, "--tiles", template)
    text = page.read_text()
    found = [html.unescape(r) for r in references(text)]
    pattern = re.escape(template).replace(r"\{z\}", "(\\d+)").replace(r"\{x\}", "(\\d+)")
    pattern = pattern.replace(r"\{y\}", "(\\d+)")
    assert 4 <= len(found) <= 20
    assert all(re.fullmatch(pattern, url) for url in found), found
    assert len({(m := re.fullmatch(pattern, url)) and m.groups() for url in found}) == len(found)
    policy = page_policy(text)
    assert policy["img-src"] == source
    assert policy["default-src"] == "'none'"
    rest = text
    for url in set(references(text)):
        rest = rest.replace(url, "")
    rest = rest.replace(html.escape(template), "")  # the facts name the base map
    if source.startswith("http"):
        rest = rest.replace(source, "", 1)
    for external in ("http:", "https:", "//"):
        assert external not in rest, external


@pytest.mark.parametrize(
    ("tiles", "message"),
    [
        ("https://t.example/{z}/{x}.png", "lacks {y}"),
        ("https://{s}.t.example/{z}/{x}/{y}.png", "a placeholder other than"),
        ("https://t.example/{z}/{x}/{y}.png tiles", "whitespace"),
    ],
)
def test_a_bad_tile_template_is_one_line(
    capsys: pytest.CaptureFixture[str], nearby: Path, tmp_path: Path, tiles: str, message: str
) -> None:
    page = tmp_path / "page.html"
    code = main(["encode", str(nearby), "--html", str(page), "--tiles", tiles])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert message in err
    assert err.count("\n") == 1
    assert not page.exists()


def test_tiles_need_a_page(capsys: pytest.CaptureFixture[str], nearby: Path) -> None:
    code = main(["encode", str(nearby), "--tiles", "https://t.example/{z}/{x}/{y}.png"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert "--tiles draws a base map under --html, which is not given" in err


def test_the_same_input_gives_the_same_page(
    capsys: pytest.CaptureFixture[str], nearby: Path, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.html", tmp_path / "b.html"
    encode_with_page(capsys, nearby, first)
    encode_with_page(capsys, nearby, second)
    assert first.read_bytes() == second.read_bytes()


def test_the_page_replaces_its_file_and_keeps_stdout_for_the_format(
    capsys: pytest.CaptureFixture[str], nearby: Path, tmp_path: Path
) -> None:
    page = tmp_path / "page.html"
    page.write_text("old")
    assert main(["encode", str(nearby), "--format", "csv", "--html", str(page)]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("cell,feature_id\n")
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nearby.geojson", "page.html"]


def test_feature_ids_and_titles_are_text_not_markup(tmp_path: Path) -> None:
    hostile = '<script>alert("x")</script>'
    cells = frozenset(h3.grid_disk(CENTER, 1))
    encoding = Encoding(9, (FeatureCells(hostile, cells),), cells, cover_area_km2(cells))
    text = page_to_html(encoding_to_page(encoding, source='"><img src=x>'))
    assert hostile not in text
    assert html.escape(hostile) in text
    assert "<img" not in text
    assert text.count("<script") == 2  # the view's numbers and the page's own script


def path_points(d: str) -> list[tuple[float, float]]:
    """The absolute points of an ``M x y l dx dy ... z`` path."""
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", d)]
    x, y = numbers[0], numbers[1]
    points = [(x, y)]
    for dx, dy in zip(numbers[2::2], numbers[3::2], strict=True):
        x, y = x + dx, y + dy
        points.append((x, y))
    return points


def drawn_rings(text: str) -> dict[str, list[tuple[float, float]]]:
    return {
        cell: path_points(d)
        for cell, d in re.findall(r'data-cell="([0-9a-f]+)"[^>]* d="([^"]+)"', text)
    }


def cells_page(cells: frozenset[int]) -> str:
    encoding = Encoding(
        h3.get_resolution(min(cells)), (FeatureCells("x", cells),), cells, cover_area_km2(cells)
    )
    return page_to_html(encoding_to_page(encoding, source="cells"))


def test_paths_are_the_cells_corners_rounded_to_the_view() -> None:
    text = cells_page(frozenset(h3.grid_disk(CENTER, 2)))
    rings = drawn_rings(text)
    assert len(rings) == 19
    for ring in rings.values():
        assert len(ring) == 6
        xs = [x for x, _ in ring]
        assert 40 <= max(xs) - min(xs) <= 300  # 19 cells fill a 960 x 640 map
    for d in re.findall(r' d="([^"]+)"', text):
        assert not re.search(r"\.\d{2}", d)  # big cells: whole pixels or tenths


@pytest.mark.parametrize("res", [3, 9])
def test_cells_across_the_antimeridian_are_drawn_side_by_side(res: int) -> None:
    east = h3.latlng_to_cell(0.0, 179.99, res)
    west = h3.latlng_to_cell(0.0, -179.99, res)
    cells = frozenset(h3.grid_disk(east, 2)) | frozenset(h3.grid_disk(west, 2))
    rings = drawn_rings(cells_page(cells))
    assert len(rings) == len(cells)
    points = [p for ring in rings.values() for p in ring]
    xs, ys = [x for x, _ in points], [y for _, y in points]
    assert min(xs) >= 0
    assert max(xs) <= 960
    assert min(ys) >= 0
    assert max(ys) <= 640
    # Fitted together: the group spans most of the map, each cell far more than a pixel.
    assert max(max(xs) - min(xs), max(ys) - min(ys)) >= 500
    for ring in rings.values():
        assert max(x for x, _ in ring) - min(x for x, _ in ring) > 30


def test_a_cell_on_the_pole_is_drawn_to_the_maps_edge() -> None:
    pole = h3.latlng_to_cell(90.0, 0.0, 2)
    cells = frozenset(h3.grid_disk(pole, 1))
    rings = drawn_rings(cells_page(cells))
    assert set(rings) == {format(cell, "x") for cell in cells}
    points = [p for ring in rings.values() for p in ring]
    assert all(0 <= x <= 960 and 0 <= y <= 640 for x, y in points)


def test_a_page_on_stdout_needs_the_listing_elsewhere(
    capsys: pytest.CaptureFixture[str], nearby: Path, tmp_path: Path
) -> None:
    code = main(["encode", str(nearby), "--html", "-"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert "--html - and the cell listing would both go to stdout" in err
    listing = tmp_path / "cells.json"
    assert main(["encode", str(nearby), "--html", "-", "-o", str(listing)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("<!DOCTYPE html>")
    assert json.loads(listing.read_text())["count"] == out.count('class="cell')


async def test_check_html_draws_what_the_json_answer_says(
    pair: Pair, served: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hexpsi check --json --html``: the page in a browser shows as many cells and as many
    conflicting cells as the JSON answer of the same command."""
    lat, lng = h3.cell_to_latlng(CENTER)
    strike = tmp_path / "strike.geojson"
    strike.write_text(
        json.dumps(
            {
                "type": "Feature",
                "id": "garrison",
                "properties": {"radius_m": STRIKE_RADIUS_M},
                "geometry": {"type": "Point", "coordinates": [lng, lat]},
            }
        )
    )
    page = tmp_path / "answer.html"
    argv = ["check", str(pair.proposer.directory), str(strike), "--peer", RESPONDER, "--json"]
    assert await asyncio.to_thread(main, [*argv, "--html", str(page)]) == 0
    answer = json.loads(capsys.readouterr().out)
    elements = Elements(dump_dom(page.as_uri(), width=WINDOW[0], height=WINDOW[1]))
    assert len(elements.with_class("cell")) == answer["strike_cells"]
    conflicting = {c.attrs["data-cell"] for c in elements.with_class("cell", "conflict")}
    assert conflicting == set(answer["conflicting_cells"])
    assert answer["receipt"] in page.read_text()
