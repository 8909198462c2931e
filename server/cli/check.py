"""``hexpsi check``: does a planned strike hit anything a peer protects? One peer or every one.

Several peers are checked at once, concurrently, sharing one worker pool; one
peer failing does not stop the others. Exit status: 0 when every check was
done (CONFLICT or CLEAR), 1 when any could not be done; with ``--exit-code``,
2 when any peer reports CONFLICT (a known conflict outranks a failed check),
else 1 when any check could not be done, else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from hexpsi.server.cli import add_input_options, add_window_option, input_options
from hexpsi.server.streams import write_output

if TYPE_CHECKING:
    from tqdm import tqdm

    from hexpsi.protocol.geo.zone import StrikeZone
    from hexpsi.server.cli import Subparsers
    from hexpsi.server.clients.check import CheckPlan, CheckReport
    from hexpsi.server.node.directory import Node
    from hexpsi.server.workers import WorkerPool

PROGRESS_THRESHOLD_BYTES = 1 << 20
EXIT_DONE, EXIT_FAILED, EXIT_CONFLICT = 0, 1, 2


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check a planned strike against pinned peers' protected positions",
        description=(
            "Cover STRIKE (GeoJSON or CSV) at the resolution each peer's current epoch "
            "declares and run a verified private check against that epoch. Prints CONFLICT "
            "or CLEAR per peer and per target; each check's receipts and evidence bundle are "
            "stored in the node directory. A zone too large for one check is checked in parts."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the node directory")
    parser.add_argument(
        "strike", metavar="STRIKE", nargs="+", help="GeoJSON or CSV strike zone files"
    )
    peers = parser.add_mutually_exclusive_group(required=True)
    peers.add_argument(
        "--peer",
        action="append",
        metavar="NAME",
        help="a pinned peer to check against (repeat for several)",
    )
    peers.add_argument(
        "--all-peers", action="store_true", help="check against every pinned peer, at once"
    )
    add_input_options(parser)
    add_window_option(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--geojson",
        metavar="OUT",
        help="write every target's cells, conflicting ones marked, as GeoJSON",
    )
    parser.add_argument(
        "--outline",
        action="store_true",
        help="with --geojson: one outline per target (and its conflicting part) "
        "instead of one hexagon per cell",
    )
    parser.add_argument(
        "--html",
        metavar="OUT",
        help="also write each check as one self-contained HTML page with a map: every strike "
        "cell, the conflicting ones marked, each target's verdict, the peer, its epoch and "
        "the receipt (with several peers, one page each: OUT with -PEER before its suffix)",
    )
    parser.add_argument(
        "--tiles",
        metavar="URL_TEMPLATE",
        help="with --html: draw over XYZ tiles from this server, e.g. "
        "https://tiles.example.org/{z}/{x}/{y}.png (default: no base map, nothing external)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="fetch each peer's descriptor and say what the check would send and cost; "
        "evaluate nothing",
    )
    parser.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 2 if any peer reports CONFLICT, 1 if any check could not be done, else 0",
    )
    parser.add_argument(
        "--plaintext", action="store_true", help="peers serve plaintext on loopback (testing)"
    )
    parser.set_defaults(func=run, libsodium=True)


class DownloadBar:
    """A byte progress bar on stderr, shown only for snapshots worth waiting for."""

    def __init__(self, label: str = "snapshot") -> None:
        self.label = label
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if total < PROGRESS_THRESHOLD_BYTES:
            return
        if self.bar is None:
            self.bar = tqdm(
                total=total, unit="B", unit_scale=True, desc=self.label, file=sys.stderr
            )
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _check_html_options(args: argparse.Namespace) -> None:
    from hexpsi.protocol.errors import InputError
    from hexpsi.server.cli.report_page import check_tiles_template
    from hexpsi.server.streams import STDIO

    if args.tiles is not None:
        if args.html is None:
            raise InputError("--tiles draws a base map under --html, which is not given")
        check_tiles_template(args.tiles)
    if args.html == STDIO:
        raise InputError(
            "--html - would mix the page with the answer on stdout", hint="give --html a file"
        )
    if args.html is not None and args.dry_run:
        raise InputError("--dry-run draws nothing: it checks nothing to draw")


def _per_peer(path: str, peer: str) -> str:
    """``report.html`` for peer bravo: ``report-bravo.html``."""
    from pathlib import Path

    target = Path(path)
    return str(target.with_name(f"{target.stem}-{peer}{target.suffix}"))


def chosen_peers(node: Node, args: argparse.Namespace) -> list[str]:
    """The peers named (each once: a repeated name is a mistake, not a duplicate to drop)."""
    from hexpsi.protocol.errors import InputError

    if args.all_peers:
        names = [peer.name for peer in node.peers()]
        if not names:
            raise InputError(
                "--all-peers: this node has pinned no peer",
                hint=f"pin one with: hexpsi peer add {node.directory} IDENTITY.json",
            )
        return names
    names = list(args.peer)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"--peer {repeated[0]} is given more than once; name each peer once")
    for name in names:
        node.peer(name)  # an unknown peer fails here, before anything is sent
    return names


async def _answer(
    node: Node,
    peer: str,
    zone: StrikeZone,
    args: argparse.Namespace,
    pool: WorkerPool,
) -> CheckReport | CheckPlan:
    from hexpsi.server.clients.check import plan_check, run_check

    if args.dry_run:
        return await plan_check(node, peer, zone, plaintext=args.plaintext)
    bar = DownloadBar(f"{peer} snapshot")
    try:
        return await run_check(node, peer, zone, plaintext=args.plaintext, progress=bar, pool=pool)
    finally:
        bar.close()


async def _answers(
    node: Node, peers: list[str], zone: StrikeZone, args: argparse.Namespace
) -> dict[str, CheckReport | CheckPlan | Exception]:
    """Every peer's answer, concurrently; a peer's HexpsiError is its answer too."""
    import asyncio

    from hexpsi.protocol.errors import HexpsiError
    from hexpsi.server.workers import WorkerPool

    with WorkerPool(name="hexpsi-check") as pool:
        outcomes = await asyncio.gather(
            *(_answer(node, peer, zone, args, pool) for peer in peers), return_exceptions=True
        )
    answers: dict[str, CheckReport | CheckPlan | Exception] = {}
    for peer, outcome in zip(peers, outcomes, strict=True):
        if isinstance(outcome, BaseException) and not isinstance(outcome, HexpsiError):
            raise outcome  # a bug, not a peer's answer
        answers[peer] = outcome
    return answers


def _write_maps(reports: list[CheckReport], args: argparse.Namespace, several: bool) -> None:
    from hexpsi.server.cli import answers as out

    if args.geojson and reports:
        write_output(out.reports_geojson(reports, outline=args.outline), args.geojson)
    if args.html:
        for report in reports:
            path = _per_peer(args.html, report.peer) if several else args.html
            write_output(out.report_html(report, tiles=args.tiles), path)


def _print_answers(
    answers: dict[str, CheckReport | CheckPlan | Exception], args: argparse.Namespace
) -> None:
    """Text or JSON for every answer; failures go to stderr, one line each, by the caller."""
    from hexpsi.server.cli import answers as out
    from hexpsi.server.clients.check import CheckReport

    documents: dict[str, dict[str, object] | str] = {}
    texts: list[str] = []
    for peer, answer in answers.items():
        if isinstance(answer, Exception):
            documents[peer] = _explain(answer)
        elif isinstance(answer, CheckReport):
            documents[peer] = out.report_json(answer)
            texts.append(out.report_text(answer))
        else:
            documents[peer] = out.plan_json(answer)
            texts.append(out.plan_text(answer))
    if not args.json:
        write_output("".join(texts), None)
        return
    document = (
        next(iter(documents.values()))
        if len(answers) == 1
        else out.combined_json(documents, dry_run=args.dry_run)
    )
    write_output(json.dumps(document, indent=2) + "\n", None)


def _explain(error: Exception) -> str:
    from hexpsi.protocol.errors import HexpsiError

    return error.explain() if isinstance(error, HexpsiError) else str(error)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from hexpsi.protocol.geo.timing import Role
    from hexpsi.protocol.geo.zone import StrikeZone
    from hexpsi.server.clients.check import CheckReport
    from hexpsi.server.inputs import announce_read, read_node_inputs
    from hexpsi.server.node.directory import Node

    node = Node(args.directory)
    peers = chosen_peers(node, args)
    _check_html_options(args)
    strike = read_node_inputs(node, args.strike, input_options(args, role=Role.STRIKES))
    # Covered at each peer's resolution, from its signed descriptor, not this node's own;
    # the zone itself goes into the evidence bundle.
    zone = StrikeZone(strike.features, args.radius_m)
    answers = asyncio.run(_answers(node, peers, zone, args))
    failed = {peer: a for peer, a in answers.items() if isinstance(a, Exception)}
    if len(peers) == 1 and failed:
        raise next(iter(failed.values()))
    reports = [a for a in answers.values() if isinstance(a, CheckReport)]
    _write_maps(reports, args, several=len(peers) > 1)
    _print_answers(answers, args)
    for peer, error in failed.items():
        print(f"hexpsi: error: peer {peer}: {_explain(error)}", file=sys.stderr)
    # What was read, once per resolution the peers covered it at.
    covers = {
        a.descriptor.descriptor.res: a.strike_cells
        for a in answers.values()
        if not isinstance(a, Exception)
    }
    for cells in covers.values():
        announce_read(strike, cells)
    if args.exit_code and any(report.result.conflict for report in reports):
        return EXIT_CONFLICT
    return EXIT_FAILED if failed else EXIT_DONE
