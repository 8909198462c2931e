"""The input options on the command line: --time-buffer everywhere, --window on check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.timing import Role
from hexpsi.protocol.spacetime.interval import Interval
from hexpsi.server.cli import input_options
from hexpsi.server.cli.main import build_parser, main

SIX = 1_796_450_400.0  # 2026-12-05T06:00:00Z


def parsed(*argv: str) -> object:
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize(
    "window",
    [
        "2026-12-05T06:00:00Z/2026-12-05T08:00:00Z",
        "2026-12-05T06:00:00Z/PT2H",
        "PT2H/2026-12-05T08:00:00Z",
    ],
)
def test_check_takes_a_window_in_every_iso_8601_form(window: str) -> None:
    args = parsed("check", "node", "strike.csv", "--peer", "p", "--window", window)
    options = input_options(args, role=Role.STRIKES)  # type: ignore[arg-type]
    assert options.window == Interval(SIX, SIX + 7200)
    assert options.role is Role.STRIKES
    assert options.time_buffer_s is None


@pytest.mark.parametrize("command", ["encode", "positions", "check"])
def test_every_reading_command_takes_a_time_buffer(command: str) -> None:
    before = {"encode": [], "positions": ["node"], "check": ["node"]}[command]
    after = ["--peer", "p"] if command == "check" else []
    args = parsed(command, *before, "in.csv", *after, "--time-buffer", "PT10M")
    assert input_options(args, role=Role.ENCODE).time_buffer_s == 600.0  # type: ignore[arg-type]
    args = parsed(command, *before, "in.csv", *after, "--time-buffer", "90")
    assert input_options(args, role=Role.ENCODE).time_buffer_s == 90.0  # type: ignore[arg-type]


def test_only_check_has_a_window() -> None:
    with pytest.raises(SystemExit):
        parsed("positions", "node", "in.csv", "--window", "PT1H/2026-12-05T08:00:00Z")


def test_bad_windows_and_buffers_name_their_option() -> None:
    args = parsed("check", "node", "s.csv", "--peer", "p", "--window", "2026-12-05T06:00:00Z")
    with pytest.raises(InputError, match="--window '2026-12-05T06:00:00Z' is not an ISO 8601"):
        input_options(args, role=Role.STRIKES)  # type: ignore[arg-type]
    args = parsed("encode", "in.csv", "--time-buffer", "-1")
    with pytest.raises(InputError, match="--time-buffer must be a finite number of seconds"):
        input_options(args, role=Role.ENCODE)  # type: ignore[arg-type]


def test_encode_says_what_it_read_with_its_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    track = {
        "type": "Feature",
        "id": "patrol",
        "properties": {"radius_m": 50},
        "geometry": None,
        "temporalGeometry": {
            "type": "MovingPoint",
            "coordinates": [[38.6, 33.5], [38.61, 33.5]],
            "datetimes": ["2026-12-05T06:00:00Z", "2026-12-05T06:30:00Z"],
        },
    }
    path = tmp_path / "patrol.json"
    path.write_text(json.dumps(track))
    assert main(["encode", str(path), "--time-buffer", "PT5M", "-o", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert err.startswith(
        "read 1 feature from patrol.json: 1 line (buffer 50 m); 1 timed from "
        "2026-12-05T05:55:00Z to 2026-12-05T06:35:00Z (1 moving point); "
    )
