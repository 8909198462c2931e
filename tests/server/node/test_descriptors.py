"""Accepted descriptors are kept; a second, different one for a sequence is an equivocation."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from hexpsi.protocol.epoch.descriptor import SignedDescriptor
from hexpsi.protocol.errors import Status, VerificationError
from hexpsi.server.node.descriptors import (
    AcceptedDescriptors,
    Equivocation,
    equivocations,
)
from hexpsi.server.node.snapshot_cache import SnapshotCache
from tests.protocol.epoch.test_descriptor import make

PEER = "coalition"
KEY = SigningKey(b"k" * 32)
NEW_KEY = SigningKey(b"n" * 32)


def signed(sequence: int, *, root: bytes = b"r" * 32, key: SigningKey = KEY) -> SignedDescriptor:
    return SignedDescriptor.sign(make(sequence=sequence, snapshot_root=root), key)


HONEST = signed(3)
FORK = signed(3, root=b"f" * 32)
"""The same sequence, another map: what a forked or restored responder would sign."""


def test_a_descriptor_is_kept_once_as_a_self_verifying_file(tmp_path: Path) -> None:
    accepted = AcceptedDescriptors(tmp_path)
    assert accepted.newest(PEER, KEY.verify_key) is None
    accepted.accept(PEER, HONEST, KEY.verify_key)
    accepted.accept(PEER, HONEST, KEY.verify_key)  # the same descriptor again is fine
    path = tmp_path / "descriptors" / PEER / "3.bin"
    assert KEY.verify_key.verify(path.read_bytes()) == HONEST.encoded
    assert accepted.newest(PEER, KEY.verify_key) == 3
    assert SnapshotCache(tmp_path).latest_sequence(PEER, bytes(KEY.verify_key)) == 3
    assert equivocations(tmp_path) == []


def test_a_newer_sequence_is_accepted_beside_the_older_one(tmp_path: Path) -> None:
    accepted = AcceptedDescriptors(tmp_path)
    accepted.accept(PEER, HONEST, KEY.verify_key)
    accepted.accept(PEER, signed(4), KEY.verify_key)
    assert sorted(p.name for p in (tmp_path / "descriptors" / PEER).iterdir()) == [
        "3.bin",
        "4.bin",
    ]
    assert accepted.newest(PEER, KEY.verify_key) == 4


def test_a_second_descriptor_for_a_sequence_is_refused_and_both_are_kept(tmp_path: Path) -> None:
    accepted = AcceptedDescriptors(tmp_path)
    accepted.accept(PEER, HONEST, KEY.verify_key)
    with pytest.raises(Equivocation) as caught:
        accepted.accept(PEER, FORK, KEY.verify_key)
    error = caught.value
    assert isinstance(error, VerificationError)
    assert error.status is Status.PERMISSION_DENIED
    assert error.newly_found
    proof = tmp_path / "equivocations" / PEER / "3"
    assert error.message == (
        f"peer {PEER} signed two different epoch descriptors with sequence 3: an "
        f"equivocation; refusing both, signed proof kept in {proof}"
    )
    assert KEY.verify_key.verify((proof / "first.bin").read_bytes()) == HONEST.encoded
    assert KEY.verify_key.verify((proof / "second.bin").read_bytes()) == FORK.encoded
    (record,) = equivocations(tmp_path)
    assert (record.peer, record.sequence) == (PEER, 3)
    assert (record.first, record.second) == (proof / "first.bin", proof / "second.bin")
    assert (record.first_digest, record.second_digest) == (HONEST.digest, FORK.digest)
    assert record == error.record
    # The kept descriptor is still the first one.
    assert (tmp_path / "descriptors" / PEER / "3.bin").read_bytes() == HONEST.signed_message


def test_an_equivocated_sequence_stays_refused_whichever_descriptor_returns(
    tmp_path: Path,
) -> None:
    accepted = AcceptedDescriptors(tmp_path)
    accepted.accept(PEER, HONEST, KEY.verify_key)
    with pytest.raises(Equivocation):
        accepted.accept(PEER, FORK, KEY.verify_key)
    third = signed(3, root=b"t" * 32)
    for again in (HONEST, FORK, third):
        with pytest.raises(Equivocation) as caught:
            accepted.accept(PEER, again, KEY.verify_key)
        assert not caught.value.newly_found
    (record,) = equivocations(tmp_path)
    assert KEY.verify_key.verify(record.second.read_bytes()) == FORK.encoded
    accepted.accept(PEER, signed(4), KEY.verify_key)  # a new epoch is a new question


def test_descriptors_of_an_earlier_identity_neither_count_nor_convict(tmp_path: Path) -> None:
    """A peer re-pinned with new keys starts its sequences again."""
    accepted = AcceptedDescriptors(tmp_path)
    accepted.accept(PEER, signed(5, key=KEY), KEY.verify_key)
    assert accepted.newest(PEER, NEW_KEY.verify_key) is None
    renewed = signed(5, root=b"n" * 32, key=NEW_KEY)
    accepted.accept(PEER, renewed, NEW_KEY.verify_key)
    assert (tmp_path / "descriptors" / PEER / "5.bin").read_bytes() == renewed.signed_message
    assert equivocations(tmp_path) == []


def test_a_damaged_kept_file_is_no_proof_and_is_replaced(tmp_path: Path) -> None:
    accepted = AcceptedDescriptors(tmp_path)
    accepted.accept(PEER, HONEST, KEY.verify_key)
    path = tmp_path / "descriptors" / PEER / "3.bin"
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    accepted.accept(PEER, FORK, KEY.verify_key)
    assert path.read_bytes() == FORK.signed_message
    assert equivocations(tmp_path) == []


def test_the_replay_floor_survives_a_wiped_cache(tmp_path: Path) -> None:
    accepted = AcceptedDescriptors(tmp_path)
    accepted.accept(PEER, signed(6), KEY.verify_key)
    (tmp_path / "cache" / PEER / "latest").unlink()
    assert AcceptedDescriptors(tmp_path).newest(PEER, KEY.verify_key) == 6


def test_a_signed_message_reads_back_only_with_its_key() -> None:
    data = HONEST.signed_message
    assert SignedDescriptor.from_signed_message(data, KEY.verify_key) == HONEST
    with pytest.raises(VerificationError):
        SignedDescriptor.from_signed_message(data, NEW_KEY.verify_key)
    with pytest.raises(VerificationError, match="shorter than its signature"):
        SignedDescriptor.from_signed_message(data[:64], KEY.verify_key)
    with pytest.raises(VerificationError, match="expected 'russia'"):
        SignedDescriptor.from_signed_message(data, KEY.verify_key, expected_node="russia")


def test_two_descriptors_racing_for_one_sequence_keep_exactly_one(tmp_path: Path) -> None:
    """Two checks at once, each handed a different fork: one is kept, the other refused."""
    barrier = threading.Barrier(2)
    outcomes: dict[bytes, str] = {}

    def accept(descriptor: SignedDescriptor) -> None:
        barrier.wait()
        try:
            AcceptedDescriptors(tmp_path).accept(PEER, descriptor, KEY.verify_key)
        except Equivocation:
            outcomes[descriptor.digest] = "refused"
        else:
            outcomes[descriptor.digest] = "kept"

    threads = [threading.Thread(target=accept, args=(d,)) for d in (HONEST, FORK)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes.values()) == ["kept", "refused"]
    kept = (tmp_path / "descriptors" / PEER / "3.bin").read_bytes()
    winner = HONEST if outcomes[HONEST.digest] == "kept" else FORK
    assert kept == winner.signed_message
    (record,) = equivocations(tmp_path)
    assert record.first_digest == winner.digest
