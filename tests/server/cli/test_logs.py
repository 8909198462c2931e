"""The CLI's log lines: RFC 3339 times, one line per record, text or JSON, gRPC kept quiet."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path

import pytest

from hexpsi.server.cli.logs import (
    GRPC_VERBOSITY,
    JsonFormatter,
    TextFormatter,
    error_line,
    quiet_grpc,
)
from hexpsi.server.cli.main import main

WHEN = 1796447693.75
"""2026-12-05T05:14:53.75Z."""
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ hexpsi: [A-Z]+: \S+: .*$")


def record(message: str, *args: object, **fields: object) -> logging.LogRecord:
    return logging.makeLogRecord(
        {
            "name": "hexpsi.server.services.app",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": message,
            "args": args,
            "created": WHEN,
            **fields,
        }
    )


def failing_record() -> logging.LogRecord:
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        return record("went wrong", exc_info=sys.exc_info())


def test_a_text_line_starts_with_its_time_in_utc() -> None:
    line = TextFormatter().format(record("%s serving on %s", "alpha", "127.0.0.1:7443"))
    assert line == (
        "2026-12-05T05:14:53Z hexpsi: INFO: hexpsi.server.services.app: "
        "alpha serving on 127.0.0.1:7443"
    )


def test_a_text_record_stays_on_one_line_with_its_traceback() -> None:
    line = TextFormatter().format(failing_record())
    assert "\n" not in line
    assert TEXT_LINE.match(line)
    assert "Traceback (most recent call last):\\n" in line
    assert line.endswith("ValueError: first\\nsecond")


def test_a_json_record_is_one_object_with_time_level_logger_message_and_extras() -> None:
    line = JsonFormatter().format(record("evaluated %d elements", 64, peer="bravo", area_km2=1.5))
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2026-12-05T05:14:53Z",
        "level": "INFO",
        "logger": "hexpsi.server.services.app",
        "message": "evaluated 64 elements",
        "peer": "bravo",
        "area_km2": 1.5,
    }


def test_a_json_record_carries_its_exception_and_keeps_its_own_fields() -> None:
    failing = failing_record()
    failing.__dict__["time"] = "not the time"
    document = json.loads(JsonFormatter().format(failing))
    assert document["time"] == "2026-12-05T05:14:53Z"
    assert document["exception"].endswith("ValueError: first\nsecond")


def test_the_error_line_is_text_or_json() -> None:
    assert error_line("text", "no such peer\nx") == "hexpsi: error: no such peer\\nx"
    document = json.loads(error_line("json", "no such peer"))
    assert document["level"] == "ERROR"
    assert document["message"] == "no such peer"
    assert document["logger"] == "hexpsi"


@pytest.mark.parametrize("where", ["before", "after"])
def test_log_format_json_is_a_global_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    argv = ["identity", str(tmp_path / "missing")]
    argv = ["--log-format", "json", *argv] if where == "before" else [*argv, "--log-format", "json"]
    assert main(argv) == 1
    (line,) = capsys.readouterr().err.splitlines()
    document = json.loads(line)
    assert document["level"] == "ERROR"
    assert "is not a hexpsi node directory" in document["message"]


def test_log_format_from_the_environment_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEXPSI_LOG_FORMAT", "xml")
    with pytest.raises(SystemExit) as exited:
        main(["identity", str(tmp_path)])
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("hexpsi: error: HEXPSI_LOG_FORMAT='xml' is not one of text, json")


def test_log_lines_of_a_command_carry_their_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-v", "init", str(tmp_path / "a"), "--name", "a", "--listen", "h:1"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines
    assert all(TEXT_LINE.match(line) for line in lines), lines


def test_grpc_is_quiet_while_a_command_runs_unless_verbose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(GRPC_VERBOSITY, raising=False)
    with quiet_grpc(verbose=False):
        assert os.environ[GRPC_VERBOSITY] == "NONE"
    assert GRPC_VERBOSITY not in os.environ
    with quiet_grpc(verbose=True):
        assert GRPC_VERBOSITY not in os.environ
    monkeypatch.setenv(GRPC_VERBOSITY, "DEBUG")
    with quiet_grpc(verbose=False):
        assert os.environ[GRPC_VERBOSITY] == "DEBUG"
