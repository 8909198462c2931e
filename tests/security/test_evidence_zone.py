"""Evidence proves the whole zone: a bundle cut down to hide a conflict, or with no positions,
is refused, by the zone verifier and by ``hexpsi evidence verify``.

One real check over mutual TLS (the proposer ``bravo`` strikes a zone that
reaches ``alpha``'s garrison, CONFLICT) gives an honest v2 bundle. The attacks
then edit the stored bundle the way a proposer building an alibi would, always
keeping the genuine signed receipt: drop the positions whose tokens hit (v1's
token replay calls what is left clear), drop every position, swap the zone for
a smaller one, strip the zone. Every edit must be refused, saying what is
wrong; the honest bundle must give the check's own verdict. The responder's
side is covered too: a cell it opens verifies against its identity alone, and
against no other.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.check.evidence import verify_evidence
from hexpsi.protocol.check.zone_evidence import ZoneEvidence, verify_zone_evidence
from hexpsi.protocol.errors import VerificationError
from hexpsi.protocol.geo.shapes import Circle, Feature
from hexpsi.protocol.geo.zone import StrikeZone
from hexpsi.server.cli.main import main
from hexpsi.server.clients.check import CheckReport, run_check
from hexpsi.server.node.directory import Node
from tests.security.hostile_helpers import (
    PROPOSER,
    PROTECTED,
    RESPONDER,
    ServerThread,
    make_pair,
)
from tests.server.conftest import CENTER, FAR

ZONE = StrikeZone(
    (
        Feature("garrison", (Circle(h3.cell_to_latlng(CENTER), 500.0),)),
        Feature("far", (Circle(h3.cell_to_latlng(FAR), 300.0),)),
    ),
    default_radius_m=0.0,
)
"""Half of it reaches the garrison (CONFLICT), half lies far away (clear tokens to keep)."""


@dataclass
class Checked:
    """A finished, stored CONFLICT check and the files a third party would be handed."""

    root: Path
    responder: Node
    proposer: Node
    report: CheckReport

    @property
    def bundle(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads((self.report.directory / "evidence.json").read_text())
        return document

    def identity(self, name: str = RESPONDER) -> str:
        return str(self.root / f"{name}.json")

    def write(self, name: str, document: dict[str, Any]) -> str:
        path = self.root / name
        path.write_text(json.dumps(document))
        return str(path)


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> Checked:
    root = tmp_path_factory.mktemp("evidence-zone")
    pair = make_pair(root)
    target = ServerThread(pair.responder)
    try:
        report = asyncio.run(run_check(pair.proposer, RESPONDER, ZONE))
    finally:
        target.stop()
    for node in (pair.responder, pair.proposer):
        (root / f"{node.name}.json").write_bytes(node.own_identity().to_bytes())
    return Checked(root, pair.responder, pair.proposer, report)


def verify_file(checked: Checked, path: str, *extra: str, identity: str | None = None) -> int:
    return main(["evidence", "verify", path, "--responder", identity or checked.identity(), *extra])


def refusal(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("hexpsi: error: ")
    return lines[0]


def refused_everywhere(
    checked: Checked, document: dict[str, Any], match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused by the verifier, and by the CLI in one line (and as JSON with --json)."""
    key = checked.responder.own_identity().verify_key
    parsed = ZoneEvidence.from_json(json.dumps(document).encode())
    with pytest.raises(VerificationError, match=match):
        verify_zone_evidence(parsed, key)
    path = checked.write("edited.json", document)
    capsys.readouterr()
    assert verify_file(checked, path) == 1
    line = refusal(capsys)
    assert re.search(match, line), line
    assert verify_file(checked, path, "--json") == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["valid"] is False
    assert re.search(match, answer["reason"])


def hitting(checked: Checked) -> frozenset[int]:
    return checked.report.result.conflicting_tokens


# ---------------------------------------------------------------- the honest bundle


