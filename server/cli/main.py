"""``hexpsi``: parse the command line, run one subcommand, turn errors into one line.

Error policy: every error hexpsi raises on purpose is a ``HexpsiError`` and knows
how to explain itself; ``main`` prints that explanation as a single line on
stderr and returns 1. With ``--verbose`` (or ``HEXPSI_VERBOSE=1``) it logs at
debug level and prints the traceback first. Argument mistakes are argparse's
business (exit 2), on one line with the usage folded into it. Any other
exception is a bug in hexpsi and is allowed to surface with its traceback.

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
    rotate,
    serve,
    theatre,
)

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
    check,
    evidence,
    mutual,
    audit,
    demo,
    bench,
]

VERBOSE_ENV = "HEXPSI_VERBOSE"
NOT_OPTIONS = ("func", "command", "libsodium")
"""What subcommands set beside their options: the handler, its name, whether it does group work."""
LOG_FORMAT = "hexpsi: %(levelname)s: %(name)s: %(message)s"
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
        help=f"debug logging and tracebacks on stderr (also: {VERBOSE_ENV}=1)",
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
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(subparsers)
    # -v works after the subcommand too; SUPPRESS keeps an absent one from
    # overwriting a -v given before it.
    for subparser in {id(p): p for p in subparsers.choices.values()}.values():
        _add_verbose(subparser, default=argparse.SUPPRESS)
    return parser


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The CLI's own log handler, so it can be removed again without touching others."""


def _start_logging(verbose: bool) -> tuple[logging.Handler, int]:
    root = logging.getLogger()
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
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
    args = build_parser().parse_args(argv)
    verbose = bool(args.verbose)
    handler, previous_level = _start_logging(verbose)
    try:
        options = {k: v for k, v in vars(args).items() if k not in NOT_OPTIONS}
        log.debug("running %s with %s", args.command, options)
        if getattr(args, "libsodium", False):
            # Group work ahead: load libsodium now and remove rbcl's temporary copy of it.
            from hexpsi.server import sodium

            sodium.load()
        return int(args.func(args))
    except HexpsiError as exc:
        if verbose:
            traceback.print_exc(file=sys.stderr)
        hint = "" if verbose else " (rerun with --verbose for details)"
        print(f"hexpsi: error: {exc.explain()}{hint}", file=sys.stderr)
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
