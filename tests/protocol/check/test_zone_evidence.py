"""Zone evidence (v2) proves the whole zone: a bundle cut down to hide a conflict is refused.

The attack this module exists for: take a real CONFLICT check's bundle, drop
the positions whose tokens hit and keep everything else, the signed receipt
included. v1's token replay accepts what is left and calls it clear (it only
vouches for the tokens it is shown). The zone verifier covers the zone again,
derives every query token from it and refuses the bundle, saying how many
tokens of how many are missing.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.check.evidence import export_evidence, verify_evidence
from hexpsi.protocol.check.zone_evidence import (
    NO_ZONE,
    ZoneEvidence,
    ZoneVerdict,
    export_zone_evidence,
    verify_zone_evidence,
)
from hexpsi.protocol.errors import InputError, VerificationError
from hexpsi.protocol.geo.cover import cover_area_km2
from hexpsi.protocol.geo.shapes import Circle, Feature, Path
from hexpsi.protocol.geo.tokens import query_tokens
from hexpsi.protocol.geo.zone import StrikeZone
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS
from tests.protocol.helpers import NOW, CheckPair, ResponderNode, make_responder, signing_key

RES, RES_MIN = 9, 6
GARRISON = (33.5069, 38.6183)
ORIGIN = h3.latlng_to_cell(*GARRISON, RES)
PROTECTED = frozenset(h3.grid_disk(ORIGIN, 2))
RECEIVED_AT = NOW + 0.25
STRIKE = StrikeZone(
    (
        Feature("at-tanf", (Circle((33.5150, 38.6183), 1200.0),)),
        Feature("road", (Path(((33.40, 38.50), (33.42, 38.55)), 300.0),)),
    ),
    default_radius_m=0.0,
)
"""Reaches the garrison's northern edge (a conflict) and runs along a far road (clear)."""
FAR = StrikeZone((Feature(0, (Circle((34.5, 39.6), 800.0),)),), default_radius_m=800.0)


@pytest.fixture(scope="module")
def node() -> ResponderNode:
    return make_responder(PROTECTED, res=RES, res_min=RES_MIN)


def zone_check(node: ResponderNode, zone: StrikeZone, seed: bytes = b"zone") -> CheckPair:
    pair = CheckPair(node, frozenset(zone.cover(RES)), seed=seed)
    pair.run()
    return pair


@pytest.fixture(scope="module")
def conflict(node: ResponderNode) -> CheckPair:
    return zone_check(node, STRIKE)


@pytest.fixture(scope="module")
def bundle(conflict: CheckPair) -> dict[str, Any]:
    exported = export_zone_evidence(conflict.proposer, zone=STRIKE, received_at=RECEIVED_AT)
    parsed: dict[str, Any] = json.loads(exported.to_json())
    return parsed


def verify_json(document: dict[str, Any], node: ResponderNode) -> ZoneVerdict:
    parsed = ZoneEvidence.from_json(json.dumps(document).encode())
    return verify_zone_evidence(parsed, node.verify_key)


def hits_of(pair: CheckPair) -> frozenset[int]:
    assert pair.proposer.result is not None
    return pair.proposer.result.conflicting_tokens


def zone_tokens(zone: StrikeZone) -> set[int]:
    tokens = query_tokens(zone.cover(RES), res=RES, res_min=RES_MIN)
    return {token for group in tokens.values() for token in group}


# --- an honest bundle ---------------------------------------------------------------


def test_an_honest_bundle_gives_the_checks_verdict_for_the_whole_zone(
    node: ResponderNode, conflict: CheckPair, bundle: dict[str, Any]
) -> None:
    result = conflict.proposer.result
    assert result is not None
    assert result.conflict
    verdict = verify_json(bundle, node)
    cover = STRIKE.cover(RES)
    assert verdict.conflict
    assert verdict.conflicting_cells == result.conflicting_cells
    assert verdict.conflicting_cells <= PROTECTED | cover
    assert verdict.conflicting_tokens == result.conflicting_tokens
    assert verdict.checked_at == result.receipt.issued_at == NOW
    assert verdict.received_at == RECEIVED_AT
    assert verdict.receipt_id == result.receipt.receipt_id
    assert verdict.responder == "coalition"
    assert verdict.epoch_id == node.descriptor.descriptor.epoch_id
    assert verdict.epoch_sequence == node.descriptor.descriptor.sequence
    assert verdict.zone_cells == len(cover)
    assert verdict.zone_area_km2 == pytest.approx(cover_area_km2(cover))
    assert verdict.tokens == len(zone_tokens(STRIKE)) == result.tokens_sent


def test_an_honest_clear_bundle_says_clear(node: ResponderNode) -> None:
    pair = zone_check(node, FAR, seed=b"far")
    exported = export_zone_evidence(pair.proposer, zone=FAR, received_at=NOW)
    verdict = verify_zone_evidence(ZoneEvidence.from_json(exported.to_json()), node.verify_key)
    assert not verdict.conflict
    assert verdict.conflicting_cells == verdict.conflicting_tokens == frozenset()


