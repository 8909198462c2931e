"""Evidence v2: a check's replay material, the strike zone it covered, and when.

v1 evidence (:mod:`hexpsi.protocol.check.evidence`) proves what happened to the
tokens it lists and says nothing about the tokens it leaves out, so a proposer
could drop the tokens that hit and show a CONFLICT as clear, or show no token
at all. A v2 bundle (``hexpsi/v2/evidence``) also carries the zone itself (the
shapes as read, the radius default applied, the resolution it was covered at;
``window`` is ``null`` until checks have time windows) and the proposer's own
clock reading when the answer arrived. :func:`verify_zone_evidence` covers the
zone again, derives the query tokens from it exactly as a proposer must, and
refuses a bundle that lacks any of them or holds any other: "this zone was
checked" then means the whole zone. The token replay itself is v1's
:func:`~hexpsi.protocol.check.evidence.verify_evidence`, unchanged.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nacl.signing import VerifyKey

from hexpsi.protocol.check.evidence import (
    Evidence,
    export_evidence,
    integer_member,
    json_document,
    verified_descriptor,
    verify_evidence,
)
from hexpsi.protocol.check.pieces import Piece, plan_pieces, zone_windows
from hexpsi.protocol.check.session import ProposerCheck
from hexpsi.protocol.clock import check_skew
from hexpsi.protocol.epoch.descriptor import Descriptor
from hexpsi.protocol.errors import (
    InputError,
    LocalProtocolError,
    RemoteProtocolError,
    VerificationError,
)
from hexpsi.protocol.geo.cover import cover_area_km2
from hexpsi.protocol.geo.tokens import cells_inside
from hexpsi.protocol.geo.zone import StrikeZone
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS, DEFAULT_MAX_COVER_CELLS
from hexpsi.protocol.spacetime.interval import Interval

ZONE_EVIDENCE_FORMAT = "hexpsi/v2/evidence"
NO_ZONE = "the evidence carries no strike zone; it proves only its listed tokens"


@dataclass(frozen=True, slots=True)
class CoveredZone:
    """A strike zone and the resolution the check covered it at."""

    zone: StrikeZone
    res: int

    def to_json(self) -> dict[str, Any]:
        return {"res": self.res, **self.zone.to_json()}

    @classmethod
    def from_json(cls, obj: object) -> CoveredZone:
        if not isinstance(obj, dict) or "res" not in obj:
            raise InputError("must be a JSON object with a 'res' member", where="zone")
        rest = {key: value for key, value in obj.items() if key != "res"}
        return cls(StrikeZone.from_json(rest), integer_member(obj["res"], "zone.res"))


@dataclass(frozen=True, slots=True)
class CheckedPart:
    """One check of a zone: its replay material and when its answer arrived."""

    replay: Evidence
    received_at: float

    def members(self) -> dict[str, Any]:
        return {
            **self.replay.transcript_members(),
            "received_at": self.received_at,
            "positions": self.replay.positions_json(),
        }

    @classmethod
    def from_members(cls, obj: dict[str, Any]) -> CheckedPart:
        received_at = obj["received_at"]
        if isinstance(received_at, bool) or not isinstance(received_at, int | float):
            raise TypeError("received_at must be a number of seconds")
        return cls(Evidence.from_members(obj), float(received_at))


@dataclass(frozen=True, slots=True)
class ZoneEvidence:
    """A v2 bundle: the zone (None when the check was given bare cells, which such a
    bundle then cannot vouch for) and the checks that covered it.

    Usually one check; a zone too large for one check is checked in parts, each
    with its own receipt, against the same epoch. One part is written with its
    members at the top level; several as ``"parts": [...]``.
    """

    parts: tuple[CheckedPart, ...]
    zone: CoveredZone | None

    @property
    def replay(self) -> Evidence:
        """The first (usually only) check's replay material."""
        return self.parts[0].replay

    @property
    def received_at(self) -> float:
        """When the first (usually only) check's answer arrived."""
        return self.parts[0].received_at

    def to_json(self) -> bytes:
        zone = None if self.zone is None else self.zone.to_json()
        if len(self.parts) == 1:
            members = self.parts[0].members()
            positions = members.pop("positions")
            document = {
                "format": ZONE_EVIDENCE_FORMAT,
                **members,
                "zone": zone,
                "positions": positions,
            }
        else:
            parts = [part.members() for part in self.parts]
            document = {"format": ZONE_EVIDENCE_FORMAT, "zone": zone, "parts": parts}
        return json.dumps(document, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ZoneEvidence:
        """Parse a bundle; a malformed one is an InputError. Nothing is verified here."""
        try:
            obj = json_document(data, ZONE_EVIDENCE_FORMAT)
            zone = obj["zone"]
            if "parts" in obj:
                listed = obj["parts"]
                if not isinstance(listed, list) or not listed:
                    raise TypeError("parts must be a non-empty list")
                if not all(isinstance(part, dict) for part in listed):
                    raise TypeError("each part must be a JSON object")
                parts = tuple(CheckedPart.from_members(part) for part in listed)
            else:
                parts = (CheckedPart.from_members(obj),)
            return cls(parts, None if zone is None else CoveredZone.from_json(zone))
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            raise InputError(f"evidence bundle is malformed: {error}") from None


@dataclass(frozen=True, slots=True)
class ZoneVerdict:
    """What verified zone evidence establishes. There is none for evidence that does
    not verify: :func:`verify_zone_evidence` raises instead."""

    responder: str
    proposer: str
    epoch_id: bytes
    epoch_sequence: int
    receipt_id: str
    """The (first) check's receipt; a zone checked in parts has one per part."""
    checked_at: float
    """The responder's time in its signed receipt (the last part's, for several)."""
    received_at: float
    """The proposer's time when the answer arrived (its own statement, not signed)."""
    conflict: bool
    zone_cells: int
    zone_area_km2: float
    tokens: int
    conflicting_tokens: frozenset[int]
    conflicting_cells: frozenset[int]
    """The zone's cells at the epoch's ``res`` that lie inside a conflicting token."""
    receipt_ids: tuple[str, ...] = ()
    """Every part's receipt, in order."""
    conflicting_times: tuple[tuple[Interval, frozenset[int]], ...] = ()
    """When the zone meets timed positions: each time node's span and the zone's cells."""


def export_zone_evidence(
    check: ProposerCheck | Sequence[tuple[ProposerCheck, float]],
    *,
    zone: StrikeZone | None,
    received_at: float | None = None,
) -> ZoneEvidence:
    """The v2 bundle of a finished check (with ``received_at``) or of a zone's parts,
    each ``(check, received_at)``, whose strike cells are ``zone``'s cover at the
    responder's ``res`` (``zone=None`` when the check was given bare cells)."""
    if isinstance(check, ProposerCheck):
        if received_at is None:
            raise LocalProtocolError("a single check's bundle needs its receive time")
        checks = [(check, received_at)]
    else:
        checks = list(check)
    if not checks:
        raise LocalProtocolError("evidence needs at least one finished check")
    res = checks[0][0].descriptor.descriptor.res
    return ZoneEvidence(
        parts=tuple(CheckedPart(export_evidence(c), at) for c, at in checks),
        zone=None if zone is None else CoveredZone(zone, res),
    )


def verify_zone_evidence(
    evidence: ZoneEvidence | Evidence,
    responder_key: VerifyKey,
    *,
    max_cells: int = DEFAULT_MAX_COVER_CELLS,
) -> ZoneVerdict:
    """Replay a check and prove it covered its whole zone; raises VerificationError if not.

    Refused: a bundle without a zone (v1 bundles included), a zone covered at
    another resolution than the epoch's, a bundle missing any token the zone
    gives or holding any it does not, a zone too large to cover (``max_cells``),
    a receive time further from the receipt's than the accepted clock skew, and
    everything :func:`verify_evidence` refuses.
    """
    if isinstance(evidence, Evidence) or evidence.zone is None:
        raise VerificationError(NO_ZONE)
    try:
        return _verify(evidence, evidence.zone, responder_key, max_cells)
    except VerificationError:
        raise
    except (RemoteProtocolError, InputError) as error:
        raise VerificationError(f"evidence does not verify: {error.message}") from None


def _verify(
    evidence: ZoneEvidence, covered: CoveredZone, responder_key: VerifyKey, max_cells: int
) -> ZoneVerdict:
    first = evidence.parts[0].replay
    if any(
        (part.replay.descriptor, part.replay.descriptor_signature)
        != (first.descriptor, first.descriptor_signature)
        for part in evidence.parts
    ):
        raise VerificationError("the parts of the evidence were checked against different epochs")
    d = verified_descriptor(first.descriptor, first.descriptor_signature, responder_key).descriptor
    if covered.res != d.res:
        raise VerificationError(
            f"the strike zone was covered at resolution {covered.res}, but the responder's "
            f"epoch uses resolution {d.res}"
        )
    windows = zone_windows(covered.zone, d.res, max_cells=max_cells)
    cover = frozenset().union(*windows.values())
    if not cover:
        raise VerificationError("the strike zone covers no cells, so it proves nothing")
    standing, timed = _expected_tokens(plan_pieces(windows, d), d)
    positions = [p for part in evidence.parts for p in part.replay.positions]
    shown_standing = Counter(p.cell for p in positions if p.level is None)
    shown_timed = Counter(p.timed_token for p in positions if p.timed_token is not None)
    _check_tokens(standing, shown_standing, "tokens")
    _check_tokens(timed, shown_timed, "space-time tokens")
    verdicts = []
    for part in evidence.parts:
        verdict = verify_evidence(part.replay, responder_key)
        check_skew(
            "the receipt",
            verdict.checked_at,
            now=part.received_at,
            max_skew=CLOCK_SKEW_SECONDS,
            clock="the proposer's clock when the answer arrived",
        )
        verdicts.append(verdict)
    conflicting = frozenset().union(*(v.conflicting_tokens for v in verdicts))
    conflicting_timed = frozenset().union(*(v.conflicting_timed for v in verdicts))
    times = _conflicting_times(conflicting_timed, d, cover)
    return ZoneVerdict(
        responder=verdicts[0].responder,
        proposer=verdicts[0].proposer,
        epoch_id=verdicts[0].epoch_id,
        epoch_sequence=d.sequence,
        receipt_id=verdicts[0].receipt_id,
        checked_at=max(v.checked_at for v in verdicts),
        received_at=max(part.received_at for part in evidence.parts),
        conflict=bool(conflicting or conflicting_timed),
        zone_cells=len(cover),
        zone_area_km2=cover_area_km2(cover),
        tokens=sum(standing.values()) + sum(timed.values()),
        conflicting_tokens=conflicting,
        conflicting_cells=frozenset(
            cell
            for token in conflicting
            for cell in cells_inside(token, res=d.res)
            if cell in cover
        ).union(*(cells for _, cells in times)),
        receipt_ids=tuple(v.receipt_id for v in verdicts),
        conflicting_times=times,
    )


def _expected_tokens(
    pieces: Sequence[Piece], d: Descriptor
) -> tuple[Counter[int], Counter[tuple[int, int, int]]]:
    """Every token the checks of the zone must have sent, counted (as a proposer plans
    them, :func:`~hexpsi.protocol.check.pieces.plan_pieces`)."""
    standing: Counter[int] = Counter()
    timed: Counter[tuple[int, int, int]] = Counter()
    for piece in pieces:
        standing.update(token for tokens in piece.standing.values() for token in tokens)
        if d.time_tree is None:
            continue
        for part in piece.timed:
            cover = part.cover(d.time_tree)
            timed.update(
                (cell, level, index)
                for tokens in part.tokens.values()
                for cell in tokens
                for level, index in cover
            )
    return standing, timed


def _conflicting_times(
    tokens: frozenset[tuple[int, int, int]], d: Descriptor, cover: frozenset[int]
) -> tuple[tuple[Interval, frozenset[int]], ...]:
    """When each conflicting timed token meets a position: its node's span, and the
    zone's cells inside its cell, in time order."""
    if d.time_tree is None or not tokens:
        return ()
    times: dict[Interval, set[int]] = {}
    for cell, level, index in tokens:
        interval = d.time_tree.node_interval((level, index))
        inside = (c for c in cells_inside(cell, res=d.res) if c in cover)
        times.setdefault(interval, set()).update(inside)
    return tuple(
        (interval, frozenset(cells))
        for interval, cells in sorted(times.items(), key=lambda item: (item[0].start, item[0].end))
    )


def _check_tokens(expected: Counter[Any], shown: Counter[Any], what: str) -> None:
    """Every token of the zone is shown as often as its checks sent it, and nothing else:
    a bundle cut down to hide a conflict, or grown with tokens of another zone, proves
    nothing."""
    problems = []
    missing = expected - shown
    if missing:
        problems.append(
            f"lacks {missing.total()} of the {expected.total()} {what} of its strike zone, "
            "so it does not show the whole zone was checked"
        )
    outside = shown - expected
    if outside:
        repeated = sum(n for token, n in outside.items() if token in expected)
        if repeated:
            problems.append(f"shows {repeated} of its {what} in more than one place")
        elsewhere = outside.total() - repeated
        if elsewhere:
            problems.append(f"holds {elsewhere} {what} that are not in its strike zone")
    if problems:
        raise VerificationError("the evidence " + "; it ".join(problems))
