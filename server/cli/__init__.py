"""The ``hexpsi`` command line: one module per subcommand, wired up in ``main``.

Each subcommand module exposes ``register(subparsers)``, which adds its parser
and sets ``func(args) -> int`` as the handler. Results go to stdout (or a file
given with ``-o``), logs and progress to stderr.

Start-up is kept short: scripts call ``hexpsi encode`` in loops, and building
the parser must not pay for gRPC, libsodium or the certificate code. A
subcommand module imports only the standard library at module level and its
dependencies inside ``run`` (``tests/server/cli/test_startup.py`` holds it).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from hexpsi.protocol.geo.timing import Role
    from hexpsi.server.inputs import InputOptions

    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def add_input_options(parser: argparse.ArgumentParser, *, radius_required: bool = False) -> None:
    """How shapes are read: the radius default and the layer's own attribute names.

    ``radius_required``: points must give their own radius unless ``--radius-m``
    is given (``hexpsi positions``); otherwise the default is 0.
    """
    parser.add_argument(
        "--radius-m",
        type=float,
        default=None if radius_required else 0.0,
        metavar="M",
        help=(
            "radius or buffer in metres for features that give none; without it a point "
            "without its own radius is refused (0: a point is just its cell)"
            if radius_required
            else "radius or buffer in metres for features that give none (default 0)"
        ),
    )
    parser.add_argument(
        "--radius-field",
        default="radius_m",
        metavar="NAME",
        help="the attribute (GeoJSON property or CSV column) holding a point's radius in "
        "metres (default radius_m)",
    )
    parser.add_argument(
        "--buffer-field",
        default="buffer_m",
        metavar="NAME",
        help="the attribute holding a line's or polygon's buffer in metres (default buffer_m)",
    )
    parser.add_argument(
        "--id-field",
        metavar="NAME",
        help="the attribute holding feature ids (default: id, then fid, then name)",
    )
    parser.add_argument(
        "--ignore-field",
        action="append",
        default=[],
        metavar="NAME",
        help="an attribute that looks like a distance but is not one (repeatable)",
    )
    parser.add_argument(
        "--time-buffer",
        metavar="DURATION",
        help="widen every interval of a timed feature that gives no time_buffer_s by this "
        "much on each side: seconds (600) or an ISO 8601 duration (PT10M)",
    )


def add_window_option(parser: argparse.ArgumentParser) -> None:
    """A strike's window for features that give no not_before/not_after (``hexpsi check``)."""
    parser.add_argument(
        "--window",
        metavar="INTERVAL",
        help="the strike's window, for features without properties.not_before/not_after: "
        "an ISO 8601 interval START/END, START/DURATION or DURATION/END, e.g. "
        "2026-12-05T06:00:00Z/PT2H (default: none, the whole epoch)",
    )


def input_options(args: argparse.Namespace, *, role: Role) -> InputOptions:
    """The options ``add_input_options`` (and ``add_window_option``) registered, as
    ``server.inputs`` takes them, for files read as ``role``."""
    from hexpsi.protocol.geo.fields import FieldNames
    from hexpsi.protocol.spacetime.iso8601 import parse_interval, parse_seconds
    from hexpsi.server.inputs import InputOptions

    fields = FieldNames(
        radius=args.radius_field,
        buffer=args.buffer_field,
        id=args.id_field,
        ignore=frozenset(args.ignore_field),
    )
    buffer_s = (
        None if args.time_buffer is None else parse_seconds(args.time_buffer, what="--time-buffer")
    )
    window_text = getattr(args, "window", None)
    window = None if window_text is None else parse_interval(window_text, what="--window")
    return InputOptions(
        default_radius_m=args.radius_m,
        fields=fields,
        role=role,
        time_buffer_s=buffer_s,
        window=window,
    )
