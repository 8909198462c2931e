"""Epoch keys: deterministic per (master, epoch, resolution), distinct otherwise, pk = sk·G."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hexpsi.protocol.crypto.group import scalar_mult_base
from hexpsi.protocol.crypto.keys import MASTER_SECRET_SIZE, epoch_key, epoch_keys
from hexpsi.protocol.errors import LocalProtocolError
from hexpsi.protocol.limits import EPOCH_ID_SIZE

masters = st.binary(min_size=MASTER_SECRET_SIZE, max_size=MASTER_SECRET_SIZE)
epochs = st.binary(min_size=EPOCH_ID_SIZE, max_size=EPOCH_ID_SIZE)


@settings(max_examples=25)
@given(masters, epochs, st.integers(min_value=0, max_value=15))
def test_keys_are_deterministic_and_public_is_secret_times_generator(
    master: bytes, epoch: bytes, resolution: int
) -> None:
    key = epoch_key(master, epoch, resolution)
    again = epoch_key(bytes(master), bytes(epoch), resolution)
    assert key.secret == again.secret
    assert key.public == again.public
    assert scalar_mult_base(key.secret) == key.public


@settings(max_examples=25)
@given(masters, epochs, epochs, masters)
def test_other_epochs_resolutions_and_masters_give_other_keys(
    master: bytes, epoch: bytes, other_epoch: bytes, other_master: bytes
) -> None:
    keys = epoch_keys(master, epoch, res=9, res_min=5)
    assert sorted(keys) == [5, 6, 7, 8, 9]
    publics = {key.public for key in keys.values()}
    assert len(publics) == 5
    if other_epoch != epoch:
        later = epoch_keys(master, other_epoch, res=9, res_min=5)
        assert publics.isdisjoint(key.public for key in later.values())
    if other_master != master:
        stranger = epoch_keys(other_master, epoch, res=9, res_min=5)
        assert publics.isdisjoint(key.public for key in stranger.values())


def test_epoch_keys_match_single_derivations() -> None:
    master, epoch = bytes(range(32)), bytes(range(16))
    keys = epoch_keys(master, epoch, res=8, res_min=6)
    for resolution in (6, 7, 8):
        assert keys[resolution] == epoch_key(master, epoch, resolution)


def test_secret_does_not_show_in_repr() -> None:
    key = epoch_key(bytes(32), bytes(16), 9)
    assert key.secret.hex() not in repr(key)
    assert repr(key.secret) not in repr(key)


@pytest.mark.parametrize(
    ("master", "epoch", "resolution"),
    [
        (bytes(31), bytes(16), 9),
        (bytes(33), bytes(16), 9),
        (bytes(32), bytes(15), 9),
        (bytes(32), bytes(17), 9),
        (bytes(32), bytes(16), 16),
        (bytes(32), bytes(16), -1),
    ],
)
def test_bad_arguments_are_refused(master: bytes, epoch: bytes, resolution: int) -> None:
    with pytest.raises(LocalProtocolError):
        epoch_key(master, epoch, resolution)
