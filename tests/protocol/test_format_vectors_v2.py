"""The v2 documents are frozen too: today's code makes the same bytes, and reads the old ones.

As for v1 (``test_format_vectors.py``): rebuilding from the fixed inputs must
give the frozen bytes exactly, and the frozen documents must decode, re-encode
and verify from the file alone, the way a third party checks a bundle years
later. The frozen bundle is also cut down to hide its conflict, which must
still be refused.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from nacl.signing import VerifyKey

from hexpsi.protocol.check.cell_opening import StandaloneCellOpening, verify_standalone_opening
from hexpsi.protocol.check.zone_evidence import ZoneEvidence, verify_zone_evidence
from hexpsi.protocol.errors import VerificationError
from tests.protocol import format_vectors

FROZEN = format_vectors.load_v2()


@pytest.fixture(scope="module")
def rebuilt() -> dict[str, Any]:
    return format_vectors.build_v2()


@pytest.mark.parametrize("section", ["descriptor", "zone_evidence", "cell_openings"])
def test_rebuilding_gives_the_frozen_bytes(rebuilt: dict[str, Any], section: str) -> None:
    assert rebuilt[section] == FROZEN[section]


def test_the_v2_file_uses_the_v1_files_epoch() -> None:
    assert FROZEN["descriptor"] == format_vectors.load()["descriptor"]


def _key() -> VerifyKey:
    return VerifyKey(bytes.fromhex(FROZEN["descriptor"]["responder_verify_key"]))


def test_frozen_zone_evidence_reencodes_and_verifies_to_its_verdict() -> None:
    vector = FROZEN["zone_evidence"]
    text = vector["bundle"].encode()
    evidence = ZoneEvidence.from_json(text)
    assert evidence.to_json() == text
    verdict = verify_zone_evidence(evidence, _key())
    assert verdict.conflict is vector["conflict"] is True
    assert sorted(f"{c:x}" for c in verdict.conflicting_cells) == vector["conflicting_cells"]
    assert sorted(f"{t:x}" for t in verdict.conflicting_tokens) == vector["conflicting_tokens"]
    assert verdict.receipt_id == vector["receipt_id"]
    assert verdict.checked_at == vector["checked_at"]
    assert verdict.received_at == vector["received_at"]
    assert verdict.zone_cells == vector["zone_cells"]
    assert verdict.tokens == vector["tokens"]


def test_frozen_zone_evidence_cut_down_to_hide_its_conflict_is_refused() -> None:
    vector = FROZEN["zone_evidence"]
    bundle = json.loads(vector["bundle"])
    hits = set(vector["conflicting_tokens"])
    kept = [p for p in bundle["positions"] if p["cell"] not in hits]
    cut = ZoneEvidence.from_json(json.dumps({**bundle, "positions": kept}).encode())
    with pytest.raises(VerificationError, match=f"lacks {len(hits)} of the {vector['tokens']}"):
        verify_zone_evidence(cut, _key())


@pytest.mark.parametrize("at", [0, 1], ids=["inside", "outside"])
def test_frozen_cell_openings_still_prove_membership(at: int) -> None:
    vector = FROZEN["cell_openings"][at]
    text = vector["document"].encode()
    document = StandaloneCellOpening.from_json(text)
    assert document.to_json() == text
    verdict = verify_standalone_opening(document, _key())
    assert f"{verdict.cell:x}" == vector["cell"]
    assert verdict.inside is vector["inside"]