def test_the_honest_bundle_is_valid_and_says_what_the_check_said(
    checked: Checked, capsys: pytest.CaptureFixture[str]
) -> None:
    result = checked.report.result
    assert result.conflict
    assert result.conflicting_cells <= PROTECTED | ZONE.cover(9)
    key = checked.responder.own_identity().verify_key
    verdict = verify_zone_evidence(ZoneEvidence.from_json(json.dumps(checked.bundle).encode()), key)
    assert verdict.conflict
    assert verdict.conflicting_cells == result.conflicting_cells
    assert verdict.receipt_id == checked.report.receipt_id
    assert verdict.checked_at == result.receipt.issued_at
    assert verdict.received_at == checked.report.received_at
    assert verdict.proposer == PROPOSER
    capsys.readouterr()
    assert verify_file(checked, str(checked.report.directory / "evidence.json"), "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["valid"] is True
    assert answer["conflict"] is True
    assert answer["receipt"] == checked.report.receipt_id
    assert answer["responder"] == RESPONDER
    assert answer["epoch"] == result.epoch_id.hex()
    assert answer["conflicting_cells"] == sorted(f"{c:x}" for c in result.conflicting_cells)
    assert answer["zone_area_km2"] == pytest.approx(verdict.zone_area_km2)


# ---------------------------------------------------------------- the attacks


def test_a_bundle_cut_down_to_hide_the_conflict_is_refused(
    checked: Checked, capsys: pytest.CaptureFixture[str]
) -> None:
    """The attack from the review: same signed receipt, hitting positions dropped.

    Checked to fail without the protection: with ``_check_tokens`` removed from
    ``hexpsi.protocol.check.zone_evidence``, the cut bundle verified as CLEAR and
    ``hexpsi evidence verify`` exited 0.
    """
    bundle = checked.bundle
    kept = [p for p in bundle["positions"] if int(p["cell"], 16) not in hitting(checked)]
    cut = {**bundle, "positions": kept}
    replay = ZoneEvidence.from_json(json.dumps(cut).encode()).replay
    key = checked.responder.own_identity().verify_key
    assert not verify_evidence(replay, key).conflict, "v1's replay alone would call it clear"
    standing = [p for p in bundle["positions"] if "level" not in p]
    total = len(standing)
    hidden = sum(1 for p in standing if int(p["cell"], 16) in hitting(checked))
    assert 0 < hidden < total
    refused_everywhere(checked, cut, f"lacks {hidden} of the {total} tokens", capsys)


def test_a_bundle_with_no_positions_is_refused(
    checked: Checked, capsys: pytest.CaptureFixture[str]
) -> None:
    total = sum(1 for p in checked.bundle["positions"] if "level" not in p)
    emptied = {**checked.bundle, "positions": []}
    refused_everywhere(checked, emptied, f"lacks {total} of the {total} tokens", capsys)


def test_a_zone_swapped_for_a_smaller_one_is_refused(
    checked: Checked, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the far part is left in the zone, every position kept: the garrison's tokens
    are then tokens outside the zone."""
    bundle = checked.bundle
    smaller = {**bundle, "zone": {**bundle["zone"], "features": bundle["zone"]["features"][1:]}}
    refused_everywhere(checked, smaller, "tokens that are not in its strike zone", capsys)


def test_a_zone_swapped_with_the_hits_dropped_too_is_refused(
    checked: Checked, capsys: pytest.CaptureFixture[str]
) -> None:
    """The garrison disk shrunk and its hitting positions dropped: compaction makes the
    smaller disk's tokens others than those sent, so they are missing."""
    bundle = checked.bundle
    zone = json.loads(json.dumps(bundle["zone"]))
    zone["features"][0]["shapes"][0]["radius_m"] = 100.0
    kept = [p for p in bundle["positions"] if int(p["cell"], 16) not in hitting(checked)]
    refused_everywhere(checked, {**bundle, "zone": zone, "positions": kept}, "lacks", capsys)


def test_a_bundle_stripped_of_its_zone_is_refused(
    checked: Checked, capsys: pytest.CaptureFixture[str]
) -> None:
    refused_everywhere(checked, {**checked.bundle, "zone": None}, "carries no strike zone", capsys)


def test_the_bundle_rewritten_as_v1_is_refused(
    checked: Checked, capsys: pytest.CaptureFixture[str]
) -> None:
    v1 = {key: value for key, value in checked.bundle.items() if key not in ("zone", "received_at")}
    path = checked.write("v1.json", {**v1, "format": "hexpsi/v1/evidence"})
    capsys.readouterr()
    assert verify_file(checked, path) == 1
    assert "carries no strike zone; it proves only its listed tokens" in refusal(capsys)


def test_a_tampered_receipt_is_refused(
    checked: Checked, capsys: pytest.CaptureFixture[str]
) -> None:
    response = bytearray(bytes.fromhex(checked.bundle["response"]))
    response[-40] ^= 0x01
    refused_everywhere(
        checked, {**checked.bundle, "response": response.hex()}, "does not verify", capsys
    )


def test_another_nodes_identity_verifies_nothing(
    checked: Checked, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(checked.report.directory / "evidence.json")
    capsys.readouterr()
    assert verify_file(checked, path, identity=checked.identity(PROPOSER)) == 1
    assert f"is the identity of {PROPOSER!r}" in refusal(capsys)


# ---------------------------------------------------------------- the responder's openings


@pytest.mark.parametrize(("cell", "inside"), [(CENTER, True), (FAR, False)])
def test_a_cell_the_responder_opens_verifies_with_its_identity_alone(
    checked: Checked, capsys: pytest.CaptureFixture[str], cell: int, inside: bool
) -> None:
    out = checked.root / f"open-{cell:x}.json"
    assert (
        main(["evidence", "open", str(checked.responder.directory), f"{cell:x}", "-o", str(out)])
        == 0
    )
    capsys.readouterr()
    assert verify_file(checked, str(out), "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer == {
        "valid": True,
        "responder": RESPONDER,
        "epoch": answer["epoch"],
        "epoch_sequence": 1,
        "cell": f"{cell:x}",
        "inside": inside,
    }
    assert verify_file(checked, str(out), identity=checked.identity(PROPOSER)) == 1
    refusal(capsys)


def test_a_tampered_opening_is_refused(
    checked: Checked, capsys: pytest.CaptureFixture[str]
) -> None:
    out = checked.root / "open.json"
    assert (
        main(["evidence", "open", str(checked.responder.directory), f"{CENTER:x}", "-o", str(out)])
        == 0
    )
    document = json.loads(out.read_text())
    for member in ("proof", "evaluated", "opening", "descriptor_signature"):
        data = bytearray(bytes.fromhex(document[member]))
        data[len(data) // 2] ^= 0x01
        path = checked.write("open-edited.json", {**document, member: data.hex()})
        capsys.readouterr()
        assert verify_file(checked, path) == 1, member
        refusal(capsys)
