"""Nothing links two epochs, two checks of the same zone, or two mutual checks.

* Two epochs of the same map share no snapshot value: their keys are fresh, so
  a proposer cannot tell which positions stayed put (with 1,024 values of 52
  bits each, even one common value by chance has probability about 2**-32).
* Two checks of the same strike zone share no blinded element and no
  evaluation: the responder cannot tell that a proposer asked again.
* Two mutual checks of the same maps share no element of any of the four sets:
  neither side can link them, nor count repeats.

How each was checked to fail without its protection (temporary edits in a copy
of the tree, reverted):

* keys reused across epochs (``hexpsi.protocol.crypto.keys`` binding the keys to a zero epoch
  id): the two epochs' snapshots shared every real value (90 of 1,024) and the
  first test failed; the second test shows the same without an edit, by
  building two snapshots under one key;
* blinds fixed (``hexpsi.protocol.crypto.oprf.blind`` using the scalar 7 for every input): the
  two queries for the same zone shared every real element and the check test
  failed (the wire scan still passed: fixed blinds are keyed, just linkable);
* mutual keys fixed (``_Session._draw_key`` in ``hexpsi.protocol.mutual.session`` using the
  scalar 7): the two sessions shared every element and the mutual test failed.
"""

from __future__ import annotations

import os
from pathlib import Path

from hexpsi.protocol.crypto.keys import epoch_keys
from hexpsi.protocol.epoch.descriptor import snapshot_params
from hexpsi.protocol.geo.tokens import responder_tokens
from hexpsi.protocol.snapshot.build import build_snapshot
from hexpsi.server.node.epochs import EpochStore
from tests.security.leak_helpers import (
    EVALUATE,
    MUTUAL,
    REPEATED_STRIKE,
    RES,
    RES_MIN,
    RESPONDER,
    RESPONDER_CELLS,
    Scenario,
    all_tokens,
    evaluate_elements,
    make_epoch,
    make_nodes,
    mutual_elements,
    stored_values,
    u64_list,
)


def epoch_values(store: EpochStore, sequence: int) -> set[int]:
    epoch = store.load(sequence)
    epoch.blocks.close()
    raw = epoch.directory
    offsets = u64_list((raw / "offsets").read_bytes())
    params = snapshot_params(epoch.descriptor.descriptor)
    values = stored_values((raw / "blocks").read_bytes(), offsets, params)
    assert len(values) == params.count
    return set(values)


def test_two_epochs_of_one_map_share_no_snapshot_value(tmp_path: Path) -> None:
    node = make_nodes(tmp_path, [RESPONDER, "other"])[RESPONDER]
    first, second = make_epoch(node, RESPONDER_CELLS), make_epoch(node, RESPONDER_CELLS)
    store = EpochStore(node)
    assert epoch_values(store, first) & epoch_values(store, second) == set()
    assert store.load(first).keys != store.load(second).keys


def test_one_key_for_two_snapshots_would_link_every_position() -> None:
    """Control for the test above: the same map under the same key shares every real value."""
    tokens = responder_tokens(RESPONDER_CELLS, res=RES, res_min=RES_MIN)
    keys = epoch_keys(os.urandom(32), os.urandom(16), res=RES, res_min=RES_MIN)
    snapshots = []
    for _ in range(2):
        blocks: list[bytes] = []
        built = build_snapshot(tokens, keys, rng=os.urandom, sink=blocks.append)
        offsets = [0]
        for block in blocks:
            offsets.append(offsets[-1] + len(block))
        snapshots.append(set(stored_values(b"".join(blocks), offsets, built.params)))
    assert len(snapshots[0] & snapshots[1]) == len(all_tokens(RESPONDER_CELLS))


def test_checks_of_the_same_zone_share_no_element(recorded: Scenario) -> None:
    repeated = [i for i, (name, _) in enumerate(recorded.checks) if name == REPEATED_STRIKE]
    assert len(repeated) == 2
    calls = recorded.calls_to(EVALUATE)
    first_sent, first_got = evaluate_elements(calls[repeated[0]])
    second_sent, second_got = evaluate_elements(calls[repeated[1]])
    assert len(first_sent) == len(second_sent) > 0
    assert set(first_sent).isdisjoint(second_sent)
    assert set(first_got).isdisjoint(second_got)
    every = [e for call in calls for pair in evaluate_elements(call) for e in pair]
    assert len(set(every)) == len(every)


def test_mutual_checks_share_no_element(recorded: Scenario) -> None:
    first, second = (mutual_elements(call) for call in recorded.calls_to(MUTUAL))
    assert len(first) == len(second) > 0
    assert set(first).isdisjoint(second)
    assert [m.result.shared_cells for m in recorded.mutuals] == [3, 3]
