"""What each node keeps on disk after checks and mutual checks, and what it must not keep.

The responder's directory (epochs, ledger and audit log with their WAL files,
receipts, peers, keys) must hold nothing derived from the proposer's strike
cells or its map in a form the responder could invert, apart from cells the
responder holds itself (its own map and their ancestors). The proposer's
directory (cache, evidence, receipts, audit log) must hold nothing about the
responder's map beyond the cells of its own strike zones and its own map, which
it legitimately knows. Both directories are scanned twice: copied while the
servers still ran (SQLite WAL and shared-memory files present) and after they
stopped. Every file is scanned raw and through its hex and base64 texts.

The snapshot the proposer caches is the one place the responder's whole map
sits on the proposer's disk, as truncated OPRF outputs: no unkeyed hash of any
responder token, in any preimage form, and no evaluation under any key the
proposer holds (its own epochs' keys, or its master secret applied to the
responder's epoch id) matches a single snapshot value. The control: under the
responder's real key every token does match, so the values were read correctly.

How each was checked to fail without its protection (temporary edits in a copy
of the tree, reverted):

* strike tokens reaching the responder's disk (the proposer adding each token's
  bytes to its EvaluateRequest as an unknown protobuf field, and the responder
  writing the request's hex into its audit details): 855 hits (``hex``,
  ``u64-be``, ``token``...) in ``audit.sqlite3`` and in its ``-wal`` copy;
* an unkeyed snapshot (``hexpsi.protocol.snapshot.build.evaluate_chunk`` truncating
  ``sha256(token)`` instead of the OPRF output): the unkeyed-hash test reported
  every responder token as ``sha256(token)``, and the key test's control failed;
* one key for every node (``hexpsi.protocol.crypto.keys.epoch_key`` deriving from 32 zero bytes
  instead of the master secret): the proposer's own master secret applied to the
  responder's epoch id evaluated the responder's tokens to snapshot values and
  the key test failed.
"""

from __future__ import annotations

from pathlib import Path

import h3.api.basic_int as h3

from hexpsi.protocol.crypto.group import hash_to_group_many
from hexpsi.protocol.crypto.keys import epoch_keys
from hexpsi.protocol.crypto.oprf import evaluate
from hexpsi.protocol.geo.tokens import token_bytes
from hexpsi.protocol.mutual.sets import HASH_DST as MUTUAL_HASH_DST
from hexpsi.protocol.snapshot.build import MODE
from hexpsi.server.node.epochs import EpochStore
from hexpsi.server.node.snapshot_cache import CACHE_DIR
from tests.security.leak_helpers import (
    OPRF_HASH_DST,
    OUTPOST_SOUTH,
    OUTPOST_WEST,
    PROPOSER,
    PROPOSER_CELLS,
    RESPONDER,
    RESPONDER_CELLS,
    SHARED_CELLS,
    STRIKES,
    UNKEYED_HASHES,
    Hit,
    Needles,
    Scenario,
    all_tokens,
    files_under,
    preimage_forms,
    scan_tree,
    truncate,
    with_ancestors,
)


def node_trees(scenario: Scenario, name: str) -> list[Path]:
    """A node's directory now, and as copied while its server was running."""
    directory = scenario.responder.directory if name == RESPONDER else scenario.proposer.directory
    return [directory, scenario.serving_copy / name]


def scan_node(scenario: Scenario, name: str, cells: frozenset[int]) -> list[Hit]:
    needles = Needles(cells)
    return [hit for tree in node_trees(scenario, name) for hit in scan_tree(needles, tree)]


def responder_may_not_hold(scenario: Scenario) -> frozenset[int]:
    """The proposer's strike cells and tokens and its map, minus what the responder holds."""
    theirs = scenario.strike_cells | scenario.strike_tokens | with_ancestors(PROPOSER_CELLS)
    return theirs - with_ancestors(RESPONDER_CELLS)


def proposer_may_not_hold(scenario: Scenario) -> frozenset[int]:
    """The responder's map and ancestors, minus every cell the proposer knows of itself."""
    known = with_ancestors(PROPOSER_CELLS | scenario.strike_cells | scenario.strike_tokens)
    return with_ancestors(RESPONDER_CELLS) - known


