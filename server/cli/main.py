"""``hexpsi``: parse the command line, run one subcommand, turn errors into one line.

Error policy: every error hexpsi raises on purpose is a ``HexpsiError`` and knows
how to explain itself; ``main`` prints that explanation as a single line on
stderr and returns 1. With ``--verbose`` (or ``HEXPSI_VERBOSE=1``) it logs at
debug level and prints the traceback first. Argument mistakes are argparse's
business (exit 2), on one line with the usage folded into it. Any other
exception is a bug in hexpsi and is allowed to surface with its traceback.

Logging (``server/cli/logs.py``): one timestamped line per record on stderr, as
text or, with ``--log-format json`` (or ``HEXPSI_LOG_FORMAT=json``), one JSON
object per line; in JSON the final error is such an object too. gRPC's own C-core
logging is kept off stderr unless ``-v`` is given, so an error stays one line.

Adding a subcommand: write ``server/cli/<name>.py`` with ``register(subparsers)``
and add the module to ``SUBCOMMANDS``. A subcommand that does group work sets
``libsodium=True`` beside its handler, and ``main`` loads libsodium first
(``hexpsi.server.sodium``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn, Protocol

from hexpsi.protocol.errors import HexpsiError
from hexpsi.server.cli import (
    audit,
    bench,
    check,
    demo,
    encode,
    evidence,
    identity,
    init,
    mutual,
    peer,
    positions,
    probe,
    rotate,
    serve,
    status,
    theatre,
)
from hexpsi.server.cli.logs import LOG_FORMATS, TEXT, error_line, formatter, quiet_grpc

if TYPE_CHECKING:
    from hexpsi.server.cli import Subparsers


class Subcommand(Protocol):
    """What a subcommand module provides."""

    def register(self, subparsers: Subparsers) -> None: ...


SUBCOMMANDS: Sequence[Subcommand] = [
    encode,
    init,
    identity,
    peer,
    rotate,
    theatre,
    positions,
    serve,
    probe,
    status,
    check,
    evidence,
    mutual,
    audit,
    demo,
    bench,
]

VERBOSE_ENV = "HEXPSI_VERBOSE"
LOG_FORMAT_ENV = "HEXPSI_LOG_FORMAT"
NOT_OPTIONS = ("func", "command", "libsodium")
"""What subcommands set beside their options: the handler, its name, whether it does group work."""
log = logging.getLogger(__name__)


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked for (``importlib.metadata`` is slow to import)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print hexpsi's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from importlib import metadata

        try:
            version = metadata.version("hexpsi")
        except metadata.PackageNotFoundError:
            version = "unknown"
        parser.exit(message=f"hexpsi {version}\n")


def _add_verbose(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help=f"debug logging and tracebacks on stderr, gRPC's own too (also: {VERBOSE_ENV}=1)",
    )


def _add_log_format(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=default,
        help=f"log lines as text (default) or one JSON object each (also: {LOG_FORMAT_ENV})",
    )


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported on one line like every other error."""

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split())
        self.exit(2, f"{self.prog}: error: {message} ({usage})\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: shared options plus one subparser per subcommand."""
    parser: argparse.ArgumentParser = _Parser(
        prog="hexpsi",
        description=(
            "Check a planned strike against another party's protected positions "
            "without either side revealing its map."
        ),
    )
    parser.add_argument("--version", action=_VersionAction)
    _add_verbose(parser, default=os.environ.get(VERBOSE_ENV, "") not in ("", "0"))
    _add_log_format(parser, default=os.environ.get(LOG_FORMAT_ENV) or TEXT)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(subparsers)
    # -v and --log-format work after the subcommand too; SUPPRESS keeps an absent
    # one from overwriting one given before it.
    for subparser in {id(p): p for p in subparsers.choices.values()}.values():
        _add_verbose(subparser, default=argparse.SUPPRESS)
        _add_log_format(subparser, default=argparse.SUPPRESS)
    return parser


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The CLI's own log handler, so it can be removed again without touching others."""


def _start_logging(verbose: bool, log_format: str = TEXT) -> tuple[logging.Handler, int]:
    root = logging.getLogger()
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.setLevel(logging.DEBUG if verbose else logging.WARNING)
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(min(previous_level or logging.WARNING, handler.level))
    return handler, previous_level


def _stop_logging(handler: logging.Handler, previous_level: int) -> None:
    root = logging.getLogger()
    root.removeHandler(handler)
    root.setLevel(previous_level)


def main(argv: list[str] | None = None) -> int:
    """Run ``hexpsi`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(args.verbose)
    log_format = args.log_format
    if log_format not in LOG_FORMATS:  # from the environment: argparse checks only the option
        parser.error(f"{LOG_FORMAT_ENV}={log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    handler, previous_level = _start_logging(verbose, log_format)
    try:
        options = {k: v for k, v in vars(args).items() if k not in NOT_OPTIONS}
        log.debug("running %s with %s", args.command, options)
        if getattr(args, "libsodium", False):
            # Group work ahead: load libsodium now and remove rbcl's temporary copy of it.
            from hexpsi.server import sodium

            sodium.load()
        with quiet_grpc(verbose):
            return int(args.func(args))
    except HexpsiError as exc:
        if verbose:
            traceback.print_exc(file=sys.stderr)
        hint = "" if verbose else " (rerun with --verbose for details)"
        print(error_line(log_format, f"{exc.explain()}{hint}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hexpsi: interrupted", file=sys.stderr)
        return 130
    finally:
        _stop_logging(handler, previous_level)


def entry() -> None:
    """Console-script entry point: exit with ``main``'s code."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``hexpsi encode ... | head``): point stdout at
        # /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 1
    sys.exit(code)
