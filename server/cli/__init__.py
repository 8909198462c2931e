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


def input_options(args: argparse.Namespace) -> InputOptions:
    """The options ``add_input_options`` registered, as ``server.inputs`` takes them."""
    from hexpsi.protocol.geo.fields import FieldNames
    from hexpsi.server.inputs import InputOptions

    fields = FieldNames(
        radius=args.radius_field,
        buffer=args.buffer_field,
        id=args.id_field,
        ignore=frozenset(args.ignore_field),
    )
    return InputOptions(default_radius_m=args.radius_m, fields=fields)