def test_the_scanned_trees_hold_the_stores_and_their_wal_files(recorded: Scenario) -> None:
    serving = files_under(recorded.serving_copy / RESPONDER)
    for store in ("audit.sqlite3", "ledger.sqlite3"):
        assert {store, f"{store}-wal", f"{store}-shm"} <= set(serving)
    for name in (RESPONDER, PROPOSER):
        files = files_under(recorded.serving_copy / name)
        assert "audit.sqlite3" in files
        assert any(f.startswith("epochs/") for f in files)
    assert any(f.startswith("receipts/") for f in files_under(recorded.responder.directory))
    assert any(f.startswith("mutual/") for f in files_under(recorded.responder.directory))
    proposer_files = files_under(recorded.proposer.directory)
    assert any(f.startswith(f"{CACHE_DIR}/{RESPONDER}/") for f in proposer_files)
    assert any(f.endswith("evidence.json") for f in proposer_files)


def test_the_responder_keeps_nothing_about_strikes_or_the_proposers_map(
    recorded: Scenario,
) -> None:
    forbidden = responder_may_not_hold(recorded)
    assert STRIKES["far"] | STRIKES["near-miss"] | set(PROPOSER_CELLS - SHARED_CELLS) <= forbidden
    assert scan_node(recorded, RESPONDER, forbidden) == []


def test_the_proposer_keeps_nothing_about_the_responders_map_outside_its_strikes(
    recorded: Scenario,
) -> None:
    forbidden = proposer_may_not_hold(recorded)
    untouched = set(h3.grid_disk(OUTPOST_WEST, 1)) | set(h3.grid_disk(OUTPOST_SOUTH, 2))
    assert untouched <= forbidden
    assert scan_node(recorded, PROPOSER, forbidden) == []


def test_the_scan_finds_what_each_node_legitimately_keeps(recorded: Scenario) -> None:
    """Control: the same scan over the same trees finds each node's own cells.

    The responder stores its map as raw ids (``epochs/*/cells``); the proposer
    its strike tokens as hex inside ``evidence.json`` and its map as raw ids.
    """
    own = scan_node(recorded, RESPONDER, RESPONDER_CELLS)
    assert {hit.cell for hit in own} == RESPONDER_CELLS
    assert any("/cells" in hit.where and hit.form == "u64-be" for hit in own)
    strikes = scan_node(recorded, PROPOSER, recorded.strike_tokens)
    assert {hit.cell for hit in strikes} == recorded.strike_tokens
    assert any("evidence.json" in hit.where and hit.form == "hex" for hit in strikes)


def test_the_cached_snapshot_matches_no_unkeyed_hash_of_any_responder_token(
    recorded: Scenario,
) -> None:
    values, bits = recorded.cached_snapshot()
    tokens = sorted(all_tokens(RESPONDER_CELLS))
    candidates: dict[int, str] = {}
    for token in tokens:
        for form, data in preimage_forms(token).items():
            for name, digest in UNKEYED_HASHES.items():
                candidates[truncate(digest(data), bits)] = f"{name}({form}) of {token:x}"
            candidates[truncate(data.ljust(8, b"\0"), bits)] = f"{form} of {token:x}"
    for dst in (OPRF_HASH_DST, MUTUAL_HASH_DST):
        points = hash_to_group_many([token_bytes(t) for t in tokens], dst)
        for token, point in zip(tokens, points, strict=True):
            candidates[truncate(point, bits)] = f"hash-to-group {dst!r} of {token:x}"
    assert [candidates[v] for v in values.intersection(candidates)] == []


def test_the_cached_snapshot_matches_nothing_under_keys_the_proposer_holds(
    recorded: Scenario,
) -> None:
    values, bits = recorded.cached_snapshot()
    descriptor = recorded.checks[-1][1].descriptor.descriptor
    tokens = sorted(all_tokens(RESPONDER_CELLS))

    def outputs(master: bytes, epoch_id: bytes) -> set[int]:
        keys = epoch_keys(master, epoch_id, res=descriptor.res, res_min=descriptor.res_min)
        result = set()
        for token in tokens:
            (output,) = evaluate(keys[h3.get_resolution(token)], [token_bytes(token)], MODE)
            result.add(truncate(output, bits))
        return result

    real = outputs(recorded.responder.oprf_master, descriptor.epoch_id)
    assert real <= values, "control: the responder's own key finds its tokens"
    proposer_epoch = EpochStore(recorded.proposer).current()
    assert proposer_epoch is not None
    proposer_epoch.blocks.close()
    master = recorded.proposer.oprf_master
    for epoch_id in (proposer_epoch.descriptor.descriptor.epoch_id, descriptor.epoch_id):
        assert outputs(master, epoch_id) & values == set()
