"""``hexpsi positions``: set a node's protected positions, starting a new epoch."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hexpsi.server.cli import add_input_options, input_options

if TYPE_CHECKING:
    from hexpsi.protocol.spacetime.interval import Interval
    from hexpsi.server.cli import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "positions",
        help="set the protected positions: new epoch keys and a new snapshot",
        description=(
            "Cover POSITIONS (GeoJSON or CSV files, as `hexpsi encode` reads them) at the "
            "node's resolution, derive fresh epoch keys, build and sign the new snapshot and "
            "make it current. Every point needs a radius, its own or --radius-m; with a "
            "theatre declared, every position must lie in it. A running server serves the "
            "new epoch without restarting, from --valid-from (default: at once), and renews "
            "it before it expires (renew_before_hours in config.toml). The files read and "
            "their SHA-256 are kept with the epoch (hexpsi status shows them)."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the node directory")
    parser.add_argument(
        "positions", metavar="POSITIONS", nargs="+", help="GeoJSON or CSV files (- for stdin)"
    )
    add_input_options(parser, radius_required=True)
    parser.add_argument(
        "--valid-from",
        metavar="TIME",
        help="schedule the epoch to begin at TIME (RFC 3339, e.g. 2026-12-06T00:00:00Z); "
        "the server keeps serving the current one until then (default: now)",
    )
    parser.add_argument(
        "--valid-until",
        metavar="TIME",
        help="when the epoch expires (default: epoch_validity_hours after it begins)",
    )
    parser.set_defaults(func=run, libsodium=True)


def run(args: argparse.Namespace) -> int:
    from hexpsi.protocol.geo.timing import Role
    from hexpsi.protocol.times import moment_from_now, parse_moment, rfc3339
    from hexpsi.server.inputs import (
        announce_read,
        cover_features,
        cover_timed_features,
        read_node_inputs,
        split_timed,
    )
    from hexpsi.server.node.directory import Node
    from hexpsi.server.node.epochs import EpochStore
    from hexpsi.server.node.renewal import publish

    now = time.time()
    valid_from, valid_until = (
        None if text is None else parse_moment(text, what=flag)
        for text, flag in ((args.valid_from, "--valid-from"), (args.valid_until, "--valid-until"))
    )
    node = Node(args.directory)
    positions = read_node_inputs(node, args.positions, input_options(args, role=Role.POSITIONS))
    standing, timed = split_timed(positions.features)
    cells = cover_features(standing, res=node.config.res)
    timed_cells = cover_timed_features(timed, res=node.config.res) if timed else []
    store = EpochStore(node)
    waiting = [t for t in store.schedule() if not t.begun(now)]
    started = time.perf_counter()
    with node.open_audit_log() as audit:
        epoch = publish(
            store,
            audit,
            cells,
            now=now,
            valid_from=valid_from,
            valid_until=valid_until,
            sources=_sources(args, positions.sources, positions.digests, now),
            timed_cells=timed_cells,
        )
    d = epoch.descriptor.descriptor
    announce_read(positions, cells | {cell for cell, _ in timed_cells})
    print(
        f"epoch {d.sequence} ({d.epoch_id.hex()}): {_counted(cells, timed_cells)} at res {d.res}, "
        f"snapshot of {epoch.params.count} values ({d.snapshot_bytes} bytes) built in "
        f"{time.perf_counter() - started:.2f}s",
        file=sys.stderr,
    )
    begins = "now" if d.created_at <= now else moment_from_now(d.created_at, now)
    print(
        f"served from {begins} until {moment_from_now(d.valid_until, now)}",
        file=sys.stderr,
    )
    outside = _outside(timed_cells, d.created_at, d.valid_until)
    if outside:
        print(
            f"warning: {outside} timed cells lie wholly outside the epoch "
            f"({rfc3339(d.created_at)} to {rfc3339(d.valid_until)}) and are not protected by "
            "it: set them again (with --valid-from) when an epoch covers them",
            file=sys.stderr,
        )
    for replaced in waiting:
        print(
            f"warning: epoch {replaced.sequence}, scheduled for {rfc3339(replaced.created_at)}, "
            f"will not be served: epoch {d.sequence} replaces it",
            file=sys.stderr,
        )
    epoch.blocks.close()
    return 0


def _counted(cells: set[int], timed_cells: Sequence[tuple[int, Interval]]) -> str:
    if not timed_cells:
        return f"{len(cells)} protected cells"
    return f"{len(cells)} standing and {len(timed_cells)} timed protected cells"


def _outside(timed_cells: Sequence[tuple[int, Interval]], start: float, end: float) -> int:
    """How many timed cells miss the epoch's validity altogether."""
    return sum(1 for _, interval in timed_cells if interval.end < start or interval.start > end)


def _sources(
    args: argparse.Namespace, names: Sequence[str], digests: Sequence[str], now: float
) -> dict[str, Any]:
    """What was read and how, kept with the epoch so the operator can tell what it holds."""
    from hexpsi.protocol.times import rfc3339
    from hexpsi.server.streams import STDIO

    return {
        "files": [
            {"path": name if name == STDIO else str(Path(name).resolve()), "sha256": digest}
            for name, digest in zip(args.positions, digests, strict=True)
        ],
        "shown_as": list(names),
        "options": {
            "radius_m": args.radius_m,
            "radius_field": args.radius_field,
            "buffer_field": args.buffer_field,
            "id_field": args.id_field,
            "ignore_field": list(args.ignore_field),
            "time_buffer": args.time_buffer,
        },
        "read_at": rfc3339(now),
    }
