"""Starting an epoch: a signed descriptor that matches its keys and snapshot, fresh every time."""

from __future__ import annotations

import h3.api.basic_int as h3
import pytest

from hexpsi.protocol.crypto.keys import epoch_keys
from hexpsi.protocol.epoch.descriptor import SignedDescriptor, snapshot_params
from hexpsi.protocol.errors import LocalProtocolError
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS
from tests.protocol.helpers import NOW, VALIDITY, DeterministicRng, ResponderNode, make_responder

RES, RES_MIN = 9, 7
PROTECTED = frozenset(h3.grid_disk(h3.latlng_to_cell(33.5, 38.6, RES), 4))


@pytest.fixture(scope="module")
def node() -> ResponderNode:
    return make_responder(PROTECTED, res=RES, res_min=RES_MIN, sequence=7, max_query_tokens=2048)


def test_descriptor_describes_the_epoch(node: ResponderNode) -> None:
    d = node.descriptor.descriptor
    assert d.node == "coalition"
    assert d.sequence == 7
    assert d.created_at == NOW
    assert d.valid_until == NOW + VALIDITY
    assert (d.res, d.res_min) == (RES, RES_MIN)
    assert d.max_query_tokens == 2048
    assert d.output_policy == "cells"
    assert d.epoch_id == DeterministicRng(b"epoch")(16)
    assert node.epoch.keys == epoch_keys(b"m" * 32, d.epoch_id, res=RES, res_min=RES_MIN)
    assert dict(d.public_keys) == {r: key.public for r, key in node.epoch.keys.items()}
    assert snapshot_params(d) == node.epoch.snapshot.params
    assert d.snapshot_root == node.epoch.snapshot.digest
    assert d.snapshot_bytes == sum(len(block) for block in node.blocks)


def test_descriptor_is_signed_and_its_snapshot_verifies(node: ResponderNode) -> None:
    signed = node.descriptor
    again = SignedDescriptor.verify(
        signed.encoded,
        signed.signature,
        node.verify_key,
        now=NOW,
        max_skew=CLOCK_SKEW_SECONDS,
        expected_node="coalition",
        newer_than=7,
    )
    assert again == signed
    assert node.reader().verified


def test_lambda_follows_the_declared_query_limit(node: ResponderNode) -> None:
    bigger = make_responder(PROTECTED, res=RES, res_min=RES_MIN, max_query_tokens=1 << 20)
    assert snapshot_params(bigger.descriptor.descriptor).bits > node.params.bits
    stricter = make_responder(PROTECTED, res=RES, res_min=RES_MIN, max_query_tokens=2048)
    assert stricter.params.bits == node.params.bits


def test_epochs_of_the_same_map_are_unlinkable(node: ResponderNode) -> None:
    later = make_responder(PROTECTED, res=RES, res_min=RES_MIN, seed=b"next epoch", sequence=8)
    assert later.descriptor.descriptor.epoch_id != node.descriptor.descriptor.epoch_id
    assert set(later.descriptor.descriptor.public_keys.values()).isdisjoint(
        node.descriptor.descriptor.public_keys.values()
    )
    assert later.snapshot_values().isdisjoint(node.snapshot_values())
    assert later.epoch.snapshot.real_count == node.epoch.snapshot.real_count


def test_same_random_source_gives_the_same_epoch(node: ResponderNode) -> None:
    again = make_responder(PROTECTED, res=RES, res_min=RES_MIN, sequence=7, max_query_tokens=2048)
    assert again.descriptor == node.descriptor
    assert again.blocks == node.blocks


def test_two_maps_within_one_bucket_publish_the_same_sizes() -> None:
    small = make_responder(PROTECTED, res=RES, res_min=RES_MIN)
    large = make_responder(
        h3.grid_disk(h3.latlng_to_cell(33.5, 38.6, RES), 9), res=RES, res_min=RES_MIN
    )
    assert small.epoch.snapshot.real_count < large.epoch.snapshot.real_count
    assert (
        small.descriptor.descriptor.snapshot_params == large.descriptor.descriptor.snapshot_params
    )


def test_count_policy_is_published() -> None:
    node = make_responder(PROTECTED, res=RES, res_min=RES_MIN, output_policy="count")
    assert node.descriptor.descriptor.output_policy == "count"


def test_inconsistent_settings_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        make_responder(PROTECTED, res=RES, res_min=RES_MIN, validity_seconds=0)
    with pytest.raises(LocalProtocolError):
        make_responder(PROTECTED, res=RES, res_min=RES_MIN, output_policy="all")