def test_the_bundle_reads_back_to_what_was_exported(conflict: CheckPair) -> None:
    exported = export_zone_evidence(conflict.proposer, zone=STRIKE, received_at=RECEIVED_AT)
    assert ZoneEvidence.from_json(exported.to_json()) == exported
    assert exported.zone is not None
    assert exported.zone.res == RES
    assert exported.replay == export_evidence(conflict.proposer)


# --- the attack: cut the hits out -----------------------------------------------------


def test_a_bundle_cut_down_to_its_non_hitting_positions_is_refused(
    node: ResponderNode, conflict: CheckPair, bundle: dict[str, Any]
) -> None:
    """Checked to fail without the protection: v1's replay alone calls the cut bundle clear."""
    hits = hits_of(conflict)
    kept = [p for p in bundle["positions"] if int(p["cell"], 16) not in hits]
    cut = {**bundle, "positions": kept}
    replay = ZoneEvidence.from_json(json.dumps(cut).encode()).replay
    v1_verdict = verify_evidence(replay, node.verify_key)
    assert not v1_verdict.conflict, "the cut bundle replays as clear: the attack is real"
    total = len(bundle["positions"])
    with pytest.raises(VerificationError, match=f"lacks {len(hits)} of the {total} tokens"):
        verify_json(cut, node)


def test_a_bundle_with_no_positions_is_refused(node: ResponderNode, bundle: dict[str, Any]) -> None:
    total = len(bundle["positions"])
    with pytest.raises(VerificationError, match=f"lacks {total} of the {total} tokens"):
        verify_json({**bundle, "positions": []}, node)


def test_a_bundle_missing_one_clear_token_is_refused(
    node: ResponderNode, conflict: CheckPair, bundle: dict[str, Any]
) -> None:
    hits = hits_of(conflict)
    clear = next(i for i, p in enumerate(bundle["positions"]) if int(p["cell"], 16) not in hits)
    positions = bundle["positions"][:clear] + bundle["positions"][clear + 1 :]
    with pytest.raises(VerificationError, match="lacks 1 of the"):
        verify_json({**bundle, "positions": positions}, node)


def test_a_zone_swapped_for_a_smaller_one_is_refused(
    node: ResponderNode, bundle: dict[str, Any]
) -> None:
    """Only the road is left in the zone: the positions of the garrison's part are then
    tokens outside it (and the road alone would verify only with them dropped)."""
    smaller = copy.deepcopy(bundle)
    smaller["zone"]["features"] = [bundle["zone"]["features"][1]]
    outside = len(zone_tokens(STRIKE) - zone_tokens(StrikeZone(STRIKE.features[1:])))
    with pytest.raises(VerificationError, match=f"holds {outside} tokens that are not in"):
        verify_json(smaller, node)


def test_a_zone_with_a_shrunken_radius_is_refused(
    node: ResponderNode, bundle: dict[str, Any]
) -> None:
    shrunk = copy.deepcopy(bundle)
    shrunk["zone"]["features"][0]["shapes"][0]["radius_m"] = 600.0
    with pytest.raises(VerificationError, match="not in its strike zone"):
        verify_json(shrunk, node)


def test_a_zone_grown_beyond_what_was_checked_is_refused(
    node: ResponderNode, bundle: dict[str, Any]
) -> None:
    grown = copy.deepcopy(bundle)
    grown["zone"]["features"].append(
        {"id": "more", "shapes": [{"type": "Point", "coordinates": [39.6, 34.5], "radius_m": 0.0}]}
    )
    with pytest.raises(VerificationError, match="lacks 1 of the"):
        verify_json(grown, node)


def test_a_moved_zone_is_refused(node: ResponderNode, bundle: dict[str, Any]) -> None:
    moved = copy.deepcopy(bundle)
    moved["zone"]["features"][0]["shapes"][0]["coordinates"] = [39.6183, 34.515]
    with pytest.raises(VerificationError, match=r"lacks .* holds"):
        verify_json(moved, node)


def test_a_bundle_narrowed_to_a_separate_part_of_its_zone_proves_only_that_part(
    node: ResponderNode, bundle: dict[str, Any]
) -> None:
    """What no bundle can prove is which zone the proposer meant to strike. Cut down to
    the road alone, zone and positions alike, it verifies: as the smaller, clear zone it
    now is, with that zone's area (``protocol/THREAT_MODEL.md`` accepts this)."""
    road = StrikeZone(STRIKE.features[1:])
    tokens = zone_tokens(road)
    assert tokens < {int(p["cell"], 16) for p in bundle["positions"]}
    narrowed = {
        **bundle,
        "zone": {**bundle["zone"], "features": bundle["zone"]["features"][1:]},
        "positions": [p for p in bundle["positions"] if int(p["cell"], 16) in tokens],
    }
    verdict = verify_json(narrowed, node)
    assert not verdict.conflict
    assert verdict.zone_cells == len(road.cover(RES)) < len(STRIKE.cover(RES))
    assert verdict.zone_area_km2 == pytest.approx(cover_area_km2(road.cover(RES)))


