"""How the CLI writes its log: one line per record, timestamped, as text or JSON.

Every record is one line on stderr, so a service manager (journald, a container
runtime, a log shipper) can take each line as one event:

- ``text`` (the default): ``2026-12-05T05:14:53Z hexpsi: INFO: hexpsi.server.services.app:
  alpha serving on 127.0.0.1:7443 with mutual TLS``. A newline inside a message or a
  traceback is written as the two characters ``\\n``, so even a traceback stays on its line.
- ``json``: one object per line with ``time``, ``level``, ``logger`` and ``message``,
  ``exception`` when the record carries one, and every field a caller passed with
  ``extra=``.

Times are RFC 3339 in UTC to the second, like every time hexpsi shows a person.

gRPC's C core logs on its own (through absl, straight to file descriptor 2, not
through Python's logging): a TLS handshake that fails prints lines such as
``ssl_transport_security.cc:… CERTIFICATE_VERIFY_FAILED`` before hexpsi's own
one-line error. :func:`quiet_grpc` sets ``GRPC_VERBOSITY=NONE`` (honoured by
grpcio's core, which reads it when it initialises) before any command imports
grpc, unless ``-v`` asks for details or the environment already names a level.

This module imports only the standard library (and ``protocol.times``): ``--help`` loads it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from hexpsi.protocol.times import rfc3339

TEXT = "text"
JSON = "json"
LOG_FORMATS = (TEXT, JSON)
TEXT_FORMAT = "%(asctime)s hexpsi: %(levelname)s: %(name)s: %(message)s"
GRPC_VERBOSITY = "GRPC_VERBOSITY"
"""The environment variable gRPC's core reads for its own log level (DEBUG, INFO, ERROR, NONE)."""

_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
"""Attributes every LogRecord has: anything else on a record came from ``extra=``."""


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


class TextFormatter(logging.Formatter):
    """``TIME hexpsi: LEVEL: LOGGER: MESSAGE``, one line per record."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return rfc3339(record.created)

    def format(self, record: logging.LogRecord) -> str:
        return _one_line(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, exception, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            key: value for key, value in vars(record).items() if key not in _RECORD_FIELDS
        }
        document.update(
            time=rfc3339(record.created),
            level=record.levelname,
            logger=record.name,
            message=record.getMessage(),
        )
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for ``--log-format``."""
    if log_format == JSON:
        return JsonFormatter()
    if log_format == TEXT:
        return TextFormatter()
    raise ValueError(f"unknown log format {log_format!r}")


def error_line(log_format: str, message: str) -> str:
    """What ``main`` prints for a failed command: ``hexpsi: error: …`` or one JSON record."""
    if log_format == JSON:
        record = logging.makeLogRecord(
            {"name": "hexpsi", "levelno": logging.ERROR, "levelname": "ERROR", "msg": message}
        )
        return JsonFormatter().format(record)
    return _one_line(f"hexpsi: error: {message}")


@contextmanager
def quiet_grpc(verbose: bool) -> Iterator[None]:
    """``GRPC_VERBOSITY=NONE`` while a command runs, unless ``verbose`` or already set.

    gRPC reads the variable once, when its core starts (at the first channel or
    server), so it must be set before the command touches grpc; it is restored
    afterwards for callers that run ``main`` in-process, and inherited meanwhile
    by any process the command starts.
    """
    if verbose or GRPC_VERBOSITY in os.environ:
        yield
        return
    os.environ[GRPC_VERBOSITY] = "NONE"
    try:
        yield
    finally:
        os.environ.pop(GRPC_VERBOSITY, None)
