"""A real headless Chromium for page tests: screenshots, the DOM after scripts ran, PNG pixels.

Chromium runs with a fresh profile and without background networking (this
machine's closed network refuses those connections). Without a browser a test
is skipped, unless ``HEXPSI_REQUIRE_BROWSER=1`` (CI sets it), then it fails.
PNGs are decoded with zlib and struct alone: 8-bit RGB or RGBA, not interlaced,
which is what Chromium writes.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

REQUIRE_ENV = "HEXPSI_REQUIRE_BROWSER"
NAMES = ("chromium", "chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
TIMEOUT_S = 60


def chromium() -> str:
    """The browser's path; skips the test without one, or fails it when CI requires one."""
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    message = f"no {' or '.join(NAMES)} on PATH"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message}, and {REQUIRE_ENV}=1 requires a browser")
    pytest.skip(message)


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    with tempfile.TemporaryDirectory(prefix="hexpsi-chromium-") as profile:
        done = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done


def screenshot(url: str, out: Path, *, width: int, height: int) -> bytes:
    """A PNG of the page at ``url`` in a ``width`` x ``height`` window."""
    _run(f"--screenshot={out}", f"--window-size={width},{height}", url)
    return out.read_bytes()


def dump_dom(url: str, *, width: int, height: int) -> str:
    """The page's DOM after its scripts ran (in a ``width`` x ``height`` window), as HTML."""
    return _run(
        f"--window-size={width},{height}", "--virtual-time-budget=2000", "--dump-dom", url
    ).stdout.decode()


# --- PNG -------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    rows: list[list[tuple[int, int, int]]]
    """Pixels as RGB, row by row from the top (alpha dropped)."""

    def region(
        self, left: int, top: int, right: int, bottom: int
    ) -> Iterator[tuple[int, int, int]]:
        for row in self.rows[top:bottom]:
            yield from row[left:right]


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> bytearray:
    if kind == 0:
        return line
    if kind == 2:
        return bytearray((x + b) & 0xFF for x, b in zip(line, previous, strict=True))
    out = bytearray(len(line))
    for i, x in enumerate(line):
        a = out[i - bpp] if i >= bpp else 0
        if kind == 1:
            out[i] = (x + a) & 0xFF
        elif kind == 3:
            out[i] = (x + (a + previous[i]) // 2) & 0xFF
        elif kind == 4:
            c = previous[i - bpp] if i >= bpp else 0
            out[i] = (x + _paeth(a, previous[i], c)) & 0xFF
        else:
            raise AssertionError(f"unknown PNG filter type {kind}")
    return out


def decode_png(data: bytes) -> Image:
    """An 8-bit RGB or RGBA, non-interlaced PNG's pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, header, compressed = 8, b"", bytearray()
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            compressed += body
        elif kind == b"IEND":
            break
        offset += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0), (depth, interlace)
    assert colour in (2, 6), f"colour type {colour}"
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(bytes(compressed))
    stride = width * bpp
    previous = bytearray(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        line = _unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous, bpp)
        rows.append([(line[i], line[i + 1], line[i + 2]) for i in range(0, stride, bpp)])
        previous = line
    return Image(width, height, rows)


def bounding_box(image: Image, colour: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """Left, top, right, bottom (exclusive) of the pixels of exactly ``colour``."""
    xs: list[int] = []
    ys: list[int] = []
    for y, row in enumerate(image.rows):
        found = [x for x, pixel in enumerate(row) if pixel == colour]
        if found:
            xs += (found[0], found[-1])
            ys.append(y)
    assert xs, f"no pixel of colour {colour}: the map is not on the screenshot"
    return min(xs), min(ys), max(xs) + 1, max(ys) + 1


def colours(pixels: Iterator[tuple[int, int, int]]) -> Counter[tuple[int, int, int]]:
    return Counter(pixels)


# --- DOM -------------------------------------------------------------------------


VOID = frozenset(
    ("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr")
)


@dataclass(frozen=True)
class Element:
    tag: str
    attrs: dict[str, str]
    target: str | None
    """The ``data-target`` of the nearest enclosing element that has one."""

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class Elements(HTMLParser):
    """Every start tag with its attributes and enclosing target group, in document order."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.found: list[Element] = []
        self._open: list[tuple[str, str | None]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        enclosing = self._open[-1][1] if self._open else None
        self.found.append(Element(tag, values, enclosing))
        if tag not in VOID:
            self._open.append((tag, values.get("data-target", enclosing)))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def with_class(self, *names: str) -> list[Element]:
        """The elements whose class list holds every one of ``names``."""
        return [element for element in self.found if set(names) <= element.classes]