def test_a_zone_covered_at_another_resolution_is_refused(
    node: ResponderNode, bundle: dict[str, Any]
) -> None:
    for res in (RES - 1, RES + 1):
        edited = copy.deepcopy(bundle)
        edited["zone"]["res"] = res
        with pytest.raises(VerificationError, match=f"resolution {res}, but .* uses resolution 9"):
            verify_json(edited, node)


def test_a_bundle_without_a_zone_is_refused(node: ResponderNode, bundle: dict[str, Any]) -> None:
    with pytest.raises(VerificationError) as caught:
        verify_json({**bundle, "zone": None}, node)
    assert caught.value.message == NO_ZONE


def test_a_v1_bundle_is_refused_because_it_carries_no_zone(
    node: ResponderNode, conflict: CheckPair
) -> None:
    with pytest.raises(VerificationError, match="carries no strike zone; it proves only its"):
        verify_zone_evidence(export_evidence(conflict.proposer), node.verify_key)


def test_a_zone_that_covers_no_cell_proves_nothing(
    node: ResponderNode, conflict: CheckPair
) -> None:
    """No zone read from a bundle is empty (the format wants a shape), but a verifier must
    not call an empty zone with no positions "checked and clear" whatever builds it."""
    exported = export_zone_evidence(conflict.proposer, zone=StrikeZone(()), received_at=NOW)
    (part,) = exported.parts
    emptied = replace(exported, parts=(replace(part, replay=replace(part.replay, positions=())),))
    with pytest.raises(VerificationError, match="covers no cells"):
        verify_zone_evidence(emptied, node.verify_key)


def test_a_continent_sized_zone_is_refused_before_it_is_covered(
    node: ResponderNode, bundle: dict[str, Any]
) -> None:
    huge = copy.deepcopy(bundle)
    huge["zone"]["features"][0]["shapes"][0]["radius_m"] = 3_000_000.0
    with pytest.raises(VerificationError, match="would cover more than 5,000,000 cells"):
        verify_json(huge, node)


# --- the rest of the bundle is still the v1 replay's business ------------------------


def test_a_receive_time_far_from_the_receipts_is_refused(
    node: ResponderNode, bundle: dict[str, Any]
) -> None:
    for received_at in (NOW + CLOCK_SKEW_SECONDS + 1, NOW - CLOCK_SKEW_SECONDS - 1, 0.0):
        with pytest.raises(VerificationError, match="of skew is accepted"):
            verify_json({**bundle, "received_at": received_at}, node)
    verify_json({**bundle, "received_at": NOW + CLOCK_SKEW_SECONDS - 1}, node)


def test_a_receive_time_that_is_not_a_number_is_refused(
    node: ResponderNode, bundle: dict[str, Any]
) -> None:
    for received_at in ("now", None, True):
        with pytest.raises(InputError):
            verify_json({**bundle, "received_at": received_at}, node)
    with pytest.raises(VerificationError):
        verify_json({**bundle, "received_at": float("nan")}, node)


def test_another_responders_key_verifies_nothing(bundle: dict[str, Any]) -> None:
    parsed = ZoneEvidence.from_json(json.dumps(bundle).encode())
    with pytest.raises(VerificationError, match="signature"):
        verify_zone_evidence(parsed, signing_key("somebody").verify_key)


def test_a_flipped_byte_in_the_response_is_refused(
    node: ResponderNode, bundle: dict[str, Any]
) -> None:
    response = bytearray(bytes.fromhex(bundle["response"]))
    response[len(response) // 2] ^= 1
    with pytest.raises(VerificationError):
        verify_json({**bundle, "response": response.hex()}, node)


def test_a_hit_replaced_by_another_token_of_the_zone_is_refused(
    node: ResponderNode, conflict: CheckPair, bundle: dict[str, Any]
) -> None:
    """Relabelling a hitting position with a clear token leaves the hit's token missing
    and the relabelled one fails the replay: either way nothing verifies."""
    hits = hits_of(conflict)
    positions = copy.deepcopy(bundle["positions"])
    at = next(i for i, p in enumerate(positions) if int(p["cell"], 16) in hits)
    positions[at]["cell"] = next(p["cell"] for p in positions if int(p["cell"], 16) not in hits)
    with pytest.raises(VerificationError):
        verify_json({**bundle, "positions": positions}, node)


@pytest.mark.parametrize(
    "changes",
    [
        {"format": "hexpsi/v1/evidence"},
        {"zone": "at-tanf"},
        {"zone": {"features": []}},
        {"received_at": "2026-12-05T05:14:53Z"},
        {"positions": None},
    ],
)
def test_malformed_bundles_are_input_errors(
    bundle: dict[str, Any], changes: dict[str, Any]
) -> None:
    with pytest.raises(InputError):
        ZoneEvidence.from_json(json.dumps({**bundle, **changes}).encode())


def test_a_bundle_without_received_at_is_an_input_error(bundle: dict[str, Any]) -> None:
    document = {key: value for key, value in bundle.items() if key != "received_at"}
    with pytest.raises(InputError):
        ZoneEvidence.from_json(json.dumps(document).encode())
