"""The report page model: built from an encoding, checked when built, tile templates.

``check_to_page`` runs on a real check in ``test_html_report.py``.
"""

from __future__ import annotations

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.cover import cover_area_km2
from hexpsi.server.cli.formats import Encoding, FeatureCells
from hexpsi.server.cli.report_page import (
    CellRole,
    PageCell,
    PageTarget,
    ReportPage,
    check_tiles_template,
    encoding_to_page,
)

CENTER = h3.latlng_to_cell(33.5, 38.6, 9)


def encoding() -> Encoding:
    disc = frozenset(h3.grid_disk(CENTER, 1))
    beside = frozenset(h3.grid_disk(h3.grid_ring(CENTER, 2)[0], 1))
    union = disc | beside
    return Encoding(
        9, (FeatureCells("disc", disc), FeatureCells(2, beside)), union, cover_area_km2(union)
    )


def test_an_encoding_page_lists_every_cell_with_the_features_covering_it() -> None:
    page = encoding_to_page(encoding(), source="in.geojson")
    enc = encoding()
    assert [c.cell for c in page.cells] == sorted(enc.cells)
    assert {c.role for c in page.cells} == {CellRole.COVERED}
    for cell in page.cells:
        expected = tuple(f.id for f in enc.features if cell.cell in f.cells)
        assert cell.features == expected
    assert any(len(c.features) == 2 for c in page.cells)
    assert page.targets == (PageTarget("disc", 7), PageTarget(2, 7))
    assert dict(page.facts)["Cells"] == str(len(enc.cells))
    assert page.verdict is None
    assert page.tiles is None
    assert "Base map" not in dict(page.facts)
    tiled = encoding_to_page(enc, source="in.geojson", tiles="https://t.example/{z}/{x}/{y}")
    assert dict(tiled.facts)["Base map"] == "https://t.example/{z}/{x}/{y}"


def test_a_page_refuses_what_it_could_not_draw_faithfully() -> None:
    cell = PageCell(CENTER, CellRole.COVERED, ("a",))
    with pytest.raises(ValueError, match="unique"):
        ReportPage("t", (cell,), (PageTarget("a", 1), PageTarget("a", 1)), ())
    with pytest.raises(ValueError, match="unique"):
        ReportPage("t", (), (PageTarget(2, 1), PageTarget("2", 1)), ())
    with pytest.raises(ValueError, match="unknown targets"):
        ReportPage("t", (PageCell(CENTER, CellRole.COVERED, ("b",)),), (PageTarget("a", 1),), ())
    with pytest.raises(ValueError, match="twice"):
        ReportPage("t", (cell, cell), (PageTarget("a", 1),), ())
    with pytest.raises(InputError, match="lacks"):
        ReportPage("t", (cell,), (PageTarget("a", 1),), (), tiles="https://t.example/{z}")


@pytest.mark.parametrize(
    "template",
    [
        "https://tiles.example.org/{z}/{x}/{y}.png",
        "http://127.0.0.1:8080/styles/base/{z}/{x}/{y}@2x.png?key=abc",
        "file:///srv/tiles/{z}/{y}/{x}.jpg",
        "tiles/{z}/{x}/{y}.png",
    ],
)
def test_tile_templates_that_name_z_x_and_y(template: str) -> None:
    assert check_tiles_template(template) == template


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("https://t.example/{x}/{y}.png", "lacks {z}"),
        ("https://t.example/tiles.png", "lacks {z}, {x}, {y}"),
        ("https://{s}.t.example/{z}/{x}/{y}.png", "placeholder other than"),
        ("https://t.example/{z}/{x}/{-y}.png", "lacks {y}"),
        ("https://t.example/{z}/{x}/{y}.png\n", "whitespace"),
    ],
)
def test_tile_templates_refused(template: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_tiles_template(template)
